import CPacket
import Synchronization

extension ForwardingTable {
  /// The lock-free read side of a `ForwardingTable`: its bucket memory and flush
  /// generations as plain pointers.
  ///
  /// A packet loop copies it into a local once per batch, so that the optimiser keeps
  /// the pointers in registers instead of reloading them from the table object after
  /// every store the loop makes through a raw pointer.
  ///
  /// Thread safety: what `ForwardingTable`'s contract says of readers. Valid as long as
  /// the table it came from is alive.
  // @unchecked: raw pointers into a table that outlives the reader; reads follow the seqlock.
  @frozen
  public struct Reader: @unchecked Sendable {
    @usableFromInline let words: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let bucketMask: Int
    /// The bucket count (a power of two, at most 2^32): see `homeBucket`.
    @usableFromInline let bucketScale: UInt64
    @usableFromInline let domainGenerations: UnsafeMutablePointer<Atomic<UInt8>>
    @usableFromInline let portGenerations: UnsafeMutablePointer<Atomic<UInt8>>
    @usableFromInline let vtepGenerations: UnsafeMutablePointer<Atomic<UInt8>>

    @usableFromInline
    init(
      words: UnsafeMutablePointer<Atomic<UInt64>>, bucketMask: Int, bucketScale: UInt64,
      domainGenerations: UnsafeMutablePointer<Atomic<UInt8>>,
      portGenerations: UnsafeMutablePointer<Atomic<UInt8>>,
      vtepGenerations: UnsafeMutablePointer<Atomic<UInt8>>
    ) {
      self.words = words
      self.bucketMask = bucketMask
      self.bucketScale = bucketScale
      self.domainGenerations = domainGenerations
      self.portGenerations = portGenerations
      self.vtepGenerations = vtepGenerations
    }

    /// The top log2(bucket count) bits of the key's multiplicative hash, taken as
    /// `(hash >> 32) * buckets >> 32` (the same bits for a power of two up to 2^32):
    /// constant shifts, because a shift by a variable count must have it in `cl`, and the
    /// packet loops then shuffle their registers around every lookup to free `rcx`.
    @inlinable @inline(__always)
    func homeBucket(_ key: UInt64) -> Int {
      Int(truncatingIfNeeded: ((key &* 0x9E37_79B9_7F4A_7C15) &>> 32 &* bucketScale) &>> 32)
    }

    /// Starts pulling the key's home bucket into cache; call a few frames ahead of `lookup`.
    @inlinable @inline(__always)
    public func prefetch(_ key: UInt64) {
      cp_prefetch(UnsafeRawPointer(words + homeBucket(key) &* 8))
    }

    /// `prefetch` that also returns the home bucket, for `lookup(_:home:slot:)` later.
    @inlinable @inline(__always)
    public func prefetchHome(_ key: UInt64) -> Int {
      let bucket = homeBucket(key)
      cp_prefetch(UnsafeRawPointer(words + bucket &* 8))
      return bucket
    }

    @inlinable @inline(__always)
    public func lookup(_ key: UInt64, slot: inout Int) -> FDBEntry {
      lookup(key, home: homeBucket(key), slot: &slot)
    }

    /// The entry for `key` (`FDBEntry.none` when absent) and the word index of its value,
    /// for `refreshStamp`, starting at the key's home bucket `home` (from `prefetchHome`).
    /// Wait-free unless a writer is rewriting the bucket read.
    @inlinable @inline(__always)
    public func lookup(_ key: UInt64, home: Int, slot: inout Int) -> FDBEntry {
      var bucket = home
      var probes = 0
      while true {
        let base = words + bucket &* 8
        let sequence = base[0].load(ordering: .acquiring)
        let key0 = base[1].load(ordering: .relaxed)
        let key1 = base[2].load(ordering: .relaxed)
        let key2 = base[3].load(ordering: .relaxed)
        var found = -1
        if key0 == key { found = 4 } else if key1 == key { found = 5 } else if key2 == key { found = 6 }
        let value = found >= 0 ? base[found].load(ordering: .relaxed) : 0
        let overflow = base[7].load(ordering: .relaxed)
        atomicMemoryFence(ordering: .acquiring)
        if sequence & 1 != 0 || base[0].load(ordering: .relaxed) != sequence { continue }
        if found >= 0 {
          slot = bucket &* 8 &+ found
          return FDBEntry(rawValue: value)
        }
        probes &+= 1
        if overflow == 0 || probes > ForwardingTable.maxProbe { return .none }
        bucket = (bucket &+ 1) & bucketMask
      }
    }

    /// The value stored for `key` when its home bucket holds it and no writer is
    /// rewriting that bucket; 0 otherwise (absent, moved to an overflow bucket, or being
    /// written). One probe and no retry: the packet loops' fast lookup, which falls back to
    /// `lookup` whenever this returns 0.
    @inlinable @inline(__always)
    public func homeValue(_ key: UInt64) -> UInt64 {
      let base = words + homeBucket(key) &* 8
      let sequence = base[0].load(ordering: .acquiring)
      var value: UInt64 = 0
      if base[1].load(ordering: .relaxed) == key {
        value = base[4].load(ordering: .relaxed)
      } else if base[2].load(ordering: .relaxed) == key {
        value = base[5].load(ordering: .relaxed)
      } else if base[3].load(ordering: .relaxed) == key {
        value = base[6].load(ordering: .relaxed)
      }
      atomicMemoryFence(ordering: .acquiring)
      if sequence & 1 != 0 || base[0].load(ordering: .relaxed) != sequence { return 0 }
      return value
    }

    /// For a value whose target is a VTEP: whether that VTEP was not flushed since.
    @inlinable @inline(__always)
    public func vtepIsCurrent(_ value: UInt64) -> Bool {
      UInt8(truncatingIfNeeded: value &>> 28)
        == vtepGenerations[Int(truncatingIfNeeded: value & 0xFFFF)].load(ordering: .relaxed)
    }

    /// For a value whose target is a port member: whether that member was not flushed since.
    @inlinable @inline(__always)
    public func portIsCurrent(_ value: UInt64) -> Bool {
      UInt8(truncatingIfNeeded: value &>> 28)
        == portGenerations[Int(truncatingIfNeeded: value & 0xFFFF)].load(ordering: .relaxed)
    }

    /// True when neither the entry's bridge domain nor its target was flushed since it
    /// was written.
    @inlinable @inline(__always)
    public func isCurrent(_ entry: FDBEntry, bridgeDomain: UInt16) -> Bool {
      let domain = domainGenerations[Int(bridgeDomain)].load(ordering: .relaxed)
      if entry.domainGeneration != domain { return false }
      switch entry.kindBits {
      case FDBTargetKind.port.rawValue:
        return entry.targetGeneration == portGenerations[Int(entry.index)].load(ordering: .relaxed)
      case FDBTargetKind.vtep.rawValue:
        return entry.targetGeneration == vtepGenerations[Int(entry.index)].load(ordering: .relaxed)
      default:
        return true
      }
    }

    /// Sets a new last-seen stamp on the value at `slot` if it still holds `entry`.
    @inlinable @inline(__always)
    public func refreshStamp(slot: Int, entry: FDBEntry, stamp: UInt32) {
      _ = words[slot].compareExchange(
        expected: entry.rawValue, desired: entry.withStamp(stamp).rawValue, ordering: .relaxed)
    }
  }
}
