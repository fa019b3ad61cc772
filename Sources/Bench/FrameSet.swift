import Dataplane

#if canImport(Glibc)
  import Glibc
#endif

/// Frames to replay, as parallel pointer/length arrays: either pointers into a loaded
/// `PcapTrace` (which the set keeps alive) or into its own 64-byte-aligned buffer.
final class FrameSet {
  let frames: UnsafeMutablePointer<UnsafeMutableRawPointer>
  let lengths: UnsafeMutablePointer<Int32>
  let count: Int
  let totalBytes: Int
  private let trace: PcapTrace?
  private let buffer: UnsafeMutableRawPointer?

  init(trace: PcapTrace) {
    self.trace = trace
    buffer = nil
    count = trace.count
    frames = .allocate(capacity: max(1, count))
    lengths = .allocate(capacity: max(1, count))
    var bytes = 0
    let base = UnsafeMutableRawPointer(mutating: trace.frameBytes)
    for index in 0..<count {
      (frames + index).initialize(to: base + trace.offsets[index])
      (lengths + index).initialize(to: Int32(trace.capturedLengths[index]))
      bytes += trace.capturedLengths[index]
    }
    totalBytes = bytes
  }

  init(frames list: [[UInt8]]) {
    trace = nil
    count = list.count
    let stride = list.reduce(0) { $0 + ($1.count + 63) / 64 * 64 }
    let memory = UnsafeMutableRawPointer.allocate(byteCount: max(64, stride), alignment: 64)
    buffer = memory
    frames = .allocate(capacity: max(1, count))
    lengths = .allocate(capacity: max(1, count))
    var offset = 0
    var bytes = 0
    for (index, frame) in list.enumerated() {
      frame.withUnsafeBytes { (memory + offset).copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
      (frames + index).initialize(to: memory + offset)
      (lengths + index).initialize(to: Int32(frame.count))
      offset += (frame.count + 63) / 64 * 64
      bytes += frame.count
    }
    totalBytes = bytes
  }

  deinit {
    frames.deallocate()
    lengths.deallocate()
    buffer?.deallocate()
  }

  func frameArray(_ index: Int) -> [UInt8] {
    Array(UnsafeRawBufferPointer(start: frames[index], count: Int(lengths[index])))
  }

  var averageBytes: Double { count == 0 ? 0 : Double(totalBytes) / Double(count) }
}

@inline(__always) func monotonicNanos() -> UInt64 {
  var spec = timespec()
  clock_gettime(CLOCK_MONOTONIC, &spec)
  return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}

/// Progress lines for long runs go to stderr, so that stdout stays a table or JSON.
func progress(_ text: String) {
  fputs(text + "\n", stderr)
}
