import Foundation
import XCTest

/// A gobgpd child process for integration tests: its own temp dir and ports, started
/// by PID and stopped by that PID only; readiness is polled through its API.
final class GoBGPDaemon {
  static let daemonPath = ["/usr/bin/gobgpd", "/usr/local/bin/gobgpd"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }
  static let cliPath = ["/usr/bin/gobgp", "/usr/local/bin/gobgp"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }

  let directory: URL
  let apiPort: UInt16
  let bgpPort: UInt16
  private let process = Process()

  /// - Parameter neighbors: TOML for `[[neighbors]]` sections.
  init(asn: UInt32, routerID: String, neighbors: String) throws {
    guard let daemon = Self.daemonPath, Self.cliPath != nil else {
      throw XCTSkip("gobgpd/gobgp not installed (Debian package gobgpd): skipping the GoBGP integration test")
    }
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "vxswitch-gobgp-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    apiPort = freeTCPPort()
    bgpPort = freeTCPPort()
    let configuration = """
      [global.config]
        as = \(asn)
        router-id = "\(routerID)"
        port = \(bgpPort)
        local-address-list = ["127.0.0.1"]
      \(neighbors)
      """
    let configURL = directory.appendingPathComponent("gobgpd.toml")
    try configuration.write(to: configURL, atomically: true, encoding: .utf8)
    process.executableURL = URL(fileURLWithPath: daemon)
    process.arguments = ["-f", configURL.path, "--api-hosts", "127.0.0.1:\(apiPort)", "--log-level", "debug"]
    let log = FileManager.default.createFile(
      atPath: directory.appendingPathComponent("gobgpd.log").path, contents: nil)
    _ = log
    process.standardOutput = try FileHandle(forWritingTo: directory.appendingPathComponent("gobgpd.log"))
    process.standardError = process.standardOutput
    try process.run()
    try waitUntilReady()
  }

  var pid: Int32 { process.processIdentifier }
  var log: String {
    (try? String(contentsOf: directory.appendingPathComponent("gobgpd.log"), encoding: .utf8)) ?? ""
  }

  private func waitUntilReady(timeout: Double = 20) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      guard process.isRunning else { throw Failure.exited(log) }
      if cli(["global"]).status == 0 { return }
      Thread.sleep(forTimeInterval: 0.1)
    }
    stop()
    throw Failure.notReady(log)
  }

  enum Failure: Error { case exited(String), notReady(String) }

  /// Stops exactly our child: SIGTERM, then SIGKILL if it lingers.
  func stop() {
    guard process.isRunning else { return }
    kill(pid, SIGTERM)
    let deadline = Date().addingTimeInterval(5)
    while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
    if process.isRunning { kill(pid, SIGKILL) }
    process.waitUntilExit()
  }

  func removeFiles() { try? FileManager.default.removeItem(at: directory) }

  /// Runs `gobgp -p API ARGS...`.
  @discardableResult
  func cli(_ arguments: [String]) -> (status: Int32, output: String) {
    guard let path = Self.cliPath else { return (-1, "") }
    let child = Process()
    child.executableURL = URL(fileURLWithPath: path)
    child.arguments = ["-p", String(apiPort)] + arguments
    let pipe = Pipe()
    child.standardOutput = pipe
    child.standardError = pipe
    do { try child.run() } catch { return (-1, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    child.waitUntilExit()
    return (child.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  func evpn(_ arguments: String) -> (status: Int32, output: String) {
    cli(["global", "rib", "-a", "evpn"] + arguments.split(separator: " ").map(String.init))
  }

  /// `gobgp global rib -a evpn -j`, as route key -> paths.
  func evpnRIB() -> [String: [[String: Any]]] {
    let output = evpn("-j").output
    guard let data = output.data(using: .utf8),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else {
      return [:]
    }
    return object.compactMapValues { $0 as? [[String: Any]] }
  }

  /// Polls the RIB until `predicate` holds (external process: nothing to subscribe to).
  func waitForRIB(timeout: Double = 15, _ predicate: ([String: [[String: Any]]]) -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      if predicate(evpnRIB()) { return true }
      Thread.sleep(forTimeInterval: 0.1)
    }
    return predicate(evpnRIB())
  }
}
