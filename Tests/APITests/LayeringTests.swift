import Foundation
import XCTest

/// Targets import only targets below them: vxswitch -> Peering -> API -> Management -> ControlShim ->
/// Dataplane -> CPacket (README "Design").
final class LayeringTests: XCTestCase {
  static let order = ["CPacket", "Dataplane", "ControlShim", "Management", "API", "Peering", "vxswitch"]

  func testNoTargetImportsAHigherOne() throws {
    let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Sources")
    var violations: [String] = []
    for (level, target) in Self.order.enumerated() {
      let directory = sources.appendingPathComponent(target)
      guard let files = FileManager.default.enumerator(atPath: directory.path) else { continue }
      for case let file as String in files where file.hasSuffix(".swift") {
        let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix("import ") {
          let module = line.dropFirst("import ".count).trimmingCharacters(in: .whitespaces)
          if let imported = Self.order.firstIndex(of: module), imported > level {
            violations.append("\(target)/\(file) imports \(module)")
          }
        }
      }
    }
    XCTAssertEqual(violations, [])
  }
}
