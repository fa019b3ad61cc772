import Synchronization

/// Counter slots shared by the per-worker scratch counters and `SwitchStatistics`.
public enum Counter {
  public static let interfaces = ForwardingState.maxInterfaces
  @inline(__always) public static func rxFrames(_ interface: Int) -> Int { interface }
  @inline(__always) public static func rxBytes(_ interface: Int) -> Int { interfaces &+ interface }
  @inline(__always) public static func txFrames(_ interface: Int) -> Int { 2 &* interfaces &+ interface }
  @inline(__always) public static func txBytes(_ interface: Int) -> Int { 3 &* interfaces &+ interface }
  @inline(__always) public static func drop(_ reason: DropReason) -> Int {
    4 &* interfaces &+ reason.rawValue
  }
  /// Slots reserved for drop reasons; `SwitchStatistics` checks that every reason fits.
  static let dropReasonSlots = 32
  static let misc = 4 * interfaces + dropReasonSlots
  public static let encapsulated = misc + 0
  public static let decapsulated = misc + 1
  public static let floodCopies = misc + 2
  public static let learnEventsQueued = misc + 3
  public static let learnQueueOverflow = misc + 4
  public static let staticMACViolations = misc + 5
  public static let checksumsCompleted = misc + 6
  /// ARP requests answered locally from the ARP table (ARP suppression).
  public static let arpSuppressed = misc + 7
  /// ICMP Fragmentation Needed / ICMPv6 Packet Too Big sent back to a VM whose frame did
  /// not fit the underlay, and those the per-second budget held back.
  public static let pathMTUReplies = misc + 8
  public static let pathMTURateLimited = misc + 9
  /// UDP GSO frames handed to the underlay socket (runs of two or more VXLAN datagrams
  /// to one VTEP, `UnderlaySegmenter`) and the datagrams they carried; every datagram
  /// is also in `encapsulated` and the underlay's `txFrames`, as the wire sees it.
  public static let underlayGSOFrames = misc + 10
  public static let underlayGSODatagrams = misc + 11
  /// Underlay ports opened without UDP GSO because the kernel refused it (the
  /// per-datagram path is used instead).
  public static let underlayGSOFallbacks = misc + 12
  /// TCP super-frames coalesced toward access ports (`TCPCoalescer`: runs of two or more
  /// segments) and the segments they held; every segment is also in the port's
  /// `txFrames`, as the VM's stack sees them once it cuts them up again.
  public static let coalescedSuperFrames = misc + 13
  public static let coalescedSegments = misc + 14
  /// UDP-tunnel GSO frames written to the underlay's tunnel tap (`TunnelRun`: a VM
  /// super-frame's segments to one VTEP, cut by the kernel), the segments they carried
  /// (each also in `encapsulated` and the underlay's `txFrames`); writes to any of the
  /// switch's taps (that one, or a VM's, `TCPCoalescer`) the kernel refused (their
  /// frames lost).
  public static let underlayTunnelFrames = misc + 15
  public static let underlayTunnelSegments = misc + 16
  public static let tapRefusals = misc + 17
  public static let count = misc + 18
}

/// Switch-wide counters. Workers add their per-batch scratch counts with relaxed atomic
/// adds (only the non-zero ones); readers (the control socket) load them at any time.
// @unchecked: a raw buffer of atomics, allocated once, touched only through atomic operations.
public final class SwitchStatistics: @unchecked Sendable {
  let values: UnsafeMutablePointer<Atomic<UInt64>>

  public init() {
    precondition(
      DropReason.allCases.count <= Counter.dropReasonSlots,
      "\(DropReason.allCases.count) drop reasons overflow the \(Counter.dropReasonSlots) counter slots")
    values = .allocate(capacity: Counter.count)
    for index in 0..<Counter.count { (values + index).initialize(to: Atomic(0)) }
  }

  deinit { values.deallocate() }

  public subscript(_ index: Int) -> UInt64 { values[index].load(ordering: .relaxed) }

  @inline(__always) public func add(_ index: Int, _ amount: UInt64) {
    values[index].add(amount, ordering: .relaxed)
  }

  /// Adds the worker's scratch counters and zeroes them. Only interfaces below
  /// `interfaces` can have counts (the per-interface groups are scanned that far), so a
  /// small batch costs tens of words, not all `Counter.count`.
  @inline(__always)
  func absorb(_ scratch: UnsafeMutablePointer<UInt64>, touched: inout Bool, interfaces: Int) {
    guard touched else { return }
    let used = min(interfaces, Counter.interfaces)
    for group in 0..<4 {
      let start = group &* Counter.interfaces
      for index in start..<(start &+ used) where scratch[index] != 0 {
        values[index].add(scratch[index], ordering: .relaxed)
        scratch[index] = 0
      }
    }
    // The switch-wide counters, four words tested at once: a batch moves one or two of
    // some fifty (a word at a time, the scan was most of a batch's flush).
    var index = 4 &* Counter.interfaces
    while index &+ 4 <= Counter.count {
      if scratch[index] | scratch[index &+ 1] | scratch[index &+ 2] | scratch[index &+ 3] != 0 {
        for word in index..<(index &+ 4) where scratch[word] != 0 {
          values[word].add(scratch[word], ordering: .relaxed)
          scratch[word] = 0
        }
      }
      index &+= 4
    }
    for word in index..<Counter.count where scratch[word] != 0 {
      values[word].add(scratch[word], ordering: .relaxed)
      scratch[word] = 0
    }
    touched = false
  }

  public func drops() -> [(DropReason, UInt64)] {
    DropReason.allCases.map { ($0, self[Counter.drop($0)]) }
  }
}
