import Foundation
import SystemCommand
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// The bounded soak: `Bench soak` for 60 s (two lab sites, 10000 frames/s with 100 new
/// source MACs a second and 10 s aging: MAC churn at site 2, BGP route churn at site 1).
/// The daemons' file descriptors, threads and RSS stay flat after the warm-up, and the
/// churn really happened. The 10-minute run is in README ("Soak").
final class SoakTests: XCTestCase {
  struct Report: Decodable {
    struct Sample: Decodable {
      var seconds: Double
      var site: Int
      var rssKibibytes: Int
      var fds: Int
      var threads: Int
      var learned: Int
      var aged: Int
      var routesReceived: Int
    }
    var warmUpSeconds: Double
    var pingsSent: Int
    var pingsReceived: Int
    var samples: [Sample]
    var warnings: [String]
    var flagged: Bool
  }

  func testSixtySecondsOfMACAndRouteChurnLeaveTheDaemonsFlat() throws {
    guard getuid() == 0 else { throw XCTSkip("needs root: network namespaces and AF_PACKET") }
    let directory = LabTests.binary.deletingLastPathComponent()
    let bench = directory.appendingPathComponent("Bench").path
    guard FileManager.default.isExecutableFile(atPath: bench),
      FileManager.default.isExecutableFile(atPath: LabTests.binary.path)
    else { throw XCTSkip("Bench and vxswitch are not built next to the tests (\(directory.path))") }
    let prefix = "sk\(getpid() % 10000)"
    // Under AddressSanitizer (scripts/test.sh), freed memory waits in the sanitizer's
    // quarantine (256 MiB by default) instead of being reused, so RSS climbs with any
    // churn until it is full: the daemons run with the quarantine off to measure growth.
    var environment: [String: String] = [:]
    if AddressSanitizer.isActive {
      let inherited = ProcessInfo.processInfo.environment["ASAN_OPTIONS"].map { $0 + ":" } ?? ""
      environment["ASAN_OPTIONS"] = inherited + "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    }
    let outcome = try SystemCommand.run(
      [
        bench, "soak", "--duration", "60", "--interval", "5", "--json", "--prefix", prefix, "--vxswitch",
        LabTests.binary.path,
      ], environment: environment)
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    let report = try decoder.decode(Report.self, from: outcome.output)
    XCTAssertEqual(
      outcome.status, 0, "Bench soak flagged the run: \(report.warnings)\n\(outcome.errorText.suffix(3000))")
    XCTAssertFalse(report.flagged)

    let measured = report.samples.filter { $0.seconds >= report.warmUpSeconds }
    for site in [1, 2] {
      let series = measured.filter { $0.site == site }
      XCTAssertGreaterThanOrEqual(series.count, 5, "site \(site): samples after the warm-up")
      guard let first = series.first, let last = series.last else { continue }
      XCTAssertLessThanOrEqual(last.fds, first.fds, "site \(site): no file descriptor growth")
      XCTAssertLessThanOrEqual(last.threads, first.threads + 1, "site \(site): no thread growth")
      XCTAssertLessThanOrEqual(
        last.rssKibibytes - first.rssKibibytes, 8 * 1024, "site \(site): RSS growth (KiB)")
    }
    // The churn the run was about, during the measured part: at 100 new MACs a second,
    // site 2 learns and ages thousands, and site 1 receives their routes.
    let site2 = measured.filter { $0.site == 2 }
    let site1 = measured.filter { $0.site == 1 }
    if let first = site2.first, let last = site2.last {
      XCTAssertGreaterThan(last.learned - first.learned, 1000, "MACs learnt at site 2")
      XCTAssertGreaterThan(last.aged - first.aged, 1000, "MACs aged out at site 2")
    }
    if let first = site1.first, let last = site1.last {
      XCTAssertGreaterThan(last.routesReceived - first.routesReceived, 1000, "routes received at site 1")
    }
    XCTAssertGreaterThan(report.pingsSent, 250)
    XCTAssertGreaterThanOrEqual(report.pingsReceived * 100, report.pingsSent * 99, "pings across the sites")
    XCTAssertFalse(
      try SystemCommand.run(["ip", "netns", "list"]).outputText.contains("\(prefix)-"), "the lab was removed")
  }
}

/// Whether this test binary runs under AddressSanitizer (`VXSWITCH_ASAN=1`): the binaries
/// built next to it then are instrumented too.
enum AddressSanitizer {
  static let isActive: Bool = dlsym(dlopen(nil, RTLD_LAZY), "__asan_init") != nil
}
