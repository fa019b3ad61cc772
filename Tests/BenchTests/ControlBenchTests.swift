import Dataplane
import Foundation
import XCTest

@testable import Bench

/// `Bench control`: both modes run end to end on loopback (no timing assertions).
final class ControlBenchTests: XCTestCase {
  func testImportInstallsEveryRoute() throws {
    let report = try ControlBench(routes: 2000, whileForwarding: false).run()
    XCTAssertEqual(report.routes, 2000)
    XCTAssertGreaterThanOrEqual(report.fdbEntries, 2000)
    XCTAssertGreaterThan(report.sinkBytesPerRoute, 0)
    XCTAssertGreaterThan(report.ribBytesPerRoute, 0)
  }

  func testImportWithAPrefilledFDBAndAPagingReader() throws {
    for mode in [FDBReaderMode.paged, .locked] {
      var bench = ControlBench(routes: 2000, whileForwarding: false)
      bench.prefill = 20_000
      bench.reader = mode
      let report = try bench.run()
      XCTAssertEqual(report.prefilled, 20_000)
      XCTAssertGreaterThanOrEqual(report.fdbEntries, 22_000)
      XCTAssertEqual(report.reader, mode.rawValue)
      XCTAssertGreaterThan(report.readerPages ?? 0, 0, "\(mode)")
      XCTAssertTrue(report.text.contains("FDB reader (\(mode.rawValue))"))
    }
  }

  func testMACMovesConvergeAtTheOtherSite() throws {
    // Every move is waited for (the run throws if one does not converge).
    let report = try MoveBench(moves: 3).run()
    XCTAssertEqual(report.moves, 3)
    XCTAssertGreaterThan(report.moveMedianMs, 0)
    XCTAssertLessThanOrEqual(report.moveMedianMs, report.moveMaxMs)
    XCTAssertGreaterThan(report.newMacMedianMs, 0)
    XCTAssertTrue(report.text.contains("move A -> B"))
  }

  func testSummaryIsMedianNearestRankP99AndMax() {
    let summary = MoveBench.summary((1...100).map(Double.init).reversed())
    XCTAssertEqual(summary.median, 50.5)
    XCTAssertEqual(summary.p99, 99)
    XCTAssertEqual(summary.max, 100)
    XCTAssertEqual(MoveBench.summary([3]).median, 3)
  }
}
