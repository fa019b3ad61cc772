/// Failures reading or writing capture files. Every case names the file, so a message in a
/// test log or CLI error says which capture was at fault.
public enum PcapError: Error, Equatable, Sendable, CustomStringConvertible {
  /// Nothing exists at `path`.
  case fileNotFound(path: String)
  /// The file exists but cannot be opened (permissions, a directory, ...).
  case cannotOpen(path: String, reason: String)
  /// The file opened but libpcap recognises neither pcap nor pcapng in it.
  case notACaptureFile(path: String, reason: String)
  /// A capture whose link type is not Ethernet (DLT_EN10MB), the only one the switch reads.
  case unsupportedLinkType(path: String, linkType: Int32, linkTypeName: String)
  /// libpcap failed part-way (e.g. a truncated record) after `framesRead` good frames.
  case readFailed(path: String, framesRead: Int, reason: String)
  /// The output file could not be created.
  case cannotCreate(path: String, reason: String)
  /// Flushing or closing the output failed (disk full, I/O error).
  case writeFailed(path: String, reason: String)
  /// `write` after `close`.
  case writerClosed(path: String)

  public var path: String {
    switch self {
    case .fileNotFound(let path), .cannotOpen(let path, _), .notACaptureFile(let path, _),
      .unsupportedLinkType(let path, _, _), .readFailed(let path, _, _),
      .cannotCreate(let path, _), .writeFailed(let path, _), .writerClosed(let path):
      return path
    }
  }

  public var description: String {
    switch self {
    case .fileNotFound(let path):
      return "capture file \(path) does not exist"
    case .cannotOpen(let path, let reason):
      return "cannot open capture file \(path): \(reason)"
    case .notACaptureFile(let path, let reason):
      return "\(path) is not a pcap or pcapng capture: \(reason)"
    case .unsupportedLinkType(let path, let linkType, let name):
      return
        "capture \(path) has link type \(name) (\(linkType)); only Ethernet (DLT_EN10MB, 1) is supported"
    case .readFailed(let path, let framesRead, let reason):
      return "reading capture \(path) failed after \(framesRead) frames: \(reason)"
    case .cannotCreate(let path, let reason):
      return "cannot create capture file \(path): \(reason)"
    case .writeFailed(let path, let reason):
      return "writing capture file \(path) failed: \(reason)"
    case .writerClosed(let path):
      return "capture writer for \(path) is already closed"
    }
  }
}
