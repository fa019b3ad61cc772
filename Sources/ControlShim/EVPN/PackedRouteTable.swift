/// An open-addressing hash table from a non-zero 64-bit key to a 64-bit value, for the
/// route sink's one-word-per-MAC table: key and value side by side in one 16-byte slot
/// (one cache line holds four), linear probing, deletion by backward shift (no
/// tombstones), at most 4/5 full. Slots are zeroed when allocated, so a table sized
/// up front (`reserveCapacity`) takes no page faults while routes stream in.
///
/// Not thread-safe (the sink keeps it behind its lock).
final class PackedRouteTable {
  private var slots: UnsafeMutablePointer<UInt64>
  /// Slots, a power of two.
  private(set) var capacity: Int
  private(set) var count = 0

  init(minimumCapacity: Int = 0) {
    capacity = Self.slotCount(for: minimumCapacity)
    slots = Self.allocate(capacity)
  }

  deinit { slots.deallocate() }

  private static func slotCount(for entries: Int) -> Int {
    var slots = 16
    while slots * 4 / 5 < entries { slots <<= 1 }
    return slots
  }

  private static func allocate(_ capacity: Int) -> UnsafeMutablePointer<UInt64> {
    let pointer = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity * 2)
    pointer.initialize(repeating: 0, count: capacity * 2)
    return pointer
  }

  /// Bytes of slot storage.
  var memoryBytes: Int { capacity * 16 }

  @inline(__always) private func home(_ key: UInt64) -> Int { fastHash(key, seed: 0) & (capacity - 1) }

  /// The slot holding `key`, or the empty slot where it would go.
  @inline(__always) private func position(of key: UInt64) -> (index: Int, found: Bool) {
    var index = home(key)
    while true {
      let stored = slots[index * 2]
      if stored == key { return (index, true) }
      if stored == 0 { return (index, false) }
      index = (index + 1) & (capacity - 1)
    }
  }

  subscript(key: UInt64) -> UInt64? {
    get {
      let (index, found) = position(of: key)
      return found ? slots[index * 2 + 1] : nil
    }
    set {
      if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
    }
  }

  /// Stores `value` for `key`; returns the value it replaced.
  @discardableResult
  func updateValue(_ value: UInt64, forKey key: UInt64) -> UInt64? {
    precondition(key != 0, "PackedRouteTable keys are non-zero")
    var (index, found) = position(of: key)
    if found {
      defer { slots[index * 2 + 1] = value }
      return slots[index * 2 + 1]
    }
    if (count + 1) * 5 > capacity * 4 {
      grow()
      index = position(of: key).index
    }
    slots[index * 2] = key
    slots[index * 2 + 1] = value
    count += 1
    return nil
  }

  /// Removes `key`; returns its value. Later entries of the probe run move back so that
  /// every key stays reachable from its home slot without tombstones.
  @discardableResult
  func removeValue(forKey key: UInt64) -> UInt64? {
    let (start, found) = position(of: key)
    guard found else { return nil }
    let removed = slots[start * 2 + 1]
    let mask = capacity - 1
    var hole = start
    var index = (start + 1) & mask
    while slots[index * 2] != 0 {
      let home = self.home(slots[index * 2])
      // The entry may fill the hole when its home is not between the hole and it.
      if (index - home) & mask >= (index - hole) & mask {
        slots[hole * 2] = slots[index * 2]
        slots[hole * 2 + 1] = slots[index * 2 + 1]
        hole = index
      }
      index = (index + 1) & mask
    }
    slots[hole * 2] = 0
    slots[hole * 2 + 1] = 0
    count -= 1
    return removed
  }

  /// Loads the home slots of `keys` (independent loads, so their cache misses overlap)
  /// before a run of updates visits them one by one.
  func warm(_ keys: UnsafeBufferPointer<UInt64>) {
    var sum: UInt64 = 0
    for key in keys { sum &+= slots[home(key) * 2] }
    warmed = sum
  }

  /// Where `warm` leaves its sum, so that its loads are not optimised away.
  private var warmed: UInt64 = 0

  /// Makes room for `entries` without growing later.
  func reserveCapacity(_ entries: Int) {
    let wanted = Self.slotCount(for: entries)
    if wanted > capacity { rehash(to: wanted) }
  }

  /// Removes every entry for which `shouldRemove` is true.
  func removeAll(where shouldRemove: (UInt64, UInt64) -> Bool) {
    var kept: [(UInt64, UInt64)] = []
    forEach { key, value in if !shouldRemove(key, value) { kept.append((key, value)) } }
    slots.update(repeating: 0, count: capacity * 2)
    count = 0
    for (key, value) in kept { updateValue(value, forKey: key) }
  }

  func forEach(_ body: (UInt64, UInt64) -> Void) {
    for index in 0..<capacity where slots[index * 2] != 0 { body(slots[index * 2], slots[index * 2 + 1]) }
  }

  private func grow() { rehash(to: capacity * 2) }

  private func rehash(to newCapacity: Int) {
    let old = slots
    let oldCapacity = capacity
    slots = Self.allocate(newCapacity)
    capacity = newCapacity
    count = 0
    for index in 0..<oldCapacity where old[index * 2] != 0 {
      let key = old[index * 2]
      let target = position(of: key).index
      slots[target * 2] = key
      slots[target * 2 + 1] = old[index * 2 + 1]
      count += 1
    }
    old.deallocate()
  }
}
