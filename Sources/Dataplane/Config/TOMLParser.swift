/// A strict recursive-descent parser for the subset of TOML 1.0 that configuration files need.
///
/// Supported: comments, `[table]` and `[[array.of.tables]]` headers, bare, quoted and dotted
/// keys, basic strings with escapes, literal strings, integers (decimal, `0x`, `0o`, `0b`, with
/// `_` separators), booleans, arrays (multi-line, trailing comma, comments) and inline tables.
/// Floats, dates and multi-line strings are rejected with a message saying so, rather than
/// being misread. It works on UTF-8 bytes and stops at the first error.
struct TOMLParser {
  /// Bounds the recursion of arrays, inline tables and dotted keys, so hostile input fails with
  /// an error instead of exhausting the stack.
  static let maximumNestingDepth = 64

  private let bytes: [UInt8]
  private var position = 0
  private var line = 1
  private let root = TOMLTableBuilder(origin: .root, line: 0)
  /// Table that `key = value` lines go into: the root, or the one named by the last header.
  private var currentTable: TOMLTableBuilder
  private var currentTableDepth = 0

  /// `bytes` must be valid UTF-8 (`TOMLDocument` checks).
  init(bytes: [UInt8]) {
    self.bytes = bytes
    self.currentTable = root
  }

  mutating func parseDocument() throws(TOMLError) -> TOMLTable {
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    while position < bytes.count {
      skipWhitespace()
      guard let byte = peek() else { break }
      switch byte {
      case ASCII.hash, ASCII.lineFeed, ASCII.carriageReturn:
        try expectLineEnd(after: nil)
      case ASCII.openBracket:
        try parseTableHeader()
        try expectLineEnd(after: "table header")
      default:
        try parseKeyValue(into: currentTable, depth: currentTableDepth)
        try expectLineEnd(after: "value")
      }
    }
    return root.build()
  }

  // MARK: - Lines, whitespace, comments

  private func peek(_ offset: Int = 0) -> UInt8? {
    position + offset < bytes.count ? bytes[position + offset] : nil
  }

  private var atLineBreak: Bool {
    peek() == ASCII.lineFeed || (peek() == ASCII.carriageReturn && peek(1) == ASCII.lineFeed)
  }

  private mutating func skipWhitespace() {
    while let byte = peek(), byte == ASCII.space || byte == ASCII.tab { position += 1 }
  }

  private mutating func consumeLineBreak() {
    position += peek() == ASCII.carriageReturn ? 2 : 1
    line += 1
  }

  /// Consumes a `#` comment up to, not including, the line break.
  private mutating func skipComment() throws(TOMLError) {
    position += 1
    while let byte = peek(), !atLineBreak {
      if isForbiddenControl(byte) {
        throw error("\(describeCharacter(at: position)) is not allowed in a comment")
      }
      position += 1
    }
  }

  /// After a header or a `key = value` (`what`): only whitespace and a comment may remain.
  private mutating func expectLineEnd(after what: String?) throws(TOMLError) {
    skipWhitespace()
    if peek() == ASCII.hash { try skipComment() }
    if peek() == nil { return }
    guard atLineBreak else {
      let context = what.map { " after the \($0)" } ?? ""
      throw error("unexpected \(describeCharacter(at: position))\(context); expected end of line")
    }
    consumeLineBreak()
  }

  /// Inside arrays: whitespace, line breaks and comments, in any number.
  private mutating func skipBlankSpace() throws(TOMLError) {
    while true {
      skipWhitespace()
      if peek() == ASCII.hash {
        try skipComment()
      } else if atLineBreak {
        consumeLineBreak()
      } else {
        return
      }
    }
  }

  // MARK: - Headers and key/value pairs

  private mutating func parseTableHeader() throws(TOMLError) {
    let headerLine = line
    position += 1
    let isArrayOfTables = peek() == ASCII.openBracket
    if isArrayOfTables { position += 1 }
    let path = try parseKey()
    skipWhitespace()
    let closing = isArrayOfTables ? "]]" : "]"
    guard peek() == ASCII.closeBracket, !isArrayOfTables || peek(1) == ASCII.closeBracket else {
      let found = peek() == ASCII.closeBracket ? position + 1 : position
      throw error("expected '\(closing)' to close the table header, found \(describeCharacter(at: found))")
    }
    position += closing.utf8.count
    currentTable = try defineTable(path, isArrayOfTables: isArrayOfTables, line: headerLine)
    currentTableDepth = path.count
  }

  /// Finds or creates the table a header names, enforcing TOML's rule that a table is defined
  /// only once.
  private func defineTable(_ path: [String], isArrayOfTables: Bool, line: Int) throws(TOMLError)
    -> TOMLTableBuilder
  {
    let header = isArrayOfTables ? "[[\(displayKey(path))]]" : "[\(displayKey(path))]"
    var parent = root
    for (index, segment) in path.dropLast().enumerated() {
      switch parent[segment] {
      case nil:
        let created = TOMLTableBuilder(origin: .implicit, line: line)
        parent[segment] = .table(created)
        parent = created
      case .table(let existing):
        parent = existing
      case .arrayOfTables(let array):
        parent = array.last
      case .value(let value):
        throw error(
          "cannot define \(header): \(displayKey(path[...index])) is already \(describe(.value(value))) "
            + "(line \(value.line))", line: line)
      }
    }
    let name = path[path.count - 1]
    let existing = parent[name]
    if isArrayOfTables {
      let element = TOMLTableBuilder(origin: .header, line: line)
      switch existing {
      case nil:
        parent[name] = .arrayOfTables(TOMLTableBuilder.TableArray(first: element))
      case .arrayOfTables(let array):
        array.append(element)
      case .some(let slot):
        throw error(
          "cannot define \(header): \(displayKey(path)) is already \(describe(slot)) (line \(slot.line))",
          line: line)
      }
      return element
    }
    switch existing {
    case nil:
      let created = TOMLTableBuilder(origin: .header, line: line)
      parent[name] = .table(created)
      return created
    case .table(let table) where table.origin == .implicit:
      table.origin = .header
      table.line = line
      return table
    case .table(let table) where table.origin == .dottedKey:
      throw error("table \(header) is already defined by dotted keys on line \(table.line)", line: line)
    case .table(let table):
      throw error("table \(header) is already defined on line \(table.line)", line: line)
    case .some(let slot):
      throw error(
        "cannot define \(header): \(displayKey(path)) is already \(describe(slot)) (line \(slot.line))",
        line: line)
    }
  }

  /// `key = value`, where the key may be dotted; `depth` is how deep `table` already is.
  private mutating func parseKeyValue(into table: TOMLTableBuilder, depth: Int) throws(TOMLError) {
    let keyLine = line
    let path = try parseKey()
    guard depth + path.count <= Self.maximumNestingDepth else {
      throw error("values are nested too deeply")
    }
    skipWhitespace()
    guard peek() == ASCII.equals else {
      throw error("expected '=' after key \(displayKey(path)), found \(describeCharacter(at: position))")
    }
    position += 1
    skipWhitespace()
    let value = try parseValue(depth: depth + path.count)
    try insert(value, at: path, into: table, line: keyLine)
  }

  /// Stores a value under a possibly dotted key, creating the intermediate tables; a dotted key
  /// may only extend tables that dotted keys created.
  private func insert(_ value: TOMLValue, at path: [String], into table: TOMLTableBuilder, line: Int)
    throws(TOMLError)
  {
    var target = table
    for (index, segment) in path.dropLast().enumerated() {
      switch target[segment] {
      case nil:
        let created = TOMLTableBuilder(origin: .dottedKey, line: line)
        target[segment] = .table(created)
        target = created
      case .table(let existing) where existing.origin == .dottedKey:
        target = existing
      case .some(let slot):
        throw error(
          "cannot set key \(displayKey(path)): \(displayKey(path[...index])) is already "
            + "\(describe(slot)) defined on line \(slot.line)", line: line)
      }
    }
    let name = path[path.count - 1]
    if let existing = target[name] {
      throw error("duplicate key \(displayKey(path)) (first defined on line \(existing.line))", line: line)
    }
    target[name] = .value(value)
  }

  private mutating func parseKey() throws(TOMLError) -> [String] {
    var segments: [String] = []
    while true {
      skipWhitespace()
      segments.append(try parseSimpleKey())
      guard segments.count <= Self.maximumNestingDepth else { throw error("key has too many parts") }
      skipWhitespace()
      guard peek() == ASCII.dot else { return segments }
      position += 1
    }
  }

  private mutating func parseSimpleKey() throws(TOMLError) -> String {
    switch peek() {
    case ASCII.doubleQuote:
      return try parseBasicString()
    case ASCII.singleQuote:
      return try parseLiteralString()
    case let byte? where isBareKeyByte(byte):
      let start = position
      while let byte = peek(), isBareKeyByte(byte) { position += 1 }
      return String(decoding: bytes[start..<position], as: UTF8.self)
    default:
      throw error("expected a key, found \(describeCharacter(at: position))")
    }
  }

  // MARK: - Values

  private mutating func parseValue(depth: Int) throws(TOMLError) -> TOMLValue {
    guard depth <= Self.maximumNestingDepth else { throw error("values are nested too deeply") }
    let valueLine = line
    switch peek() {
    case nil, ASCII.lineFeed, ASCII.carriageReturn, ASCII.hash:
      throw error("missing value")
    case ASCII.doubleQuote:
      guard !(peek(1) == ASCII.doubleQuote && peek(2) == ASCII.doubleQuote) else {
        throw error("multi-line strings (\"\"\") are not supported")
      }
      return TOMLValue(.string(try parseBasicString()), line: valueLine)
    case ASCII.singleQuote:
      guard !(peek(1) == ASCII.singleQuote && peek(2) == ASCII.singleQuote) else {
        throw error("multi-line strings (''') are not supported")
      }
      return TOMLValue(.string(try parseLiteralString()), line: valueLine)
    case ASCII.openBracket:
      return try parseArray(depth: depth)
    case ASCII.openBrace:
      return try parseInlineTable(depth: depth)
    default:
      return try parseBareValue()
    }
  }

  /// Integers and booleans: a run of bare characters, classified once read whole so that `12ab`
  /// is one bad value rather than a number followed by garbage.
  private mutating func parseBareValue() throws(TOMLError) -> TOMLValue {
    let start = position
    while let byte = peek(), isBareValueByte(byte) { position += 1 }
    guard position > start else {
      throw error("expected a value, found \(describeCharacter(at: position))")
    }
    let token = String(decoding: bytes[start..<position], as: UTF8.self)
    switch token {
    case "true": return TOMLValue(.boolean(true), line: line)
    case "false": return TOMLValue(.boolean(false), line: line)
    default: break
    }
    switch TOMLIntegerSyntax.parse(token) {
    case .value(let integer):
      return TOMLValue(.integer(integer), line: line)
    case .outOfRange:
      throw error("integer \(token) does not fit in 64 bits")
    case .invalid:
      throw error(TOMLIntegerSyntax.explainInvalid(token))
    }
  }

  private mutating func parseArray(depth: Int) throws(TOMLError) -> TOMLValue {
    let openLine = line
    position += 1
    var elements: [TOMLValue] = []
    elements: while true {
      try skipBlankSpace()
      guard let byte = peek() else { throw error("array is never closed with ']'", line: openLine) }
      if byte == ASCII.closeBracket { break }
      elements.append(try parseValue(depth: depth + 1))
      try skipBlankSpace()
      switch peek() {
      case ASCII.comma: position += 1
      case ASCII.closeBracket: break elements
      case nil: throw error("array is never closed with ']'", line: openLine)
      default: throw error("expected ',' or ']' in array, found \(describeCharacter(at: position))")
      }
    }
    position += 1
    return TOMLValue(.array(elements), line: openLine)
  }

  private mutating func parseInlineTable(depth: Int) throws(TOMLError) -> TOMLValue {
    let openLine = line
    position += 1
    let table = TOMLTableBuilder(origin: .inline, line: openLine)
    skipWhitespace()
    if peek() == ASCII.closeBrace {
      position += 1
      return TOMLValue(.table(table.build()), line: openLine)
    }
    while true {
      skipWhitespace()
      try parseKeyValue(into: table, depth: depth + 1)
      skipWhitespace()
      switch peek() {
      case ASCII.comma:
        position += 1
        skipWhitespace()
        if peek() == ASCII.closeBrace { throw error("trailing comma is not allowed in an inline table") }
      case ASCII.closeBrace:
        position += 1
        return TOMLValue(.table(table.build()), line: openLine)
      case nil, ASCII.lineFeed, ASCII.carriageReturn, ASCII.hash:
        throw error("inline table is not closed with '}' on the line it starts (inline tables are one line)")
      default:
        throw error("expected ',' or '}' in inline table, found \(describeCharacter(at: position))")
      }
    }
  }

  // MARK: - Strings

  private mutating func parseBasicString() throws(TOMLError) -> String {
    position += 1
    var utf8: [UInt8] = []
    while true {
      guard let byte = peek() else { throw error("unterminated string") }
      switch byte {
      case ASCII.doubleQuote:
        position += 1
        return String(decoding: utf8, as: UTF8.self)
      case ASCII.backslash:
        try parseEscape(into: &utf8)
      case ASCII.lineFeed, ASCII.carriageReturn:
        throw error("unterminated string (a string must end on the line it starts)")
      case _ where isForbiddenControl(byte):
        throw error("\(describeCharacter(at: position)) is not allowed in a string; write it as an escape")
      default:
        utf8.append(byte)
        position += 1
      }
    }
  }

  private mutating func parseEscape(into utf8: inout [UInt8]) throws(TOMLError) {
    position += 1
    guard let byte = peek(), !atLineBreak else { throw error("unterminated string") }
    position += 1
    switch byte {
    case UInt8(ascii: "b"): utf8.append(0x08)
    case UInt8(ascii: "t"): utf8.append(0x09)
    case UInt8(ascii: "n"): utf8.append(0x0A)
    case UInt8(ascii: "f"): utf8.append(0x0C)
    case UInt8(ascii: "r"): utf8.append(0x0D)
    case ASCII.doubleQuote, ASCII.backslash: utf8.append(byte)
    case UInt8(ascii: "u"), UInt8(ascii: "U"):
      let digitCount = byte == UInt8(ascii: "u") ? 4 : 8
      let escape = "\\\(Character(Unicode.Scalar(byte)))"
      var code: UInt32 = 0
      for _ in 0..<digitCount {
        guard let digit = peek().flatMap(hexDigitValue) else {
          throw error("escape \(escape) needs exactly \(digitCount) hexadecimal digits")
        }
        code = code << 4 | UInt32(digit)
        position += 1
      }
      guard let scalar = Unicode.Scalar(code) else {
        throw error("escape \(escape)\(hex(code, digits: digitCount)) is not a Unicode scalar value")
      }
      utf8.append(contentsOf: String(Character(scalar)).utf8)
    case 0x21...0x7E:
      throw error("invalid escape \\\(Character(Unicode.Scalar(byte))) in string")
    default:
      throw error("invalid escape: '\\' followed by \(describeCharacter(at: position - 1))")
    }
  }

  private mutating func parseLiteralString() throws(TOMLError) -> String {
    position += 1
    let start = position
    while true {
      guard let byte = peek() else { throw error("unterminated string") }
      switch byte {
      case ASCII.singleQuote:
        position += 1
        return String(decoding: bytes[start..<(position - 1)], as: UTF8.self)
      case ASCII.lineFeed, ASCII.carriageReturn:
        throw error("unterminated string (a string must end on the line it starts)")
      case _ where isForbiddenControl(byte):
        throw error("\(describeCharacter(at: position)) is not allowed in a literal string")
      default:
        position += 1
      }
    }
  }

  // MARK: - Character classes and messages

  private func isBareKeyByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
      UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
      true
    default: false
    }
  }

  /// Characters that can make up an unquoted value; wider than TOML needs for integers so that
  /// floats, dates and unquoted words are read whole and reported as such.
  private func isBareValueByte(_ byte: UInt8) -> Bool {
    isBareKeyByte(byte) || byte == ASCII.dot || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ":")
  }

  /// Control characters TOML forbids in strings and comments (tab is allowed).
  private func isForbiddenControl(_ byte: UInt8) -> Bool {
    (byte < 0x20 && byte != ASCII.tab) || byte == 0x7F
  }

  private func hexDigitValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
  }

  private func hex(_ value: UInt32, digits: Int) -> String {
    let text = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, digits - text.count)) + text
  }

  /// Names the character at `index` for a message: `'x'`, "end of line", "control character U+0001".
  private func describeCharacter(at index: Int) -> String {
    guard index < bytes.count else { return "end of file" }
    let byte = bytes[index]
    switch byte {
    case ASCII.lineFeed: return "end of line"
    case ASCII.carriageReturn:
      return index + 1 < bytes.count && bytes[index + 1] == ASCII.lineFeed
        ? "end of line" : "carriage return (U+000D)"
    case ASCII.tab: return "tab"
    case 0x20...0x7E: return "'\(Character(Unicode.Scalar(byte)))'"
    case ..<0x80: return "control character U+\(hex(UInt32(byte), digits: 4))"
    default:
      var iterator = bytes[index..<min(index + 4, bytes.count)].makeIterator()
      var decoder = UTF8()
      if case .scalarValue(let scalar) = decoder.decode(&iterator) {
        return "'\(Character(scalar))' (U+\(hex(scalar.value, digits: 4)))"
      }
      return "byte 0x\(hex(UInt32(byte), digits: 2))"
    }
  }

  private func describe(_ slot: TOMLTableBuilder.Slot) -> String { slot.summary }

  /// A key as written in a header: bare segments as is, others quoted.
  private func displayKey<Segments: Collection<String>>(_ path: Segments) -> String {
    path.map { segment in
      !segment.isEmpty && segment.utf8.allSatisfy(isBareKeyByte) ? segment : quoted(segment)
    }.joined(separator: ".")
  }

  private func quoted(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": result += "\\\""
      case "\\": result += "\\\\"
      case _ where scalar.value < 0x20 || scalar.value == 0x7F:
        result += "\\u\(hex(scalar.value, digits: 4))"
      default: result.unicodeScalars.append(scalar)
      }
    }
    return result + "\""
  }

  private func error(_ message: String, line: Int? = nil) -> TOMLError {
    TOMLError(line: line ?? self.line, message: message)
  }
}

/// Byte values the parser dispatches on.
private enum ASCII {
  static let tab = UInt8(ascii: "\t")
  static let lineFeed = UInt8(ascii: "\n")
  static let carriageReturn = UInt8(ascii: "\r")
  static let space = UInt8(ascii: " ")
  static let hash = UInt8(ascii: "#")
  static let doubleQuote = UInt8(ascii: "\"")
  static let singleQuote = UInt8(ascii: "'")
  static let backslash = UInt8(ascii: "\\")
  static let openBracket = UInt8(ascii: "[")
  static let closeBracket = UInt8(ascii: "]")
  static let openBrace = UInt8(ascii: "{")
  static let closeBrace = UInt8(ascii: "}")
  static let comma = UInt8(ascii: ",")
  static let dot = UInt8(ascii: ".")
  static let equals = UInt8(ascii: "=")
}
