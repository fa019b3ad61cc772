import Foundation
import XCTest

@testable import Dataplane

/// README's "Configuration reference" documents exactly the keys the parser accepts.
final class ConfigReferenceTests: XCTestCase {
  /// What the reference documents: per table (`"site"`, `"bgp.peer"`), its heading as written
  /// (`[site]`, `[[bgp.peer]]`) and the keys of its rows.
  struct Reference {
    var headings: [String: String] = [:]
    var keys: [String: Set<String>] = [:]
    /// Headings and rows that do not have the expected shape.
    var problems: [String] = []
  }

  static let sectionTitle = "## Configuration reference"

  private var readmePath: String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("README.md").path
  }

  /// Reads the section titled `sectionTitle`: headings ``### `[table]` `` or
  /// ``### `[[table]]` ``, each followed by a markdown table whose rows start with the key in
  /// backticks (``| `udp_port` | ... |``).
  static func reference(inMarkdown text: String) -> Reference {
    var reference = Reference()
    var inSection = false
    var table: String?
    for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = rawLine.trimmingCharacters(in: .whitespaces)
      let lineNumber = index + 1
      if line.hasPrefix("## ") || line == "##" {
        inSection = line == sectionTitle
        table = nil
        continue
      }
      guard inSection else { continue }
      if line.hasPrefix("#") {
        table = nil
        // Other subsections (prose about one feature) may follow the tables.
        guard line.hasPrefix("### `[") else { continue }
        let title = line.dropFirst(4).trimmingCharacters(in: .whitespaces)
        guard title.count > 2, title.hasSuffix("`") else {
          reference.problems.append("line \(lineNumber): heading \(title) is not `[table]` or `[[table]]`")
          continue
        }
        let heading = String(title.dropFirst().dropLast())
        var name = heading
        if name.hasPrefix("[["), name.hasSuffix("]]"), name.count > 4 {
          name = String(name.dropFirst(2).dropLast(2))
        } else if name.hasPrefix("["), name.hasSuffix("]"), name.count > 2 {
          name = String(name.dropFirst().dropLast())
        } else {
          reference.problems.append("line \(lineNumber): heading \(title) is not `[table]` or `[[table]]`")
          continue
        }
        if reference.headings[name] != nil {
          reference.problems.append("line \(lineNumber): table \(heading) is documented twice")
        }
        reference.headings[name] = heading
        reference.keys[name, default: []].formUnion([])
        table = name
        continue
      }
      guard line.hasPrefix("|") else { continue }
      let cells = line.dropFirst().split(separator: "|", omittingEmptySubsequences: false)
        .map { $0.trimmingCharacters(in: .whitespaces) }
      guard let first = cells.first, first.hasPrefix("`") else { continue }  // header, separator
      guard let table else {
        reference.problems.append("line \(lineNumber): key row outside a table's heading")
        continue
      }
      // After the leading "|": key, type, default, meaning, and the empty rest after the last "|".
      if cells.count != 5 || !cells[4].isEmpty {
        reference.problems.append(
          "line \(lineNumber): row does not have 4 cells (key | type | default | meaning)")
      }
      guard first.count > 2, first.hasSuffix("`"), !first.dropFirst().dropLast().contains("`") else {
        reference.problems.append("line \(lineNumber): first cell \(first) is not one key in backticks")
        continue
      }
      let key = String(first.dropFirst().dropLast())
      if reference.keys[table, default: []].insert(key).inserted == false {
        reference.problems.append("line \(lineNumber): key \(key) is documented twice in \(table)")
      }
    }
    return reference
  }

  private func readmeReference() throws -> Reference {
    let text = try String(contentsOfFile: readmePath, encoding: .utf8)
    XCTAssertTrue(
      text.split(separator: "\n").contains { $0 == Self.sectionTitle },
      "README.md has no line \(Self.sectionTitle)")
    return Self.reference(inMarkdown: text)
  }

  // MARK: - README against ConfigSchema

  func testReadmeDocumentsEveryTableAndNothingElse() throws {
    let reference = try readmeReference()
    XCTAssertEqual(reference.problems, [])
    let documented = Set(reference.headings.keys)
    let accepted = Set(ConfigSchema.keys.keys)
    XCTAssertTrue(
      accepted.isSubset(of: documented),
      "README's configuration reference has no heading for: "
        + accepted.subtracting(documented).sorted().map(ConfigSchema.displayName(of:)).joined(separator: ", ")
    )
    XCTAssertTrue(
      documented.isSubset(of: accepted),
      "README's configuration reference documents tables the parser does not accept: "
        + documented.subtracting(accepted).sorted().joined(separator: ", "))
    for (table, heading) in reference.headings where accepted.contains(table) {
      XCTAssertEqual(
        heading, ConfigSchema.displayName(of: table), "README's heading for \(table) has the wrong brackets")
    }
  }

  func testReadmeDocumentsEveryKeyAndNothingElse() throws {
    let reference = try readmeReference()
    for (table, accepted) in ConfigSchema.keys.sorted(by: { $0.key < $1.key }) {
      guard let documented = reference.keys[table] else { continue }  // reported by the test above
      let name = ConfigSchema.displayName(of: table)
      let missing = accepted.subtracting(documented).sorted()
      let extra = documented.subtracting(accepted).sorted()
      XCTAssertTrue(
        missing.isEmpty,
        "README's \(name) does not document keys the parser accepts: \(missing.joined(separator: ", "))")
      XCTAssertTrue(
        extra.isEmpty,
        "README's \(name) documents keys the parser does not accept: \(extra.joined(separator: ", "))")
    }
  }

  // MARK: - ConfigSchema itself

  func testSchemaTablesAndNesting() {
    XCTAssertEqual(
      ConfigSchema.allowedKeys(in: ""),
      ["site", "api", "neighbor", "interface", "bridge_domain", "static_mac", "bgp", "peering", "site_peer"])
    XCTAssertEqual(ConfigSchema.allowedKeys(in: "bgp"), ConfigSchema.keys["bgp"]!.union(["peer"]))
    XCTAssertEqual(ConfigSchema.allowedKeys(in: "bgp.peer"), ConfigSchema.keys["bgp.peer"])
    XCTAssertTrue(ConfigSchema.arrayTables.isSubset(of: Set(ConfigSchema.keys.keys)))
    XCTAssertEqual(ConfigSchema.displayName(of: "site"), "[site]")
    XCTAssertEqual(ConfigSchema.displayName(of: "bgp.peer"), "[[bgp.peer]]")
  }

  /// Each key the schema lists gets past `rejectUnknownKeys` (it may still be refused for its
  /// value, which is not the point here).
  func testDecoderAcceptsEverySchemaKey() {
    let site = "[site]\nname = \"a\"\nvtep = \"10.0.0.1\"\nunderlay = \"eth1\"\n"
    let tables: [String: String] = [
      "site": "", "api": "[api]\n", "neighbor": "[[neighbor]]\n", "interface": "[[interface]]\n",
      "bridge_domain": "[[bridge_domain]]\n",
      "static_mac": "[[static_mac]]\n", "bgp": "[bgp]\n", "bgp.peer": "[bgp]\n[[bgp.peer]]\n",
      "peering": "[peering]\n", "site_peer": "[[site_peer]]\n",
    ]
    XCTAssertEqual(Set(tables.keys), Set(ConfigSchema.keys.keys))
    for (table, header) in tables {
      for key in ConfigSchema.keys[table] ?? [] where !(table == "site" && site.contains("\n\(key) =")) {
        let text = site + header + "\(key) = true\n"
        var messages: [String] = []
        do {
          _ = try SiteConfig.parse(text: text, file: "test.toml")
        } catch let thrown as ConfigErrors {
          messages = thrown.errors.map(\.message)
        } catch {
          XCTFail("unexpected error \(error)")
        }
        XCTAssertFalse(
          messages.contains { $0.hasPrefix("unknown key") || $0.hasPrefix("unknown table") },
          "\(key) in \(ConfigSchema.displayName(of: table)): \(messages)")
      }
    }
  }

  // MARK: - The README reader

  func testReaderFindsHeadingsRowsAndMistakes() {
    let markdown = """
      ## Other
      ### `[site]`
      | `ignored` | x | y | z |
      ## Configuration reference
      ### `[site]`
      | key | type | default | meaning |
      |---|---|---|---|
      | `udp_port` | integer 1-65535 | 4789 | VXLAN port |
      | `ttl` | integer | 64 |
      ### `[[bgp.peer]]`
      | `port` | integer | 179 | peer's port |
      | `port` | integer | 179 | again |
      | `a` `b` | x | y | z |
      ### `[broken
      | `stray` | x | y | z |
      ### Prose
      | `stray` | x | y | z |
      ## Next
      ### `[api]`
      """
    let reference = ConfigReferenceTests.reference(inMarkdown: markdown)
    XCTAssertEqual(reference.headings, ["site": "[site]", "bgp.peer": "[[bgp.peer]]"])
    XCTAssertEqual(reference.keys, ["site": ["udp_port", "ttl"], "bgp.peer": ["port"]])
    XCTAssertEqual(
      reference.problems,
      [
        "line 9: row does not have 4 cells (key | type | default | meaning)",
        "line 12: key port is documented twice in bgp.peer",
        "line 13: first cell `a` `b` is not one key in backticks",
        "line 14: heading `[broken is not `[table]` or `[[table]]`",
        "line 15: key row outside a table's heading",
        "line 17: key row outside a table's heading",
      ])
  }
}
