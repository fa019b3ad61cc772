/// A table under construction while the parser walks the document.
///
/// TOML decides whether a table may be reopened by how it came to exist (a header, a dotted
/// key, or only implied as the parent of another header), which the finished `TOMLTable` has
/// no use for; this mutable tree keeps that history until `build()` freezes it.
final class TOMLTableBuilder {
  enum Origin {
    /// The document itself.
    case root
    /// Implied as the parent of a header, e.g. `a` in `[a.b]`; a later `[a]` may still define it.
    case implicit
    /// Defined by its own `[name]` header or as one element of `[[name]]`.
    case header
    /// Created by a dotted key such as `a.b = 1`; only further dotted keys may add to it.
    case dottedKey
    /// `{ ... }`; sealed once its closing brace is read.
    case inline
  }

  enum Slot {
    case value(TOMLValue)
    case table(TOMLTableBuilder)
    /// `[[name]]` elements; a reference so that each header appends in place.
    case arrayOfTables(TableArray)

    var line: Int {
      switch self {
      case .value(let value): value.line
      case .table(let table): table.line
      case .arrayOfTables(let array): array.line
      }
    }

    /// How the slot reads in a message: "a string", "a table", "an array of tables".
    var summary: String {
      switch self {
      case .value(let value):
        value.typeName == "integer" || value.typeName == "array"
          ? "an \(value.typeName)" : "a \(value.typeName)"
      case .table: "a table"
      case .arrayOfTables: "an array of tables"
      }
    }
  }

  /// The tables of one `[[name]]`, never empty, and the line of its first header.
  final class TableArray {
    private(set) var elements: [TOMLTableBuilder]
    let line: Int
    var last: TOMLTableBuilder { elements[elements.count - 1] }

    init(first: TOMLTableBuilder) {
      elements = [first]
      line = first.line
    }

    func append(_ element: TOMLTableBuilder) { elements.append(element) }
  }

  var origin: Origin
  var line: Int
  private var keysInOrder: [String] = []
  private var slots: [String: Slot] = [:]

  init(origin: Origin, line: Int) {
    self.origin = origin
    self.line = line
  }

  subscript(key: String) -> Slot? {
    get { slots[key] }
    set {
      if slots[key] == nil, newValue != nil { keysInOrder.append(key) }
      slots[key] = newValue
    }
  }

  /// Freezes the tree: arrays of tables become arrays of table values.
  func build() -> TOMLTable {
    var table = TOMLTable(line: line)
    for key in keysInOrder {
      switch slots[key] {
      case .value(let value): table.set(key, value)
      case .table(let child): table.set(key, TOMLValue(.table(child.build()), line: child.line))
      case .arrayOfTables(let array):
        let values = array.elements.map { TOMLValue(.table($0.build()), line: $0.line) }
        table.set(key, TOMLValue(.array(values), line: array.line))
      case nil: break
      }
    }
    return table
  }
}
