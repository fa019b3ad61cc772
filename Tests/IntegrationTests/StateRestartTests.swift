import Foundation
import XCTest

/// `vxswitch run` keeps its runtime state across a restart: a network and a static MAC
/// added through the API are back after SIGTERM and a new start; a state file that cannot
/// be used stops start-up with a message naming it, and is left as it is.
final class StateRestartTests: XCTestCase {
  var fixture: DaemonFixture?

  override func setUpWithError() throws { try DaemonFixture.skipUnlessCapable() }
  override func tearDown() { fixture?.stop() }

  private func api(_ fixture: DaemonFixture, _ method: String, _ path: String, body: String? = nil) throws
    -> String
  {
    var command = ["curl", "-sS", "--fail-with-body", "--unix-socket", fixture.socket, "-X", method]
    if let body { command += ["-d", body] }
    return try DaemonFixture.run(command + ["http://localhost\(path)"])
  }

  func testRuntimeStateSurvivesARestartAndABadStateFileStopsStartUp() throws {
    let fixture = try DaemonFixture(tag: "sr")
    self.fixture = fixture
    _ = try api(fixture, "POST", "/v1/networks", body: #"{"name":"web","vni":300}"#)
    _ = try api(
      fixture, "POST", "/v1/static-macs", body: #"{"vni":100,"mac":"02:00:00:00:bb:01","port":"vm1"}"#)
    let attributes = try FileManager.default.attributesOfItem(atPath: fixture.stateFile)
    XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)

    fixture.stopDaemon()
    XCTAssertFalse(FileManager.default.fileExists(atPath: fixture.socket), "not a graceful stop")
    try fixture.startDaemon()
    let networks = try api(fixture, "GET", "/v1/networks")
    XCTAssertTrue(networks.contains(#""name":"web""#) && networks.contains(#""vni":300"#), networks)
    let macs = try api(fixture, "GET", "/v1/static-macs?vni=100")
    XCTAssertTrue(macs.contains("02:00:00:00:bb:01") && macs.contains(#""origin":"api""#), macs)
    XCTAssertTrue(fixture.log("daemon.log").contains("runtime state restored"), fixture.log("daemon.log"))

    // A damaged file: start-up stops, naming the file, and the file stays as it was.
    fixture.stopDaemon()
    let damaged = "{\"version\": 1, \"site\": \"\(fixture.prefix)\", \"networks\": [{\"name\": "
    try damaged.write(toFile: fixture.stateFile, atomically: true, encoding: .utf8)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
      "ip", "netns", "exec", fixture.site, LabTests.binary.path, "run", "--config", fixture.config,
    ]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 1, output)
    XCTAssertTrue(output.contains("state file \(fixture.stateFile): not a vxswitch state file"), output)
    XCTAssertEqual(try String(contentsOfFile: fixture.stateFile, encoding: .utf8), damaged)
    XCTAssertFalse(FileManager.default.fileExists(atPath: fixture.socket), "it served before refusing")
  }
}
