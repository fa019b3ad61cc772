import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Writes an Ethernet (DLT_EN10MB) pcap file through libpcap's dumper, for fixtures,
/// benchmark traffic and captures of what the switch emitted.
///
/// Not thread-safe: one writer per thread. `close()` is idempotent and also runs in deinit
/// (where a failure cannot be reported, so call `close()` explicitly to see it).
public final class PcapWriter {
  /// Timestamp unit stored in the file; it selects the pcap magic number.
  public enum TimestampResolution: Sendable {
    case microseconds
    case nanoseconds
  }

  public let path: String
  public let resolution: TimestampResolution
  /// Frames longer than this are stored truncated (caplen < len), like a capture would.
  public let snapshotLength: Int

  private var deadHandle: OpaquePointer?
  private var dumper: OpaquePointer?

  /// Creates (or truncates) the file at `path`.
  public init(
    path: String, resolution: TimestampResolution = .nanoseconds, snapshotLength: Int = 262_144
  ) throws(PcapError) {
    self.path = path
    self.resolution = resolution
    self.snapshotLength = snapshotLength
    let precision = resolution == .nanoseconds ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO
    guard
      let dead = pcap_open_dead_with_tstamp_precision(
        DLT_EN10MB, Int32(clamping: snapshotLength), UInt32(precision))
    else { throw .cannotCreate(path: path, reason: "pcap_open_dead failed (out of memory?)") }
    guard let dumper = pcap_dump_open(dead, path) else {
      let reason = String(cString: pcap_geterr(dead))
      pcap_close(dead)
      throw .cannotCreate(path: path, reason: reason)
    }
    self.deadHandle = dead
    self.dumper = dumper
  }

  deinit { try? close() }

  /// Appends one frame (without FCS) stamped `timestampNanos` since the Unix epoch;
  /// microsecond files drop the sub-microsecond part.
  public func write(bytes: UnsafeRawBufferPointer, timestampNanos: UInt64) throws(PcapError) {
    guard let dumper else { throw .writerClosed(path: path) }
    var header = pcap_pkthdr()
    let subsecondNanos = timestampNanos % 1_000_000_000
    header.ts.tv_sec = Int(timestampNanos / 1_000_000_000)
    header.ts.tv_usec = Int(resolution == .nanoseconds ? subsecondNanos : subsecondNanos / 1_000)
    header.len = UInt32(clamping: bytes.count)
    header.caplen = UInt32(clamping: min(bytes.count, snapshotLength))
    guard let start = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
      // An empty frame: libpcap needs a pointer even for zero bytes.
      var empty: UInt8 = 0
      pcap_dump(UnsafeMutablePointer<UInt8>(dumper), &header, &empty)
      return
    }
    pcap_dump(UnsafeMutablePointer<UInt8>(dumper), &header, start)
  }

  /// Appends one frame given as an array (convenience for tests and generators).
  public func write(_ frame: [UInt8], timestampNanos: UInt64) throws(PcapError) {
    // withUnsafeBytes cannot forward a typed error, so the result is carried out.
    let result: Result<Void, PcapError> = frame.withUnsafeBytes { bytes in
      do throws(PcapError) {
        try write(bytes: bytes, timestampNanos: timestampNanos)
        return .success(())
      } catch { return .failure(error) }
    }
    try result.get()
  }

  /// Pushes buffered frames to the file so that other processes (tcpdump, tshark) see them.
  public func flush() throws(PcapError) {
    guard let dumper else { throw .writerClosed(path: path) }
    if pcap_dump_flush(dumper) != 0 {
      throw .writeFailed(path: path, reason: String(cString: strerror(errno)))
    }
  }

  /// Flushes and closes the file; later calls do nothing.
  public func close() throws(PcapError) {
    guard let dumper, let deadHandle else { return }
    let flushFailed = pcap_dump_flush(dumper) != 0
    let flushErrno = errno
    pcap_dump_close(dumper)
    pcap_close(deadHandle)
    self.dumper = nil
    self.deadHandle = nil
    if flushFailed {
      throw .writeFailed(path: path, reason: String(cString: strerror(flushErrno)))
    }
  }
}
