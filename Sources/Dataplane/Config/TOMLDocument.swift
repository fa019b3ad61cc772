/// A parsed TOML document: its root table, with every value and table tagged with its line.
///
/// The parser is strict on purpose: a configuration that a person got subtly wrong should be
/// refused with the line at fault, not half-understood. See `TOMLParser` for the subset read.
public struct TOMLDocument: Sendable, Equatable {
  public var root: TOMLTable

  /// Parses `text`; throws the first syntax error, as a `TOMLError` with its line.
  public init(parsing text: String) throws(TOMLError) {
    var parser = TOMLParser(bytes: Array(text.utf8))
    root = try parser.parseDocument()
  }

  /// Parses raw file contents, which must be UTF-8 as TOML requires.
  public init(parsing bytes: [UInt8]) throws(TOMLError) {
    if let line = Self.lineOfFirstInvalidUTF8(in: bytes) {
      throw TOMLError(line: line, message: "the file is not valid UTF-8")
    }
    var parser = TOMLParser(bytes: bytes)
    root = try parser.parseDocument()
  }

  public subscript(key: String) -> TOMLValue? { root[key] }

  private static func lineOfFirstInvalidUTF8(in bytes: [UInt8]) -> Int? {
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    var line = 1
    while true {
      switch decoder.decode(&iterator) {
      case .scalarValue(let scalar): if scalar == "\n" { line += 1 }
      case .emptyInput: return nil
      case .error: return line
      }
    }
  }
}
