import Foundation
import XCTest

/// One `vxswitch run` daemon in namespaces the test creates: the site (`eth1` underlay,
/// access ports `vm1` and `vm2`) and two VMs on those ports (192.168.77.1 and .2), with
/// the API on the control socket and on TCP loopback inside the site's namespace. `stop`
/// ends only the processes it started (by PID) and deletes its namespaces.
final class DaemonFixture {
  let prefix: String
  let site: String
  let vmA: String
  let vmB: String
  let directory: String
  let apiPort: Int
  var processes: [Process] = []
  private var namespaces: [String] = []

  var socket: String { directory + "/api.sock" }
  var config: String { directory + "/site.toml" }
  var tokenFile: String { directory + "/token" }
  var apiURL: String { "http://127.0.0.1:\(apiPort)" }

  init(tag: String) throws {
    prefix = "\(tag)\(getpid() % 10000)"
    (site, vmA, vmB) = (prefix + "-site", prefix + "-vma", prefix + "-vmb")
    directory = NSTemporaryDirectory() + "vxswitch-\(prefix)"
    apiPort = 18000 + Int(getpid() % 1000) + (tag.hashValue & 0x3F)
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    do {
      try build()
    } catch {
      stop()
      throw error
    }
  }

  private func build() throws {
    for namespace in [site, vmA, vmB] {
      try Self.run(["ip", "netns", "add", namespace])
      namespaces.append(namespace)
      try Self.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    }
    try Self.run(["ip", "-n", site, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"])
    for (port, vm, address) in [("vm1", vmA, "192.168.77.1/24"), ("vm2", vmB, "192.168.77.2/24")] {
      try Self.run([
        "ip", "-n", site, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", vm,
      ])
      try Self.run(["ip", "-n", site, "link", "set", port, "up"])
      try Self.run(["ip", "-n", vm, "addr", "add", address, "dev", "eth0"])
      try Self.run(["ip", "-n", vm, "link", "set", "eth0", "up"])
    }
    for link in ["eth1", "eth1p"] { try Self.run(["ip", "-n", site, "link", "set", link, "up"]) }
    try Self.run(["ip", "-n", site, "addr", "add", "10.0.0.1/24", "dev", "eth1"])
    try "fixture-token-\(UUID().uuidString)".write(toFile: tokenFile, atomically: true, encoding: .utf8)
    chmod(tokenFile, 0o600)
    try """
    [site]
    name = "\(prefix)"
    vtep = "10.0.0.1"
    underlay = "eth1"
    control_socket = "\(socket)"

    [[bridge_domain]]
    vni = 100
    ports = ["vm1", "vm2"]

    [api]
    listen = "127.0.0.1:\(apiPort)"
    token_file = "\(tokenFile)"
    """.write(toFile: config, atomically: true, encoding: .utf8)
    try start(
      ["ip", "netns", "exec", site, LabTests.binary.path, "run", "--config", config], log: "daemon.log")
    try waitFor("the daemon's control socket", timeout: 20) {
      FileManager.default.fileExists(atPath: self.socket)
    }
  }

  /// The daemon's state file (`[site] state_dir` defaults to the control socket's directory).
  var stateFile: String { directory + "/\(prefix).state.json" }

  /// Stops the daemon (SIGTERM, graceful) and waits for it.
  func stopDaemon() {
    guard let daemon = processes.first, daemon.isRunning else { return }
    daemon.terminate()
    daemon.waitUntilExit()
  }

  /// Starts the daemon again from its files, as after a restart.
  func startDaemon() throws {
    processes.removeAll { !$0.isRunning }
    try start(
      ["ip", "netns", "exec", site, LabTests.binary.path, "run", "--config", config], log: "daemon.log")
    processes.insert(processes.removeLast(), at: 0)
    try waitFor("the daemon's control socket", timeout: 20) {
      FileManager.default.fileExists(atPath: self.socket)
    }
  }

  func stop() {
    for process in processes where process.isRunning {
      process.terminate()
      process.waitUntilExit()
    }
    for namespace in namespaces { _ = try? Self.run(["ip", "netns", "del", namespace]) }
    namespaces = []
    try? FileManager.default.removeItem(atPath: directory)
  }

  func log(_ name: String) -> String {
    (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
  }

  @discardableResult
  func start(_ arguments: [String], log: String) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    FileManager.default.createFile(atPath: directory + "/" + log, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/" + log))
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    processes.append(process)
    return process
  }

  /// Polls `condition` (an external process's state has no event to wait on) until it
  /// holds or `timeout` passes; the error names what was awaited and the daemon's log.
  func waitFor(_ what: String, timeout: Double, _ condition: () -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
      if Date() > deadline {
        throw NSError(
          domain: what, code: 1,
          userInfo: [
            NSLocalizedDescriptionKey: "timed out waiting for \(what)\ndaemon:\n\(log("daemon.log"))"
          ])
      }
      usleep(100_000)
    }
  }

  /// Runs a command; throws with its output when it fails (unless `check` is false).
  @discardableResult
  static func run(_ arguments: [String], environment: [String: String]? = nil, check: Bool = true) throws
    -> String
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 || !check else {
      throw NSError(
        domain: "command", code: Int(process.terminationStatus),
        userInfo: [
          NSLocalizedDescriptionKey:
            "\(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(output)"
        ])
    }
    return output.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  static func skipUnlessCapable() throws {
    guard getuid() == 0 else { throw XCTSkip("needs root: network namespaces and AF_PACKET") }
    guard FileManager.default.isExecutableFile(atPath: LabTests.binary.path) else {
      throw XCTSkip("vxswitch binary not built next to the tests: \(LabTests.binary.path)")
    }
  }
}
