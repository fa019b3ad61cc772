import XCTest

@testable import Dataplane

final class TOMLTests: XCTestCase {
  // MARK: - Helpers

  private func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> TOMLDocument? {
    do {
      return try TOMLDocument(parsing: text)
    } catch {
      XCTFail("unexpected error: \(error)", file: file, line: line)
      return nil
    }
  }

  /// The error for `text` as "LINE: message", or a failure when it parses.
  private func parseError(_ text: String) -> String? {
    do {
      _ = try TOMLDocument(parsing: text)
      return nil
    } catch {
      return "\(error.line): \(error.message)"
    }
  }

  // MARK: - Structure

  func testTablesKeysAndLines() throws {
    let document = try XCTUnwrap(
      parse(
        """
        # leading comment

        title = "top"   # trailing comment
        [server]
        host = "a"
        "quoted key" = 1
        'literal key' = 2
        site."dotted.part".leaf = true

        [server.sub]
        x = 3
        """))
    XCTAssertEqual(document["title"], TOMLValue(.string("top"), line: 3))
    let server = try XCTUnwrap(document["server"]?.table)
    XCTAssertEqual(server.line, 4)
    XCTAssertEqual(server.keys, ["host", "quoted key", "literal key", "site", "sub"])
    XCTAssertEqual(server["host"], TOMLValue(.string("a"), line: 5))
    XCTAssertEqual(server["quoted key"]?.integer, 1)
    XCTAssertEqual(server["literal key"]?.integer, 2)
    let leaf = server["site"]?.table?["dotted.part"]?.table?["leaf"]
    XCTAssertEqual(leaf, TOMLValue(.boolean(true), line: 8))
    XCTAssertEqual(server["sub"]?.table?.line, 10)
    XCTAssertEqual(server["sub"]?.table?["x"], TOMLValue(.integer(3), line: 11))
  }

  func testArrayOfTablesKeepsEachHeaderLine() throws {
    let document = try XCTUnwrap(
      parse(
        """
        [[bgp.peer]]
        address = "a"

        [[bgp.peer]]
        address = "b"
        [bgp]
        asn = 1
        """))
    let bgp = try XCTUnwrap(document["bgp"]?.table)
    XCTAssertEqual(bgp.line, 6, "an implicitly created table takes the line of its own header")
    let peers = try XCTUnwrap(bgp["peer"]?.array)
    XCTAssertEqual(peers.map(\.line), [1, 4])
    XCTAssertEqual(peers.compactMap { $0.table?["address"]?.string }, ["a", "b"])
    XCTAssertEqual(peers.map { $0.table?.line }, [1, 4])
    XCTAssertEqual(bgp["asn"]?.integer, 1)
  }

  func testManyArrayTablesKeepOrderAndLines() throws {
    let text = (0..<2_000).map { "[[entry]]\nn = \($0)\n" }.joined()
    let document = try XCTUnwrap(parse(text))
    let entries = try XCTUnwrap(document["entry"]?.array)
    XCTAssertEqual(entries.count, 2_000)
    XCTAssertEqual(entries.last?.line, 3_999)
    XCTAssertEqual(entries.compactMap { $0.table?["n"]?.integer }, (0..<2_000).map(Int64.init))
  }

  func testSubTableOfArrayElementGoesIntoLastElement() throws {
    let document = try XCTUnwrap(
      parse(
        """
        [[a]]
        n = 1
        [[a]]
        n = 2
        [a.detail]
        d = 3
        """))
    let elements = try XCTUnwrap(document["a"]?.array)
    XCTAssertNil(elements[0].table?["detail"])
    XCTAssertEqual(elements[1].table?["detail"]?.table?["d"]?.integer, 3)
  }

  func testDottedKeysMayBeExtendedByDeeperHeaders() throws {
    let document = try XCTUnwrap(
      parse(
        """
        [fruit]
        apple.color = "red"
        apple.taste.sweet = true
        [fruit.apple.texture]
        smooth = true
        """))
    let apple = try XCTUnwrap(document["fruit"]?.table?["apple"]?.table)
    XCTAssertEqual(apple["color"]?.string, "red")
    XCTAssertEqual(apple["taste"]?.table?["sweet"]?.boolean, true)
    XCTAssertEqual(apple["texture"]?.table?["smooth"]?.boolean, true)
  }

  func testImplicitTableMayBeDefinedOnceLater() throws {
    let document = try XCTUnwrap(parse("[a.b]\nx = 1\n[a]\ny = 2\n"))
    XCTAssertEqual(document["a"]?.table?["y"]?.integer, 2)
    XCTAssertEqual(document["a"]?.table?["b"]?.table?["x"]?.integer, 1)
  }

  func testCRLFLineEndingsAndByteOrderMark() throws {
    let document = try XCTUnwrap(parse("\u{FEFF}a = 1\r\n\r\nb = 'x'\r\n"))
    XCTAssertEqual(document["b"], TOMLValue(.string("x"), line: 3))
    XCTAssertEqual(
      parseError("a = 1\r\nb = \"x\ny\"\r\n"),
      "2: unterminated string (a string must end on the line it starts)")
  }

  // MARK: - Values

  func testStringsAndEscapes() throws {
    let document = try XCTUnwrap(
      parse(
        #"""
        basic = "tab\there \"quoted\" back\\slash\nnew \u00E9 \U0001F600 \b\f\r"
        literal = 'C:\path\no "escapes"'
        empty = ""
        unicode = "ünïcödé ☃"
        tab = "a	b"
        """#))
    XCTAssertEqual(
      document["basic"]?.string, "tab\there \"quoted\" back\\slash\nnew é 😀 \u{8}\u{C}\r")
    XCTAssertEqual(document["literal"]?.string, #"C:\path\no "escapes""#)
    XCTAssertEqual(document["empty"]?.string, "")
    XCTAssertEqual(document["unicode"]?.string, "ünïcödé ☃")
    XCTAssertEqual(document["tab"]?.string, "a\tb")
  }

  func testIntegers() throws {
    let document = try XCTUnwrap(
      parse(
        """
        a = 42
        b = -17
        c = +5
        d = 1_000_000
        e = 0xDEAD_beef
        f = 0o755
        g = 0b1010
        h = 0
        i = 9223372036854775807
        j = -9223372036854775808
        k = -0
        """))
    let values = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"].map { document[$0]?.integer }
    XCTAssertEqual(
      values, [42, -17, 5, 1_000_000, 0xDEAD_BEEF, 0o755, 0b1010, 0, Int64.max, Int64.min, 0])
  }

  func testBooleans() throws {
    let document = try XCTUnwrap(parse("yes = true\nno = false\n"))
    XCTAssertEqual(document["yes"]?.boolean, true)
    XCTAssertEqual(document["no"]?.boolean, false)
    XCTAssertEqual(parseError("x = True"), "1: invalid value True (strings must be quoted)")
  }

  func testMultiLineArraysWithCommentsAndTrailingComma() throws {
    let document = try XCTUnwrap(
      parse(
        """
        ports = [
          "vm1",   # first
          # a comment line
          "vm2",
        ]
        nested = [[1, 2], [], ["x"]]
        empty = [ ]
        after = 1
        """))
    let ports = try XCTUnwrap(document["ports"]?.array)
    XCTAssertEqual(document["ports"]?.line, 1)
    XCTAssertEqual(ports, [TOMLValue(.string("vm1"), line: 2), TOMLValue(.string("vm2"), line: 4)])
    let nested = try XCTUnwrap(document["nested"]?.array)
    XCTAssertEqual(nested.map { $0.array?.count }, [2, 0, 1])
    XCTAssertEqual(document["empty"]?.array, [])
    XCTAssertEqual(document["after"]?.line, 8)
  }

  func testInlineTables() throws {
    let document = try XCTUnwrap(
      parse(
        """
        point = { x = 1, y.z = "deep", inner = { ok = true } }
        empty = {}
        list = [{ a = 1 }, { a = 2 }]
        """))
    let point = try XCTUnwrap(document["point"]?.table)
    XCTAssertEqual(point.line, 1)
    XCTAssertEqual(point["x"]?.integer, 1)
    XCTAssertEqual(point["y"]?.table?["z"]?.string, "deep")
    XCTAssertEqual(point["inner"]?.table?["ok"]?.boolean, true)
    XCTAssertEqual(document["empty"]?.table?.isEmpty, true)
    XCTAssertEqual(document["list"]?.array?.compactMap { $0.table?["a"]?.integer }, [1, 2])
  }

  // MARK: - Errors

  func testSyntaxErrorsReportTheirLine() {
    let cases: [(text: String, error: String)] = [
      ("a = 1\na = 2", "2: duplicate key a (first defined on line 1)"),
      ("a.b = 1\na.b = 2", "2: duplicate key a.b (first defined on line 1)"),
      ("[t]\nx = 1\n\n[t]", "4: table [t] is already defined on line 1"),
      ("[t]\nx.y = 1\n[t.x]", "3: table [t.x] is already defined by dotted keys on line 2"),
      ("[[t]]\n[t]", "2: cannot define [t]: t is already an array of tables (line 1)"),
      ("[t]\n[[t]]", "2: cannot define [[t]]: t is already a table (line 1)"),
      ("t = [1]\n[[t]]", "2: cannot define [[t]]: t is already an array (line 1)"),
      ("t = 1\n[t.u]", "2: cannot define [t.u]: t is already an integer (line 1)"),
      ("[a.b]\n[a]\nb.c = 1", "3: cannot set key b.c: b is already a table defined on line 1"),
      ("p = { x = 1 }\np.y = 2", "2: cannot set key p.y: p is already a table defined on line 1"),
      ("s = \"abc\n", "1: unterminated string (a string must end on the line it starts)"),
      ("s = 'abc\n", "1: unterminated string (a string must end on the line it starts)"),
      ("\n\ns = \"abc", "3: unterminated string"),
      ("s = \"a\\qb\"", "1: invalid escape \\q in string"),
      ("s = \"\\u12\"", "1: escape \\u needs exactly 4 hexadecimal digits"),
      ("s = \"\\uD800\"", "1: escape \\uD800 is not a Unicode scalar value"),
      ("s = \"a\u{1}b\"", "1: control character U+0001 is not allowed in a string; write it as an escape"),
      ("x = 1\ny = 2 3", "2: unexpected '3' after the value; expected end of line"),
      ("x = \"a\" \"b\"", "1: unexpected '\"' after the value; expected end of line"),
      ("[t] x = 1", "1: unexpected 'x' after the table header; expected end of line"),
      ("x =", "1: missing value"),
      ("x = # nothing", "1: missing value"),
      ("x 1", "1: expected '=' after key x, found '1'"),
      ("= 1", "1: expected a key, found '='"),
      ("[t", "1: expected ']' to close the table header, found end of file"),
      ("[[t]", "1: expected ']]' to close the table header, found end of file"),
      ("[]", "1: expected a key, found ']'"),
      ("a = [\n1,\n2", "1: array is never closed with ']'"),
      ("a = [1 2]", "1: expected ',' or ']' in array, found '2'"),
      ("a = [1,,2]", "1: expected a value, found ','"),
      ("a = { x = 1, }", "1: trailing comma is not allowed in an inline table"),
      (
        "a = { x = 1\n}",
        "1: inline table is not closed with '}' on the line it starts (inline tables are one line)"
      ),
      ("a = { x = 1 y = 2 }", "1: expected ',' or '}' in inline table, found 'y'"),
      ("a = { x = 1, x = 2 }", "1: duplicate key x (first defined on line 1)"),
      ("n = 1.5", "1: floating-point numbers are not supported (found 1.5)"),
      ("n = 1e3", "1: floating-point numbers are not supported (found 1e3)"),
      ("n = inf", "1: floating-point numbers are not supported (found inf)"),
      ("d = 1979-05-27", "1: dates and times are not supported (found 1979-05-27)"),
      ("s = \"\"\"\nmulti\"\"\"", "1: multi-line strings (\"\"\") are not supported"),
      ("s = '''x'''", "1: multi-line strings (''') are not supported"),
      ("name = site-a", "1: invalid value site-a (strings must be quoted)"),
      ("n = 012", "1: invalid value 012"),
      ("n = 1__0", "1: invalid value 1__0"),
      ("n = _1", "1: invalid value _1"),
      ("n = 0xG", "1: invalid value 0xG"),
      ("n = 9223372036854775808", "1: integer 9223372036854775808 does not fit in 64 bits"),
      ("n = 0xFFFFFFFFFFFFFFFFFF", "1: integer 0xFFFFFFFFFFFFFFFFFF does not fit in 64 bits"),
      ("a = 1\rb = 2", "1: unexpected carriage return (U+000D) after the value; expected end of line"),
      ("# bad \u{7F} comment", "1: control character U+007F is not allowed in a comment"),
      ("\u{0}", "1: expected a key, found control character U+0000"),
      ("a = 1\n\rb = 2", "2: unexpected carriage return (U+000D); expected end of line"),
      ("é = 1", "1: expected a key, found 'é' (U+00E9)"),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(parseError(text), expected, "for input \(text.debugDescription)")
    }
  }

  func testInvalidUTF8IsReportedWithItsLine() {
    let bytes = Array("a = 1\nb = \"".utf8) + [0xFF, 0xFE] + Array("\"\n".utf8)
    XCTAssertThrowsError(try TOMLDocument(parsing: bytes)) { error in
      XCTAssertEqual(error as? TOMLError, TOMLError(line: 2, message: "the file is not valid UTF-8"))
    }
  }

  func testDeepNestingFailsCleanly() {
    let deepArray = "a = " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
    XCTAssertEqual(parseError(deepArray), "1: values are nested too deeply")
    let deepInline =
      "a = " + String(repeating: "{ b = ", count: 5_000) + "1" + String(repeating: " }", count: 5_000)
    XCTAssertEqual(parseError(deepInline), "1: values are nested too deeply")
    let longKey = Array(repeating: "k", count: 1_000).joined(separator: ".") + " = 1"
    XCTAssertEqual(parseError(longKey), "1: key has too many parts")
    let longHeader = "[" + Array(repeating: "k", count: 1_000).joined(separator: ".") + "]"
    XCTAssertEqual(parseError(longHeader), "1: key has too many parts")
  }

  func testRandomBytesNeverCrash() {
    var generator = SplitMix64(seed: 0x746F_6D6C)
    for _ in 0..<500 {
      let length = Int(generator.next() % 200)
      let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
      do {
        _ = try TOMLDocument(parsing: bytes)
      } catch {
        XCTAssertGreaterThanOrEqual(error.line, 1)
        XCTAssertLessThanOrEqual(error.line, bytes.filter { $0 == 0x0A }.count + 1)
        XCTAssertFalse(error.message.isEmpty)
      }
    }
  }
}
