import Synchronization

/// A MAC the packet path saw that the FDB does not (yet) map to where it came from.
public struct LearnEvent: Sendable {
  /// Kind of an ARP binding seen in a local ARP packet: `key` is an `ARPTable` key,
  /// `vtepLow` the sender MAC, `member` the ingress member.
  public static let arpBinding: UInt8 = 4
  /// Kind of an IPv6 binding seen in a local neighbour solicitation or advertisement:
  /// `key` is the bridge domain << 48 | the MAC, `vtepHigh`/`vtepLow` the address.
  public static let ndBinding: UInt8 = 5
  public var key: UInt64
  /// `FDBTargetKind.port` with a member index, `.vtep` with the outer source address,
  /// `arpBinding` or `ndBinding`.
  public var kind: UInt8
  public var member: UInt16
  public var stamp: UInt32
  public var vtepHigh: UInt64
  public var vtepLow: UInt64
  /// The generation of the forwarding state the frame was switched under: its bridge
  /// domain and member indices mean what that snapshot says, and the learner drops the
  /// event if a reload has since given them another meaning.
  public var snapshotGeneration: UInt64
  public init() {
    key = 0
    kind = 0
    member = 0
    stamp = 0
    vtepHigh = 0
    vtepLow = 0
    snapshotGeneration = 0
  }
}

/// Single-producer single-consumer ring from one packet worker to the FDB learner.
/// The worker never waits: when the ring is full the event is dropped and counted (the
/// MAC is simply learned from a later frame).
///
/// Thread-safety: exactly one producer thread calls `push`, one consumer calls `pop`.
// @unchecked: slots are raw memory handed over by the head/tail atomics (release/acquire).
public final class LearnQueue: @unchecked Sendable {
  private let slots: UnsafeMutablePointer<LearnEvent>
  private let mask: Int
  private let head = Atomic<Int>(0)
  private let tail = Atomic<Int>(0)

  public init(capacity: Int = 8192) {
    var size = 64
    while size < capacity { size <<= 1 }
    slots = .allocate(capacity: size)
    slots.initialize(repeating: LearnEvent(), count: size)
    mask = size - 1
  }

  deinit { slots.deallocate() }

  @inline(__always)
  public func push(_ event: LearnEvent) -> Bool {
    let position = head.load(ordering: .relaxed)
    if position &- tail.load(ordering: .acquiring) > mask { return false }
    slots[position & mask] = event
    head.store(position &+ 1, ordering: .releasing)
    return true
  }

  public func pop() -> LearnEvent? {
    let position = tail.load(ordering: .relaxed)
    if position == head.load(ordering: .acquiring) { return nil }
    let event = slots[position & mask]
    tail.store(position &+ 1, ordering: .releasing)
    return event
  }

  public var isEmpty: Bool { head.load(ordering: .acquiring) == tail.load(ordering: .acquiring) }
}
