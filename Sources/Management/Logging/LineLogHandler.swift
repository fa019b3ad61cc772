import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// swift-log handler for the daemon: one event per line on standard output,
/// `TIME LEVEL LABEL: message key=value ...`, metadata keys sorted so that lines diff and
/// grep well; values with spaces or quotes are quoted.
///
/// Thread-safety: lines from concurrent tasks never interleave (one lock around the write).
public struct LineLogHandler: LogHandler {
  public var logLevel: Logger.Level
  public var metadata: Logger.Metadata = [:]
  public var metadataProvider: Logger.MetadataProvider?
  let label: String
  let sink: LineSink

  public init(label: String, level: Logger.Level, sink: LineSink = .standardOutput) {
    self.label = label
    self.logLevel = level
    self.sink = sink
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var merged = metadata
    if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
    if let extra = event.metadata { merged.merge(extra) { _, new in new } }
    sink.write(Self.format(level: event.level, label: label, message: "\(event.message)", metadata: merged))
  }

  static func format(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String
  {
    var line = Self.timestamp() + " " + level.rawValue + " " + label + ": " + message
    for key in metadata.keys.sorted() {
      line += " " + key + "=" + quoted("\(metadata[key]!)")
    }
    return line
  }

  static func quoted(_ value: String) -> String {
    guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" })
    else { return value }
    return "\""
      + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      .replacingOccurrences(of: "\n", with: "\\n") + "\""
  }

  static func timestamp() -> String {
    Date.now.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
  }
}

/// Where log lines go: standard output (the daemon) or a closure (tests).
public final class LineSink: Sendable {
  private let lock = Mutex<Void>(())
  private let body: @Sendable (String) -> Void

  public init(_ body: @escaping @Sendable (String) -> Void) { self.body = body }

  public static let standardOutput = LineSink { line in
    var bytes = Array(line.utf8)
    bytes.append(0x0A)
    bytes.withUnsafeBytes { raw in
      var offset = 0
      while offset < raw.count {
        let written = Glibc.write(STDOUT_FILENO, raw.baseAddress! + offset, raw.count - offset)
        if written < 0 && errno == EINTR { continue }
        if written <= 0 { return }
        offset += written
      }
    }
  }

  func write(_ line: String) { lock.withLock { _ in body(line) } }
}

extension Logger.Level {
  /// The level named by `[site] log_level` / `--log-level` (swift-log's names).
  public init?(configName: String) { self.init(rawValue: configName) }
}
