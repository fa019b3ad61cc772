extension Pipeline {
  /// Where the source cache keeps `key`.
  @inline(__always)
  static func sourceCacheSlot(_ key: UInt64) -> Int {
    Int(truncatingIfNeeded: (key &* 0xD6E8_FEB8_6659_FD93) &>> (64 &- sourceCacheBits))
  }

  /// The source cache tag that says "seen at target `index` of `kind` this second, in
  /// this FDB epoch" is `sourceCacheTagBase(kind:now:) | index`: the base is computed
  /// once per batch, the index (16 bits, clear of the other fields) per frame.
  @inline(__always)
  func sourceCacheTagBase(kind: UInt64, now: UInt32) -> UInt64 {
    (kind &<< 16 | sourceCacheEpoch) ^ UInt64(now) &<< 50
  }

  /// Whether the source cache (`cache`, kept in a local by the caller) says `key` was
  /// found current this second at the target `tag` names: then the frame has nothing to
  /// learn.
  @inline(__always)
  static func sourceIsCached(_ key: UInt64, tag: UInt64, in cache: UnsafeMutablePointer<SourceCacheEntry>)
    -> Bool
  {
    let entry = cache + sourceCacheSlot(key)
    return entry.pointee.key == key && entry.pointee.tag == tag
  }

  /// Refreshes the source's entry when it already points where the frame came from;
  /// otherwise queues a learn event for the learner (deduplicated per second).
  @inline(__always)
  func learn(
    key: UInt64, kind: UInt64, index: UInt16, high: UInt64, low: UInt64, domain: UInt16, now: UInt32,
    knownVTEP: Bool = true
  ) {
    let target = kind &<< 16 | UInt64(index)
    let cacheSlot = Self.sourceCacheSlot(key)
    let cacheTag = sourceCacheTagBase(kind: kind, now: now) | UInt64(index)
    if knownVTEP && Self.sourceIsCached(key, tag: cacheTag, in: sourceCache) { return }
    var slot = 0
    let entry = fdb.lookup(key, slot: &slot)
    if entry.isPresent && fdb.isCurrent(entry, bridgeDomain: domain) {
      if knownVTEP && entry.target == target {
        if entry.stamp != now & UInt32(FDBEntry.stampMask) && entry.origin != .static {
          fdb.refreshStamp(slot: slot, entry: entry, stamp: now)
        }
        sourceCache[cacheSlot] = SourceCacheEntry(key: key, tag: cacheTag)
        return
      }
      if entry.origin == .static {
        count(Counter.staticMACViolations)
        return
      }
    }
    queueLearn(key: key, kind: kind, index: index, high: high, low: low, now: now)
  }

  /// `learn` out of line, for the fast paths' source cache misses.
  @inline(never)
  func learnOutOfLine(
    key: UInt64, kind: UInt64, index: UInt16, high: UInt64, low: UInt64, domain: UInt16, now: UInt32
  ) {
    learn(key: key, kind: kind, index: index, high: high, low: low, domain: domain, now: now)
  }

  /// The learn slow path, out of line: the source is new, moved or stale. Queues an event
  /// for the learner unless one for the same move went out this second.
  @inline(never)
  func queueLearn(key: UInt64, kind: UInt64, index: UInt16, high: UInt64, low: UInt64, now: UInt32) {
    let filterSlot = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) &>> (64 &- Self.filterBits))
    let tag =
      kind &<< 60 ^ UInt64(index) &<< 40 ^ UInt64(now) ^ (high ^ low) &* 0x100_0000_01B3 &<< 8
      ^ sourceCacheEpoch &<< 14
    if filterKeys[filterSlot] == key && filterTags[filterSlot] == tag { return }
    var event = LearnEvent()
    event.key = key
    event.kind = UInt8(truncatingIfNeeded: kind)
    event.member = index
    event.stamp = now
    event.vtepHigh = high
    event.vtepLow = low
    event.snapshotGeneration = snapshotGeneration
    if learnQueue.push(event) {
      filterKeys[filterSlot] = key
      filterTags[filterSlot] = tag
      count(Counter.learnEventsQueued)
    } else {
      count(Counter.learnQueueOverflow)
    }
  }
}
