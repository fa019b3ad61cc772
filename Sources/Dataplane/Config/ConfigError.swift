/// One problem in a configuration file, located the way compilers do it.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
  public var file: String
  /// 1-based line of the offending key, value or table header; 0 when the problem concerns the
  /// whole file (it cannot be read, or `[site]` is missing).
  public var line: Int
  public var message: String

  public init(file: String, line: Int, message: String) {
    self.file = file
    self.line = line
    self.message = message
  }

  /// `FILE:LINE: message`, which editors and terminals turn into a link to the line.
  public var description: String { "\(file):\(line): \(message)" }
}

/// Every problem found in a configuration file, in line order.
///
/// Decoding does not stop at the first mistake: fixing a file one error per run is tedious,
/// and several errors often share a cause that is easier to see when they are listed together.
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
  public var errors: [ConfigError]

  public init(errors: [ConfigError]) { self.errors = errors }

  /// One `FILE:LINE: message` per line.
  public var description: String { errors.map(\.description).joined(separator: "\n") }
}
