import API
import Foundation
import XCTest

/// The metric names the exporter writes, the README's list and the Grafana dashboard agree.
final class MetricsDocumentationTests: XCTestCase {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  static func metricNames(in text: String) -> Set<String> {
    let regex = try! NSRegularExpression(pattern: "vxswitch_[a-z_]+")
    let range = NSRange(text.startIndex..., in: text)
    return Set(regex.matches(in: text, range: range).map { String(text[Range($0.range, in: text)!]) })
  }

  func testREADMEListsExactlyTheExportedMetrics() throws {
    let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
    let start = try XCTUnwrap(readme.range(of: "\n## Metrics\n"), "README has no ## Metrics section")
    let rest = readme[start.upperBound...]
    let section = String(rest[..<(rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex)])
    var documented = Set<String>()
    for line in section.split(separator: "\n") where line.hasPrefix("| `vxswitch_") {
      documented.formUnion(Self.metricNames(in: String(line.split(separator: "|")[0])))
    }
    let exported = Set(MetricsExporter.catalogue.map(\.name))
    XCTAssertEqual(documented.subtracting(exported), [], "documented but not exported")
    XCTAssertEqual(exported.subtracting(documented), [], "exported but not documented in README ## Metrics")
  }

  func testGrafanaDashboardUsesOnlyExportedMetricsAndCoversEveryOne() throws {
    let data = try Data(contentsOf: Self.root.appendingPathComponent("docs/grafana-dashboard.json"))
    let dashboard = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    let panels = try XCTUnwrap(dashboard["panels"] as? [[String: Any]])
    var used = Set<String>()
    for panel in panels {
      for target in panel["targets"] as? [[String: Any]] ?? [] {
        used.formUnion(Self.metricNames(in: target["expr"] as? String ?? ""))
      }
    }
    let exported = Set(MetricsExporter.catalogue.map(\.name))
    XCTAssertEqual(used.subtracting(exported), [], "the dashboard queries metrics nobody exports")
    XCTAssertEqual(exported.subtracting(used), [], "exported metrics missing from the dashboard")
  }
}
