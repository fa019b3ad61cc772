extension PcapTrace {
  /// Interleaves several traces by timestamp, e.g. the captures of two ports replayed as
  /// one timeline. Returns `(tag, index)` pairs: frame `index` of the trace given with `tag`.
  ///
  /// This is a k-way merge, so each trace keeps its own file order even when its
  /// timestamps go backwards (as real captures sometimes do). It is stable: when heads
  /// have equal timestamps, the trace listed first wins. Cost is O(frames × traces), fine
  /// for the handful of traces a replay uses.
  public static func merge(_ traces: [(tag: Int, trace: PcapTrace)]) -> [(tag: Int, index: Int)] {
    var cursors = [Int](repeating: 0, count: traces.count)
    var merged: [(tag: Int, index: Int)] = []
    merged.reserveCapacity(traces.reduce(0) { $0 + $1.trace.count })
    while true {
      var earliest: Int?
      var earliestTimestamp = UInt64.max
      for (position, entry) in traces.enumerated() where cursors[position] < entry.trace.count {
        let timestamp = entry.trace.timestampsNanos[cursors[position]]
        // Strictly earlier only: ties keep the trace that comes first in the list.
        if earliest == nil || timestamp < earliestTimestamp {
          earliest = position
          earliestTimestamp = timestamp
        }
      }
      guard let position = earliest else { return merged }
      merged.append((tag: traces[position].tag, index: cursors[position]))
      cursors[position] += 1
    }
  }
}
