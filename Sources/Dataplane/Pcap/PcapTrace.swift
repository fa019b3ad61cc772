import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A whole Ethernet capture (pcap or pcapng) loaded into memory for replay and tests.
///
/// All captured bytes live in ONE buffer (`frameBytes`), each frame starting on a 64-byte
/// boundary; per-frame metadata is kept in parallel arrays indexed by frame number, which
/// keeps replay loops free of per-frame allocations and pointer chasing.
///
/// The trace is immutable after loading and owns its buffer: pointers obtained from
/// `frame(at:)` stay valid as long as the trace is alive.
// @unchecked: raw buffer written while loading, immutable afterwards.
public final class PcapTrace: @unchecked Sendable {
  /// Alignment of every frame start inside `frameBytes`.
  public static let frameAlignment = AlignedFrameArena.alignment

  /// The file the trace was loaded from.
  public let path: String
  /// Start of the contiguous buffer holding every captured frame.
  public let frameBytes: UnsafeRawPointer
  /// Bytes of `frameBytes` in use (frames plus alignment padding).
  public let frameBytesCount: Int
  /// Offset of each frame in `frameBytes`; always a multiple of `frameAlignment`.
  public let offsets: [Int]
  /// Bytes captured per frame (pcap `caplen`): what `frame(at:)` returns.
  public let capturedLengths: [Int]
  /// Length of each frame on the wire (pcap `len`); larger than captured when truncated.
  public let originalLengths: [Int]
  /// Capture timestamps in nanoseconds since the Unix epoch (microsecond files are scaled).
  public let timestampsNanos: [UInt64]

  private let arena: AlignedFrameArena

  /// Number of frames.
  public var count: Int { offsets.count }

  /// True when frame `index` was cut by the capture's snapshot length (caplen < len).
  public func isTruncated(_ index: Int) -> Bool { capturedLengths[index] < originalLengths[index] }

  /// Number of truncated frames in the trace.
  public var truncatedFrameCount: Int {
    zip(capturedLengths, originalLengths).reduce(0) { $0 + ($1.0 < $1.1 ? 1 : 0) }
  }

  /// The captured bytes of frame `index`, valid while the trace is alive.
  public func frame(at index: Int) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: frameBytes + offsets[index], count: capturedLengths[index])
  }

  /// A copy of frame `index` (for tests and tools; replay should use `frame(at:)`).
  public func frameArray(at index: Int) -> [UInt8] { Array(frame(at: index)) }

  /// Loads every frame of the pcap or pcapng file at `path`.
  ///
  /// - Throws: `PcapError.fileNotFound`, `.cannotOpen`, `.notACaptureFile`,
  ///   `.unsupportedLinkType` (anything but Ethernet) or `.readFailed`.
  public init(path: String) throws(PcapError) {
    self.path = path
    let handle = try Self.openOffline(path: path)
    defer { pcap_close(handle) }

    let linkType = pcap_datalink(handle)
    guard linkType == DLT_EN10MB else {
      let name = pcap_datalink_val_to_name(linkType).map { String(cString: $0) } ?? "unknown"
      throw .unsupportedLinkType(path: path, linkType: linkType, linkTypeName: name)
    }

    var arena = AlignedFrameArena(initialCapacity: Self.fileSize(path: path) * 2)
    var offsets: [Int] = []
    var capturedLengths: [Int] = []
    var originalLengths: [Int] = []
    var timestamps: [UInt64] = []

    var header: UnsafeMutablePointer<pcap_pkthdr>?
    var data: UnsafePointer<UInt8>?
    readLoop: while true {
      switch pcap_next_ex(handle, &header, &data) {
      case 1:
        guard let header, let data else { continue readLoop }
        let record = header.pointee
        let capturedLength = Int(record.caplen)
        offsets.append(arena.append(UnsafeRawPointer(data), count: capturedLength))
        capturedLengths.append(capturedLength)
        originalLengths.append(Int(record.len))
        timestamps.append(Self.nanoseconds(record.ts))
      case PCAP_ERROR_BREAK:  // end of file for offline captures
        break readLoop
      default:
        let reason = String(cString: pcap_geterr(handle))
        arena.deallocate()
        throw .readFailed(path: path, framesRead: offsets.count, reason: reason)
      }
    }

    self.arena = arena
    self.frameBytes = UnsafeRawPointer(arena.base)
    self.frameBytesCount = arena.used
    self.offsets = offsets
    self.capturedLengths = capturedLengths
    self.originalLengths = originalLengths
    self.timestampsNanos = timestamps
  }

  deinit { arena.deallocate() }

  /// Opens through our own `fopen` first so that "no such file" and "not a capture" are
  /// told apart; libpcap reports both as a bare string.
  private static func openOffline(path: String) throws(PcapError) -> OpaquePointer {
    var status = stat()
    if stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR {
      throw .cannotOpen(path: path, reason: "is a directory")
    }
    guard let file = fopen(path, "rb") else {
      let code = errno
      if code == ENOENT { throw .fileNotFound(path: path) }
      throw .cannotOpen(path: path, reason: String(cString: strerror(code)))
    }
    var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
    // Nanosecond precision makes libpcap scale microsecond files, so callers see one unit.
    guard
      let handle = pcap_fopen_offline_with_tstamp_precision(
        file, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errorBuffer)
    else {
      fclose(file)  // libpcap only takes ownership of the FILE on success
      throw .notACaptureFile(path: path, reason: String(cErrorBuffer: errorBuffer))
    }
    return handle
  }

  private static func fileSize(path: String) -> Int {
    var status = stat()
    guard stat(path, &status) == 0 else { return 0 }
    return Int(status.st_size)
  }

  /// With nanosecond precision, libpcap stores nanoseconds in `tv_usec`.
  private static func nanoseconds(_ time: timeval) -> UInt64 {
    guard time.tv_sec >= 0, time.tv_usec >= 0 else { return 0 }
    return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_usec)
  }
}
