/// A syntax error in a TOML document.
///
/// The parser stops at the first one: after a syntax error the rest of the file can no longer
/// be trusted to mean what it seems to, so later messages would mostly be noise.
public struct TOMLError: Error, Sendable, Equatable, CustomStringConvertible {
  /// 1-based line of the offending text.
  public var line: Int
  public var message: String

  public init(line: Int, message: String) {
    self.line = line
    self.message = message
  }

  public var description: String { "line \(line): \(message)" }
}
