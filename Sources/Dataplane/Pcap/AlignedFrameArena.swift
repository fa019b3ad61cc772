/// A growable byte arena whose appended frames each start on a 64-byte boundary, so that a
/// replayed frame begins on a cache line like a frame in a real RX ring does.
///
/// Owned by exactly one `PcapTrace`, which frees it; it is never shared while growing.
struct AlignedFrameArena {
  static let alignment = 64

  private(set) var base: UnsafeMutableRawPointer
  private(set) var capacity: Int
  private(set) var used = 0

  init(initialCapacity: Int) {
    capacity = max(Self.alignment, Self.roundUp(initialCapacity))
    base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: Self.alignment)
  }

  static func roundUp(_ value: Int) -> Int {
    (value + alignment - 1) / alignment * alignment
  }

  /// Copies `count` bytes from `source` to the next aligned slot; returns its offset.
  mutating func append(_ source: UnsafeRawPointer, count: Int) -> Int {
    let offset = used
    let end = offset + Self.roundUp(count)
    if end > capacity { grow(toAtLeast: end) }
    (base + offset).copyMemory(from: source, byteCount: count)
    // Zero the alignment padding so that the arena's contents are deterministic.
    (base + offset + count).initializeMemory(as: UInt8.self, repeating: 0, count: end - offset - count)
    used = end
    return offset
  }

  private mutating func grow(toAtLeast needed: Int) {
    var newCapacity = capacity
    while newCapacity < needed { newCapacity *= 2 }
    let newBase = UnsafeMutableRawPointer.allocate(
      byteCount: newCapacity, alignment: Self.alignment)
    newBase.copyMemory(from: base, byteCount: used)
    base.deallocate()
    base = newBase
    capacity = newCapacity
  }

  func deallocate() { base.deallocate() }
}
