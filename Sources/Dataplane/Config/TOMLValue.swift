/// A value read from a TOML document.
///
/// Every value keeps the 1-based line it starts on, so that whoever interprets the document
/// (the configuration decoder) can point at the offending text instead of just naming a key.
public struct TOMLValue: Sendable, Equatable {
  /// The TOML types a configuration needs; floats and dates are rejected by the parser.
  public enum Kind: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case boolean(Bool)
    /// A static array `[...]`, or an array of tables built from `[[name]]` headers.
    case array([TOMLValue])
    /// A `[table]`, an inline table `{ ... }`, or a table implied by a dotted key or header.
    case table(TOMLTable)
  }

  public var kind: Kind
  /// 1-based line where the value (or the header that defined the table) starts.
  public var line: Int

  public init(_ kind: Kind, line: Int) {
    self.kind = kind
    self.line = line
  }

  public var string: String? { if case .string(let value) = kind { value } else { nil } }
  public var integer: Int64? { if case .integer(let value) = kind { value } else { nil } }
  public var boolean: Bool? { if case .boolean(let value) = kind { value } else { nil } }
  public var array: [TOMLValue]? { if case .array(let value) = kind { value } else { nil } }
  public var table: TOMLTable? { if case .table(let value) = kind { value } else { nil } }

  /// The TOML name of the value's type, for messages such as "expected a string, found an array".
  public var typeName: String {
    switch kind {
    case .string: "string"
    case .integer: "integer"
    case .boolean: "boolean"
    case .array: "array"
    case .table: "table"
    }
  }
}

/// A TOML table: keys in the order they were written, each with its value.
///
/// Order is kept so that messages about several keys come out in file order.
public struct TOMLTable: Sendable, Equatable {
  public struct Entry: Sendable, Equatable {
    public var key: String
    public var value: TOMLValue
  }

  /// 1-based line of the header (or inline table, or first dotted key) that created the table;
  /// 0 for the document root.
  public var line: Int
  public private(set) var entries: [Entry] = []
  private var indexByKey: [String: Int] = [:]

  public init(line: Int) { self.line = line }

  public var keys: [String] { entries.map(\.key) }
  public var isEmpty: Bool { entries.isEmpty }

  public subscript(key: String) -> TOMLValue? {
    indexByKey[key].map { entries[$0].value }
  }

  /// Adds or replaces `key`; uniqueness rules are the parser's business, not the table's.
  public mutating func set(_ key: String, _ value: TOMLValue) {
    if let index = indexByKey[key] {
      entries[index].value = value
    } else {
      indexByKey[key] = entries.count
      entries.append(Entry(key: key, value: value))
    }
  }
}
