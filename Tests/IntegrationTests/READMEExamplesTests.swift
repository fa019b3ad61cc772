import Foundation
import XCTest

/// The README's API and CLI examples (the block after `<!-- ci: api-examples -->`) run
/// line by line against a real daemon, so the README cannot drift from the API.
final class READMEExamplesTests: XCTestCase {
  var fixture: DaemonFixture?

  override func setUpWithError() throws { try DaemonFixture.skipUnlessCapable() }
  override func tearDown() { fixture?.stop() }

  static func examples() throws -> [String] {
    let readme = try String(
      contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
    guard let marker = readme.range(of: "<!-- ci: api-examples -->\n```sh\n") else { return [] }
    let rest = readme[marker.upperBound...]
    let block = rest[..<(rest.range(of: "\n```")?.lowerBound ?? rest.endIndex)]
    return block.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
  }

  func testEveryAPIExampleOfTheREADMERunsAgainstADaemon() throws {
    let lines = try Self.examples()
    XCTAssertGreaterThan(lines.count, 10, "README lost its API examples block")
    let fixture = try DaemonFixture(tag: "rx")
    self.fixture = fixture
    // Traffic first, so that listings have local entries.
    _ = try DaemonFixture.run([
      "ip", "netns", "exec", fixture.vmA, "ping", "-c", "3", "-i", "0.1", "192.168.77.2",
    ])
    let binaries = LabTests.binary.deletingLastPathComponent().path
    var environment = ProcessInfo.processInfo.environment
    environment["PATH"] = binaries + ":" + (environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
    environment["SOCK"] = fixture.socket
    environment["CONFIG"] = fixture.config
    environment["API"] = fixture.apiURL
    environment["TOKEN_FILE"] = fixture.tokenFile
    for line in lines {
      // TCP examples reach the API inside the site's namespace.
      let script = "set -o pipefail; " + line + "\necho \"exit status $?\""
      let command =
        line.contains("$API")
        ? ["ip", "netns", "exec", fixture.site, "bash", "-c", script] : ["bash", "-c", script]
      let output = try DaemonFixture.run(command, environment: environment, check: false)
      XCTAssertTrue(output.hasSuffix("exit status 0"), "README example failed: \(line)\n\(output)")
    }
  }
}
