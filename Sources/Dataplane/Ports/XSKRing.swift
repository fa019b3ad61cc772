import CPacket
import Synchronization

/// One ring an AF_XDP socket shares with the kernel (fill, completion, RX or TX), walked
/// the way the kernel's `xsk_queue.h` expects: the producer writes entries, then publishes
/// its index with release ordering; the consumer reads the producer index with acquire
/// ordering, reads the entries, then publishes its own index with release ordering. Each
/// side keeps its own index locally and reads the other's only when it runs out.
///
/// Not thread-safe: one side of one ring, owned by the worker that owns the port.
struct XSKRing {
  let producer: UnsafeMutablePointer<Atomic<UInt32>>
  let consumer: UnsafeMutablePointer<Atomic<UInt32>>
  let entries: UnsafeMutableRawPointer
  let flags: UnsafeMutablePointer<Atomic<UInt32>>
  let mask: UInt32
  let size: UInt32
  /// Our side's index (producer for fill/TX, consumer for RX/completion).
  var index: UInt32

  enum Side { case producer, consumer }

  init(_ ring: cp_xsk_ring, side: Side) {
    producer = UnsafeMutableRawPointer(ring.producer).assumingMemoryBound(to: Atomic<UInt32>.self)
    consumer = UnsafeMutableRawPointer(ring.consumer).assumingMemoryBound(to: Atomic<UInt32>.self)
    entries = ring.ring
    flags = UnsafeMutableRawPointer(ring.flags).assumingMemoryBound(to: Atomic<UInt32>.self)
    mask = ring.mask
    size = ring.size
    index = (side == .producer ? producer : consumer).pointee.load(ordering: .relaxed)
  }

  // MARK: Consumer side (RX, completion)

  /// Entries the kernel has produced and we have not consumed, at most `limit`.
  @inline(__always)
  func available(limit: Int) -> Int {
    let produced = producer.pointee.load(ordering: .acquiring)
    return min(Int(produced &- index), limit)
  }

  /// Gives `count` consumed entries back to the kernel.
  @inline(__always)
  mutating func release(_ count: Int) {
    index &+= UInt32(truncatingIfNeeded: count)
    consumer.pointee.store(index, ordering: .releasing)
  }

  // MARK: Producer side (fill, TX)

  /// Entries we may produce now.
  @inline(__always)
  func free() -> Int {
    let consumed = consumer.pointee.load(ordering: .acquiring)
    return Int(size &- (index &- consumed))
  }

  /// Publishes `count` entries written from `index` on.
  @inline(__always)
  mutating func submit(_ count: Int) {
    index &+= UInt32(truncatingIfNeeded: count)
    producer.pointee.store(index, ordering: .releasing)
  }

  /// Entries produced that the kernel has not consumed yet.
  @inline(__always)
  func outstanding() -> Int {
    Int(index &- consumer.pointee.load(ordering: .acquiring))
  }

  @inline(__always)
  var needsWakeup: Bool { flags.pointee.load(ordering: .relaxed) & UInt32(CP_XDP_RING_NEED_WAKEUP) != 0 }

  // MARK: Entries

  /// A UMEM address entry (fill and completion rings), `offset` entries past `index`.
  @inline(__always)
  func address(_ offset: Int) -> UnsafeMutablePointer<UInt64> {
    (entries + Int((index &+ UInt32(truncatingIfNeeded: offset)) & mask) &* 8)
      .assumingMemoryBound(to: UInt64.self)
  }

  /// A descriptor entry (RX and TX rings), `offset` entries past `index`.
  @inline(__always)
  func descriptor(_ offset: Int) -> UnsafeMutablePointer<cp_xdp_desc> {
    (entries + Int((index &+ UInt32(truncatingIfNeeded: offset)) & mask) &* MemoryLayout<cp_xdp_desc>.stride)
      .assumingMemoryBound(to: cp_xdp_desc.self)
  }
}
