import CPacket
import Synchronization

/// The forwarding database: (bridge domain, MAC) -> `FDBEntry`, sized once, lock-free for
/// readers.
///
/// ## Thread-safety contract
/// - **Readers** (packet workers) call `lookup`, `prefetch`, `isCurrent` and
///   `refreshStamp` (here or on `reader`, a copy of the read side that packet loops keep
///   in a local) from any number of threads at once. They never block and never take
///   a lock; a lookup retries only while a writer is rewriting the very bucket it reads
///   (a few stores). A reader never sees a torn entry: every bucket carries a sequence
///   counter (a seqlock, as Open vSwitch's cmap does), and a lookup returns a key and
///   value read under one even, unchanged counter.
/// - **Writers** (the learner thread, the control shim, configuration, the ager) go
///   through `update` or `batch`, which serialise on one internal lock (`WriterLock`). Writers never
///   wait for readers. A control-plane bulk load takes the lock in chunks (`batch`), so
///   forwarding is never stalled and learning only waits between chunks.
/// - **Scans** (`scan(from:maxEntries:_:)`, for the control API and metrics) read the
///   buckets in index order with the same seqlock protocol as `lookup`, in resumable
///   pages, and never take the writer lock: however large the table, a scan delays no
///   writer and no packet worker. A bucket is retried only while a writer rewrites it.
///   What a scan reports, over all its pages (from cursor 0 until it returns nil):
///   - Every (key, value) reported was held by one slot at one instant: never a torn
///     entry (the key of one entry with the value of another, or half a value).
///   - An entry is never moved once placed: an insert takes a free slot on the key's
///     probe path, an update rewrites the value in place, a remove clears the slot
///     (overflow counts only bound lookups' probing; nothing is shifted back, rehashed
///     or resized). So a key present for the whole scan is reported exactly once, with a
///     value it held during the scan (its value may have changed: updates and stamp
///     refreshes leave it in its slot).
///   - A key inserted or removed during the scan is reported at most once per stay in
///     the table, or not at all, depending on whether its slot was read before or after
///     the change. A key removed and inserted again during the scan may land in another
///     slot (a freed one earlier on its probe path): it can then be reported twice, or
///     not at all.
///   - Entries are reported whether current or not (flush generations): callers filter
///     with `isCurrent`, as `forEach` callers do.
///   `forEach` remains for callers that need a consistent snapshot (it holds the writer
///   lock for the whole walk, so writers wait for it).
/// - `refreshStamp` is the one store readers make: a compare-and-swap on the value word
///   that changes only its age stamp. If a writer replaced the value meanwhile, the swap
///   fails and the refresh is dropped, which is harmless.
/// - The flush generations (`flush(bridgeDomain:)`, `flush(port:)`, `flush(vtep:)`) are
///   atomics bumped by writers: an entry whose generations are not current is invisible
///   to `isCurrent` at once, and the ager reclaims it. Packet workers sample the bridge
///   domains' generations and `changeEpoch` once per batch (their flow and source caches
///   are valid for one epoch), so a worker forwards by a flush, removal or retarget
///   from its next batch on: frames of a batch already being forwarded (at most 256,
///   microseconds) may still follow the entries as they were when it started.
///
/// ## Layout
/// Buckets are one 64-byte cache line: a sequence word, three keys, three values and an
/// overflow count (how many entries probed past this bucket to find a home). Lookups
/// linear-probe to the next bucket only while that count is non-zero, so deletes free a
/// slot outright and no tombstones accumulate. 1M entries take 32 MiB.
// @unchecked: raw bucket memory; writers serialise on `WriterLock`, readers use the seqlock.
public final class ForwardingTable: @unchecked Sendable {
  public static let maxBridgeDomains = 4096
  public static let maxPorts = 4096
  public static let maxVTEPs = 65536
  /// An insert that would probe further than this many buckets is refused as "full".
  @usableFromInline static let maxProbe = 64
  static let slotsPerBucket = 3

  /// Capacity in entries the table was sized for (at 75% bucket-slot load).
  public let capacity: Int
  @usableFromInline let bucketMask: Int
  @usableFromInline let bucketScale: UInt64
  @usableFromInline let words: UnsafeMutablePointer<Atomic<UInt64>>
  @usableFromInline let domainGenerations: UnsafeMutablePointer<Atomic<UInt8>>
  @usableFromInline let portGenerations: UnsafeMutablePointer<Atomic<UInt8>>
  @usableFromInline let vtepGenerations: UnsafeMutablePointer<Atomic<UInt8>>
  private let writer: WriterLock<WriterState>
  private let entryCount = Atomic<Int>(0)
  /// Bumped whenever an entry is removed, retargeted or flushed: per-worker caches of
  /// "this source is already known here" compare it to stay exact.
  public let changeEpoch = Atomic<UInt32>(0)

  struct WriterState {
    var learnedPerDomain: [Int]
    var countByOrigin: [Int] = [0, 0, 0, 0]
  }

  public var bucketCount: Int { bucketMask + 1 }
  /// Bytes of table memory (buckets only).
  public var memoryBytes: Int { bucketCount * 64 }
  public var count: Int { entryCount.load(ordering: .relaxed) }

  public init(capacity: Int) {
    let wanted = max(64, (capacity * 4 / 3 + Self.slotsPerBucket - 1) / Self.slotsPerBucket)
    var buckets = 64
    while buckets < wanted { buckets <<= 1 }
    self.capacity = capacity
    bucketMask = buckets - 1
    precondition(buckets <= 1 << 32, "an FDB of more than 2^32 buckets")
    bucketScale = UInt64(buckets)
    let raw = UnsafeMutableRawPointer.allocate(byteCount: buckets * 64, alignment: 64)
    words = raw.bindMemory(to: Atomic<UInt64>.self, capacity: buckets * 8)
    for index in 0..<(buckets * 8) { (words + index).initialize(to: Atomic(0)) }
    domainGenerations = Self.allocateGenerations(Self.maxBridgeDomains)
    portGenerations = Self.allocateGenerations(Self.maxPorts)
    vtepGenerations = Self.allocateGenerations(Self.maxVTEPs)
    reader = Reader(
      words: words, bucketMask: bucketMask, bucketScale: bucketScale, domainGenerations: domainGenerations,
      portGenerations: portGenerations, vtepGenerations: vtepGenerations)
    writer = WriterLock(WriterState(learnedPerDomain: Array(repeating: 0, count: Self.maxBridgeDomains)))
  }

  private static func allocateGenerations(_ count: Int) -> UnsafeMutablePointer<Atomic<UInt8>> {
    let pointer = UnsafeMutablePointer<Atomic<UInt8>>.allocate(capacity: count)
    for index in 0..<count { (pointer + index).initialize(to: Atomic(0)) }
    return pointer
  }

  deinit {
    UnsafeMutableRawPointer(words).deallocate()
    domainGenerations.deallocate()
    portGenerations.deallocate()
    vtepGenerations.deallocate()
  }

  // MARK: Readers

  /// The reader's view of the table (`ForwardingTable.Reader`): packet loops copy it
  /// into a local once per batch.
  public let reader: Reader

  @inlinable @inline(__always)
  func homeBucket(_ key: UInt64) -> Int { reader.homeBucket(key) }

  /// Starts pulling the key's home bucket into cache; call a few frames ahead of `lookup`.
  @inlinable @inline(__always)
  public func prefetch(_ key: UInt64) { reader.prefetch(key) }

  @inlinable @inline(__always)
  public func lookup(_ key: UInt64, slot: inout Int) -> FDBEntry { reader.lookup(key, slot: &slot) }

  @inlinable @inline(__always)
  public func lookup(_ key: FDBKey) -> FDBEntry {
    var slot = 0
    return reader.lookup(key.rawValue, slot: &slot)
  }

  @inlinable @inline(__always)
  public func isCurrent(_ entry: FDBEntry, bridgeDomain: UInt16) -> Bool {
    reader.isCurrent(entry, bridgeDomain: bridgeDomain)
  }

  /// Sets a new last-seen stamp on the value at `slot` if it still holds `entry`.
  @inlinable @inline(__always)
  public func refreshStamp(slot: Int, entry: FDBEntry, stamp: UInt32) {
    reader.refreshStamp(slot: slot, entry: entry, stamp: stamp)
  }

  // MARK: Flush generations

  public func currentGenerations(bridgeDomain: UInt16, kind: FDBTargetKind, index: UInt16) -> (UInt8, UInt8) {
    let domain = domainGenerations[Int(bridgeDomain)].load(ordering: .relaxed)
    let target: UInt8
    switch kind {
    case .port: target = portGenerations[Int(index)].load(ordering: .relaxed)
    case .vtep: target = vtepGenerations[Int(index)].load(ordering: .relaxed)
    case .drop: target = 0
    }
    return (domain, target)
  }

  /// Makes every entry of the bridge domain invisible at once. When the 8-bit generation
  /// wraps, stale entries are reclaimed first so that none can come back to life.
  public func flush(bridgeDomain: UInt16) {
    bumpGeneration(domainGenerations + Int(bridgeDomain)) { entryDomain, entry in
      entryDomain == bridgeDomain
    }
  }

  /// Makes every entry pointing at the port member invisible at once.
  public func flush(port: UInt16) {
    bumpGeneration(portGenerations + Int(port)) { _, entry in
      entry.kindBits == FDBTargetKind.port.rawValue && entry.index == port
    }
  }

  /// Makes every entry pointing at the VTEP invisible at once.
  public func flush(vtep: UInt16) {
    bumpGeneration(vtepGenerations + Int(vtep)) { _, entry in
      entry.kindBits == FDBTargetKind.vtep.rawValue && entry.index == vtep
    }
  }

  private func bumpGeneration(
    _ generation: UnsafeMutablePointer<Atomic<UInt8>>, affects: (UInt16, FDBEntry) -> Bool
  ) {
    writer.withLock { state in
      let next = generation.pointee.load(ordering: .relaxed) &+ 1
      if next == 0 {
        removeAllLocked(&state) { key, entry in affects(key.bridgeDomain, entry) }
      }
      generation.pointee.store(next, ordering: .releasing)
      changeEpoch.add(1, ordering: .releasing)
    }
  }

  // MARK: Writers

  /// What a writer decides for one key, given the entry stored now.
  public enum Decision {
    case keep
    case set(FDBEntry)
    case remove
  }

  public enum Outcome: Equatable {
    case unchanged
    case inserted
    case updated(old: FDBEntry)
    case removed(old: FDBEntry)
    /// No free slot within the probe limit.
    case full
  }

  /// Exclusive access for a run of updates under one hold of the writer lock.
  public struct WriteAccess: ~Copyable {
    fileprivate let table: ForwardingTable
    fileprivate var state: UnsafeMutablePointer<WriterState>

    @discardableResult
    public mutating func update(_ key: FDBKey, _ decide: (FDBEntry?) -> Decision) -> Outcome {
      table.updateLocked(&state.pointee, key.rawValue, decide)
    }

    public func learnedCount(bridgeDomain: UInt16) -> Int {
      state.pointee.learnedPerDomain[Int(bridgeDomain)]
    }

    public var learnedCount: Int { state.pointee.countByOrigin[1] + state.pointee.countByOrigin[2] }
  }

  /// Runs `body` with the writer lock held. Keep `body` short (a chunk of ~1k updates):
  /// other writers wait for it, readers do not.
  public func batch<R>(_ body: (inout WriteAccess) throws -> R) rethrows -> R {
    try writer.withLock { state in
      try withUnsafeMutablePointer(to: &state) { pointer in
        var access = WriteAccess(table: self, state: pointer)
        return try body(&access)
      }
    }
  }

  @discardableResult
  public func update(_ key: FDBKey, _ decide: (FDBEntry?) -> Decision) -> Outcome {
    batch { $0.update(key, decide) }
  }

  /// Count of entries by origin, and learned entries per bridge domain.
  public func counts() -> (byOrigin: [FDBOrigin: Int], total: Int) {
    writer.withLock { state in
      var result: [FDBOrigin: Int] = [:]
      for origin in FDBOrigin.allCases { result[origin] = state.countByOrigin[Int(origin.rawValue)] }
      return (result, state.countByOrigin.reduce(0, +))
    }
  }

  /// Calls `body` for every stored entry (current or not) under the writer lock: a
  /// consistent snapshot, but every writer (learning, the control plane) waits for the
  /// whole walk. For listings that need no snapshot, use `scan`.
  public func forEach(_ body: (FDBKey, FDBEntry) -> Void) {
    writer.withLock { _ in
      for bucket in 0...bucketMask {
        let base = words + bucket * 8
        for slot in 1...3 {
          let key = base[slot].load(ordering: .relaxed)
          if key != 0 {
            body(FDBKey(rawValue: key), FDBEntry(rawValue: base[slot + 3].load(ordering: .relaxed)))
          }
        }
      }
    }
  }

  /// Reads the buckets from index `cursor` on, lock-free (the bucket seqlock, as `lookup`
  /// does), and calls `body` for every stored entry (current or not) in them. Stops at the
  /// first bucket boundary where at least `maxEntries` entries were reported (so at most
  /// `maxEntries + 2`; a bucket holds 3), after at least one bucket, and returns the
  /// cursor to resume from, or nil when the last bucket was read. Start at 0; a cursor
  /// stays valid for the table's lifetime (it is never resized). What a scan reports
  /// while writers run: see the type's thread-safety contract.
  ///
  /// `body` runs with no lock held and may take any lock, or call back into the table.
  public func scan(from cursor: Int, maxEntries: Int, _ body: (FDBKey, FDBEntry) -> Void) -> Int? {
    precondition(cursor >= 0, "scan cursors start at 0")
    var bucket = cursor
    var reported = 0
    while bucket <= bucketMask {
      let base = words + bucket * 8
      var keys: (UInt64, UInt64, UInt64)
      var values: (UInt64, UInt64, UInt64)
      while true {
        let sequence = base[0].load(ordering: .acquiring)
        keys = (
          base[1].load(ordering: .relaxed), base[2].load(ordering: .relaxed), base[3].load(ordering: .relaxed)
        )
        values = (
          base[4].load(ordering: .relaxed), base[5].load(ordering: .relaxed), base[6].load(ordering: .relaxed)
        )
        atomicMemoryFence(ordering: .acquiring)
        if sequence & 1 == 0 && base[0].load(ordering: .relaxed) == sequence { break }
      }
      bucket += 1
      if keys.0 != 0 {
        body(FDBKey(rawValue: keys.0), FDBEntry(rawValue: values.0))
        reported += 1
      }
      if keys.1 != 0 {
        body(FDBKey(rawValue: keys.1), FDBEntry(rawValue: values.1))
        reported += 1
      }
      if keys.2 != 0 {
        body(FDBKey(rawValue: keys.2), FDBEntry(rawValue: values.2))
        reported += 1
      }
      if reported >= maxEntries { break }
    }
    return bucket <= bucketMask ? bucket : nil
  }

  /// Removes every entry for which `shouldRemove` is true; returns how many. For the ager
  /// and for reclaiming flushed entries; takes the writer lock once per `chunk` buckets so
  /// that other writers interleave.
  @discardableResult
  public func removeAll(chunk: Int = 4096, where shouldRemove: (FDBKey, FDBEntry) -> Bool) -> Int {
    var removed = 0
    var start = 0
    while start <= bucketMask {
      let end = min(bucketMask, start + chunk - 1)
      writer.withLock { state in
        removed += removeLocked(&state, buckets: start...end, shouldRemove)
      }
      start = end + 1
    }
    return removed
  }

  private func removeAllLocked(_ state: inout WriterState, _ shouldRemove: (FDBKey, FDBEntry) -> Bool) {
    _ = removeLocked(&state, buckets: 0...bucketMask, shouldRemove)
  }

  private func removeLocked(
    _ state: inout WriterState, buckets: ClosedRange<Int>, _ shouldRemove: (FDBKey, FDBEntry) -> Bool
  ) -> Int {
    var removed = 0
    for bucket in buckets {
      let base = words + bucket * 8
      for slot in 1...3 {
        let key = base[slot].load(ordering: .relaxed)
        guard key != 0 else { continue }
        let entry = FDBEntry(rawValue: base[slot + 3].load(ordering: .relaxed))
        if shouldRemove(FDBKey(rawValue: key), entry) {
          _ = updateLocked(&state, key) { _ in .remove }
          removed += 1
        }
      }
    }
    return removed
  }

  /// Finds `key`: its bucket and slot (1...3), or nil.
  private func findLocked(_ key: UInt64) -> (bucket: Int, slot: Int)? {
    var bucket = homeBucket(key)
    for _ in 0...Self.maxProbe {
      let base = words + bucket * 8
      for slot in 1...3 where base[slot].load(ordering: .relaxed) == key { return (bucket, slot) }
      if base[7].load(ordering: .relaxed) == 0 { return nil }
      bucket = (bucket + 1) & bucketMask
    }
    return nil
  }

  private func updateLocked(_ state: inout WriterState, _ key: UInt64, _ decide: (FDBEntry?) -> Decision)
    -> Outcome
  {
    precondition(key != 0, "FDB keys need a bridge domain index of at least 1")
    if let (bucket, slot) = findLocked(key) {
      let base = words + bucket * 8
      let old = FDBEntry(rawValue: base[slot + 3].load(ordering: .relaxed))
      switch decide(old) {
      case .keep:
        return .unchanged
      case .set(let entry):
        if entry == old { return .unchanged }
        account(&state, key: key, entry: old, delta: -1)
        account(&state, key: key, entry: entry, delta: 1)
        writeBucket(base) { base[slot + 3].store(entry.rawValue, ordering: .relaxed) }
        if entry.target != old.target || entry.origin != old.origin {
          changeEpoch.add(1, ordering: .releasing)
        }
        return .updated(old: old)
      case .remove:
        writeBucket(base) {
          base[slot].store(0, ordering: .relaxed)
          base[slot + 3].store(0, ordering: .relaxed)
        }
        // Overflow counts on the probe path drop only after the slot is gone, so a
        // concurrent reader never stops short of an entry that is still there.
        var path = homeBucket(key)
        while path != bucket {
          let counter = words + path * 8 + 7
          counter.pointee.store(counter.pointee.load(ordering: .relaxed) - 1, ordering: .releasing)
          path = (path + 1) & bucketMask
        }
        account(&state, key: key, entry: old, delta: -1)
        entryCount.subtract(1, ordering: .relaxed)
        changeEpoch.add(1, ordering: .releasing)
        return .removed(old: old)
      }
    }
    guard case .set(let entry) = decide(nil) else { return .unchanged }
    let home = homeBucket(key)
    var bucket = home
    for _ in 0...Self.maxProbe {
      let base = words + bucket * 8
      for slot in 1...3 where base[slot].load(ordering: .relaxed) == 0 {
        var path = home
        while path != bucket {
          let counter = words + path * 8 + 7
          counter.pointee.store(counter.pointee.load(ordering: .relaxed) + 1, ordering: .releasing)
          path = (path + 1) & bucketMask
        }
        writeBucket(base) {
          base[slot + 3].store(entry.rawValue, ordering: .relaxed)
          base[slot].store(key, ordering: .relaxed)
        }
        account(&state, key: key, entry: entry, delta: 1)
        entryCount.add(1, ordering: .relaxed)
        return .inserted
      }
      bucket = (bucket + 1) & bucketMask
    }
    return .full
  }

  /// The writer half of the bucket seqlock: odd while the bucket is being rewritten.
  @inline(__always)
  private func writeBucket(_ base: UnsafeMutablePointer<Atomic<UInt64>>, _ body: () -> Void) {
    let sequence = base[0].load(ordering: .relaxed)
    base[0].store(sequence &+ 1, ordering: .relaxed)
    atomicMemoryFence(ordering: .releasing)
    body()
    base[0].store(sequence &+ 2, ordering: .releasing)
  }

  private func account(_ state: inout WriterState, key: UInt64, entry: FDBEntry, delta: Int) {
    let origin = entry.origin
    state.countByOrigin[Int(origin.rawValue)] += delta
    if origin == .local || origin == .decap {
      state.learnedPerDomain[Int(FDBKey(rawValue: key).bridgeDomain)] += delta
    }
  }
}
