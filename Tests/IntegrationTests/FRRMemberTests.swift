import Foundation
import XCTest

/// An FRR site as a member of an extension: FRR 8.4 from Debian (zebra + bgpd, run by the
/// test from its own directory: configuration, pid files, vty sockets, zebra socket; in a
/// namespace, as the frr user) with a Linux bridge and a kernel vxlan device as its
/// dataplane and `advertise-all-vni`. FRR cannot join through the mutual-TLS site channel:
/// the vxswitch site knows it as `[[site_peer]] evpn_only = true` (its VTEP and TCP MD5
/// key), and the test, as FRR's operator, reads the negotiated VNI and route target from
/// the vxswitch API and configures them there.
final class FRRMemberTests: XCTestCase {
  static let zebra = "/usr/lib/frr/zebra"
  static let bgpd = "/usr/lib/frr/bgpd"
  static let vtysh = "/usr/bin/vtysh"

  func testAnFRRSiteTakesPartInAnExtensionThroughBGPEVPN() throws {
    try extend(io: nil)
  }

  /// The same with AF_XDP ports at the vxswitch site: BGP, ARP and the site channel pass
  /// to the kernel (XDP_PASS) beside the VXLAN the switch takes.
  func testAnFRRSiteTakesPartThroughAFXDPPorts() throws {
    try extend(io: "af_xdp")
  }

  /// The whole exchange, with the vxswitch site's interfaces opened as `io` (the default
  /// port type when nil).
  func extend(io: String?) throws {
    try DaemonFixture.skipUnlessCapable()
    guard [Self.zebra, Self.bgpd, Self.vtysh].allSatisfy(FileManager.default.isExecutableFile(atPath:)),
      getpwnam("frr") != nil
    else {
      throw XCTSkip("FRR is not installed (Debian package frr; scripts/setup.sh installs it)")
    }
    let lab = try FRRMemberLab()
    defer { lab.stop() }
    try lab.build()
    try lab.startVXSwitch(io: io)
    var ports: [[String: Any]] = []
    try lab.waitFor("the switch's live ports", timeout: 20) {
      ports = try lab.api("GET", "/v1/ports")["ports"] as? [[String: Any]] ?? []
      return ports.count == 2 && ports.allSatisfy { $0["io"] is String }
    }
    XCTAssertEqual(
      ports.map { $0["io"] as? String }, [String?](repeating: io ?? "af_packet", count: 2),
      "the ports as configured, no fallback: \(ports)")

    // The cloud manager asks the vxswitch site once; the FRR member cannot be asked, so the
    // owner negotiates alone and says what FRR's operator must configure.
    let created = try lab.api("POST", "/v1/extensions", body: #"{"network":"net1","sites":["site-frr"]}"#)
    let id = try XCTUnwrap(created["id"] as? String, "\(created)")
    var status: [String: Any] = [:]
    try lab.waitFor("the owner's identifiers for \(id)", timeout: 30) {
      status = try lab.api("GET", "/v1/extensions/\(id)")
      return status["vni"] != nil && Self.member(status, "site-frr")?["vtep"] as? String == "10.0.0.2"
    }
    let vni = try XCTUnwrap(status["vni"] as? Int)
    let routeTarget = try XCTUnwrap(status["route_target"] as? String)
    let waiting = try XCTUnwrap(Self.member(status, "site-frr"))
    XCTAssertEqual(waiting["state"] as? String, "pending", "joined before FRR even runs: \(status)")
    XCTAssertTrue(
      (waiting["reason"] as? String)?.contains("configure VNI \(vni) and route target \(routeTarget)")
        == true,
      "\(status)")

    // FRR's operator configures what the API says.
    try lab.startFRR(vni: vni, routeTarget: routeTarget)

    // The BGP session comes up (TCP MD5, iBGP) and the owner reports FRR joined.
    try lab.waitFor("site-frr joined in \(id)", timeout: 90) {
      status = try lab.api("GET", "/v1/extensions/\(id)")
      return Self.member(status, "site-frr")?["state"] as? String == "joined"
    }
    let bgp = try lab.api("GET", "/v1/bgp")
    let peer = try XCTUnwrap(
      (bgp["peers"] as? [[String: Any]])?.first { $0["name"] as? String == "site-frr" })
    XCTAssertEqual(peer["state"] as? String, "Established")
    XCTAssertEqual(peer["md5"] as? Bool, true)
    XCTAssertEqual(peer["export_vnis"] as? [Int], [vni])
    let frrSummary = try lab.vtysh("show bgp l2vpn evpn summary json")
    XCTAssertTrue(frrSummary.contains("\"state\":\"Established\""), frrSummary)

    // A VM behind vxswitch pings a VM behind the FRR site (kernel bridge + vxlan).
    try lab.waitFor("the first ping from vm1 to vm2", timeout: 30) {
      (try? DaemonFixture.run(lab.inNamespace(lab.vm1, ["ping", "-c", "1", "-W", "1", "192.168.77.2"])))
        != nil
    }
    let pings = try DaemonFixture.run(
      lab.inNamespace(lab.vm1, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "192.168.77.2"]), check: false)
    XCTAssertTrue(pings.contains("3 received"), pings)

    // FRR holds vxswitch's type-2 (vm1's MAC) and type-3 routes under the negotiated RT,
    // and installed vm1's MAC in the kernel bridge behind vxswitch's VTEP.
    var routes: [FRRMemberLab.Route] = []
    try lab.waitFor("vxswitch's routes at FRR", timeout: 30) {
      routes = try lab.frrRoutes().filter { $0.nextHop == "10.0.0.1" }
      return routes.contains { $0.type == 2 && $0.mac == FRRMemberLab.vm1MAC }
        && routes.contains { $0.type == 3 }
    }
    for route in routes {
      XCTAssertTrue(route.communities.contains("RT:\(routeTarget)"), "\(route)")
    }
    let kernelFDB = try DaemonFixture.run(
      lab.inNamespace(lab.frrSite, ["bridge", "fdb", "show", "dev", "vxlan0"]))
    XCTAssertTrue(
      kernelFDB.split(separator: "\n").contains {
        $0.contains(FRRMemberLab.vm1MAC) && $0.contains("dst 10.0.0.1")
      },
      kernelFDB)

    // vxswitch holds FRR's routes: vm2's MAC behind FRR's VTEP, from BGP EVPN.
    var entry: [String: Any]?
    try lab.waitFor("vm2's MAC at vxswitch", timeout: 30) {
      let fdb = try lab.api("GET", "/v1/fdb?mac=\(FRRMemberLab.vm2MAC)")
      entry = (fdb["entries"] as? [[String: Any]])?.first
      return entry != nil
    }
    XCTAssertEqual(entry?["origin"] as? String, "control", "\(entry ?? [:])")
    XCTAssertEqual(entry?["vtep"] as? String, "10.0.0.2")
    XCTAssertEqual(entry?["vni"] as? Int, vni)
    XCTAssertEqual(entry?["peer"] as? String, "site-frr")
    let afterPing = try lab.api("GET", "/v1/bgp")
    let frrPeer = (afterPing["peers"] as? [[String: Any]])?.first { $0["name"] as? String == "site-frr" }
    XCTAssertGreaterThanOrEqual(
      frrPeer?["routes_accepted"] as? Int ?? 0, 2, "FRR's type-3 and vm2's type-2: \(afterPing)")

    // FRR's bgpd stops (Cease): the member is pending until its session is back.
    lab.stopProcess("bgpd")
    try lab.waitFor("site-frr pending while its session is down", timeout: 30) {
      let current = try lab.api("GET", "/v1/extensions/\(id)")
      return Self.member(current, "site-frr")?["state"] as? String == "pending"
    }
    try lab.startBGPD()
    try lab.waitFor("site-frr joined again", timeout: 90) {
      let current = try lab.api("GET", "/v1/extensions/\(id)")
      return Self.member(current, "site-frr")?["state"] as? String == "joined"
    }

    // Removed from the extension: the session goes, and vxswitch's routes leave FRR.
    _ = try lab.api("DELETE", "/v1/extensions/\(id)/members/site-frr")
    try lab.waitFor("site-frr removed from \(id)", timeout: 30) {
      let current = try lab.api("GET", "/v1/extensions/\(id)")
      let peers = try lab.api("GET", "/v1/bgp")["peers"] as? [[String: Any]] ?? []
      return Self.member(current, "site-frr") == nil
        && !peers.contains { $0["name"] as? String == "site-frr" }
    }
    try lab.waitFor("vxswitch's routes leaving FRR", timeout: 30) {
      try lab.frrRoutes().filter { $0.nextHop == "10.0.0.1" }.isEmpty
    }
  }

  static func member(_ status: [String: Any], _ site: String) -> [String: Any]? {
    (status["members"] as? [[String: Any]])?.first { $0["site"] as? String == site }
  }
}

/// The namespaces, files and processes of `FRRMemberTests`: a vxswitch site and an FRR
/// site on one underlay link (10.0.0.1 and 10.0.0.2), a VM behind each (192.168.77.1 and
/// .2, veths with default offloads). `stop` ends only the processes it started, by PID,
/// and deletes its namespaces and directory.
final class FRRMemberLab {
  static let vm1MAC = "02:00:00:00:01:01"
  static let vm2MAC = "02:00:00:00:02:01"
  static let password = "frr-member-md5"
  let prefix = "fm\(getpid() % 10000)"
  let directory: String
  var vxSite: String { prefix + "-vx" }
  var frrSite: String { prefix + "-frr" }
  var vm1: String { prefix + "-vm1" }
  var vm2: String { prefix + "-vm2" }
  var frrDirectory: String { directory + "/frr" }
  var socket: String { directory + "/vx.sock" }
  private var namespaces: [String] = []
  private var processes: [(name: String, process: Process)] = []

  struct Route: CustomStringConvertible {
    var type: Int
    var mac: String?
    var nextHop: String?
    var communities: String
    var description: String { "type \(type) mac \(mac ?? "-") next hop \(nextHop ?? "-") [\(communities)]" }
  }

  init() throws {
    directory = NSTemporaryDirectory() + "vxswitch-\(prefix)"
    try? FileManager.default.removeItem(atPath: directory)
    try FileManager.default.createDirectory(atPath: frrDirectory, withIntermediateDirectories: true)
  }

  func inNamespace(_ namespace: String, _ command: [String]) -> [String] {
    ["ip", "netns", "exec", namespace] + command
  }

  func build() throws {
    for namespace in [vxSite, frrSite, vm1, vm2] {
      try DaemonFixture.run(["ip", "netns", "add", namespace])
      namespaces.append(namespace)
      try DaemonFixture.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    }
    try DaemonFixture.run([
      "ip", "-n", vxSite, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", frrSite,
    ])
    for (site, address) in [(vxSite, "10.0.0.1/24"), (frrSite, "10.0.0.2/24")] {
      try DaemonFixture.run(["ip", "-n", site, "addr", "add", address, "dev", "eth1"])
      try DaemonFixture.run(["ip", "-n", site, "link", "set", "eth1", "up"])
    }
    for (site, vm, mac, address) in [
      (vxSite, vm1, Self.vm1MAC, "192.168.77.1/24"), (frrSite, vm2, Self.vm2MAC, "192.168.77.2/24"),
    ] {
      try DaemonFixture.run([
        "ip", "-n", site, "link", "add", "vm1", "type", "veth", "peer", "name", "eth0", "netns", vm,
      ])
      try DaemonFixture.run(["ip", "-n", site, "link", "set", "vm1", "up"])
      try DaemonFixture.run(["ip", "-n", vm, "link", "set", "eth0", "address", mac])
      try DaemonFixture.run(["ip", "-n", vm, "addr", "add", address, "dev", "eth0"])
      try DaemonFixture.run(["ip", "-n", vm, "link", "set", "eth0", "up"])
    }
  }

  /// `io`: the port type of both interfaces (`[[interface]] io`), the default when nil.
  func startVXSwitch(io: String? = nil) throws {
    let binary = LabTests.binary.path
    try DaemonFixture.run([binary, "pki", "ca", "--out", directory + "/ca"])
    try DaemonFixture.run([
      binary, "pki", "issue", "--ca", directory + "/ca", "--site", "site-vx", "--out", directory + "/tls",
    ])
    let config = """
      [site]
      name = "site-vx"
      vtep = "10.0.0.1"
      underlay = "eth1"
      control_socket = "\(socket)"

      [[bridge_domain]]
      name = "net1"
      vni = 100
      ports = ["vm1"]

      [peering]
      listen = "10.0.0.1:7443"
      tls_cert = "\(directory)/tls/site-vx.pem"
      tls_key = "\(directory)/tls/site-vx.key"
      tls_ca = "\(directory)/tls/ca.pem"

      [[site_peer]]
      name = "site-frr"
      evpn_only = true
      vtep = "10.0.0.2"
      password = "\(Self.password)"
      """
    let interfaces =
      io.map { io in
        ["eth1", "vm1"].map { "\n[[interface]]\nname = \"\($0)\"\nio = \"\(io)\"\n" }.joined()
      } ?? ""
    try (config + "\n" + interfaces).write(toFile: directory + "/vx.toml", atomically: true, encoding: .utf8)
    try start(
      "vxswitch", inNamespace(vxSite, [binary, "run", "--config", directory + "/vx.toml"]), log: "vx.log")
    try waitFor("vxswitch's control socket", timeout: 20) {
      FileManager.default.fileExists(atPath: self.socket)
    }
  }

  /// zebra and bgpd as the frr user (FRR's vty group), every path in the test's directory
  /// (nothing under /etc/frr or /run/frr, the system's FRR untouched).
  func startFRR(vni: Int, routeTarget: String) throws {
    for command in [
      ["ip", "link", "add", "br0", "type", "bridge"],
      [
        "ip", "link", "add", "vxlan0", "type", "vxlan", "id", "\(vni)", "local", "10.0.0.2", "dstport",
        "4789",
        "nolearning",
      ],
      ["ip", "link", "set", "vxlan0", "master", "br0", "up"],
      ["ip", "link", "set", "vm1", "master", "br0"],
      ["ip", "link", "set", "br0", "up"],
    ] {
      try DaemonFixture.run(inNamespace(frrSite, command))
    }
    try "hostname site-frr\n".write(toFile: frrDirectory + "/zebra.conf", atomically: true, encoding: .utf8)
    try """
    hostname site-frr
    router bgp 64512
     bgp router-id 10.0.0.2
     no bgp default ipv4-unicast
     neighbor 10.0.0.1 remote-as 64512
     neighbor 10.0.0.1 password \(Self.password)
     neighbor 10.0.0.1 timers connect 2
     address-family l2vpn evpn
      neighbor 10.0.0.1 activate
      advertise-all-vni
      vni \(vni)
       route-target import \(routeTarget)
       route-target export \(routeTarget)
      exit-vni
     exit-address-family
    """.write(toFile: frrDirectory + "/bgpd.conf", atomically: true, encoding: .utf8)
    try DaemonFixture.run(["chown", "-R", "frr:frr", frrDirectory])
    try start("zebra", daemon("zebra", FRRMemberTests.zebra), log: "zebra.out")
    try waitFor("zebra's sockets", timeout: 20) {
      FileManager.default.fileExists(atPath: self.frrDirectory + "/zserv.api")
        && FileManager.default.fileExists(atPath: self.frrDirectory + "/zebra.vty")
    }
    try startBGPD()
  }

  private func daemon(_ name: String, _ path: String) -> [String] {
    inNamespace(
      frrSite,
      [
        path, "-N", prefix, "-u", "frr", "-g", "frr", "-f", "\(frrDirectory)/\(name).conf", "-i",
        "\(frrDirectory)/\(name).pid", "-z", "\(frrDirectory)/zserv.api", "--vty_socket", frrDirectory,
        "-P", "0", "--log", "file:\(frrDirectory)/\(name).log",
      ])
  }

  func startBGPD() throws {
    try? FileManager.default.removeItem(atPath: frrDirectory + "/bgpd.vty")
    try start("bgpd", daemon("bgpd", FRRMemberTests.bgpd), log: "bgpd.out")
    try waitFor("bgpd's vty socket", timeout: 20) {
      FileManager.default.fileExists(atPath: self.frrDirectory + "/bgpd.vty")
    }
  }

  /// Stops one process this lab started (SIGTERM to its PID) and waits for it.
  func stopProcess(_ name: String) {
    for (label, process) in processes where label == name && process.isRunning {
      process.terminate()
      process.waitUntilExit()
    }
    processes.removeAll { $0.name == name }
  }

  func vtysh(_ command: String) throws -> String {
    try DaemonFixture.run(
      inNamespace(frrSite, [FRRMemberTests.vtysh, "--vty_socket", frrDirectory, "-c", command]))
  }

  /// Every path of FRR's L2VPN EVPN table.
  func frrRoutes() throws -> [Route] {
    let text = try vtysh("show bgp l2vpn evpn route json")
    guard let table = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
      return []
    }
    var routes: [Route] = []
    for case let distinguisher as [String: Any] in table.values {
      for case let prefix as [String: Any] in distinguisher.values {
        for case let paths as [[String: Any]] in (prefix["paths"] as? [Any]) ?? [] {
          for path in paths {
            routes.append(
              Route(
                type: path["routeType"] as? Int ?? 0, mac: path["mac"] as? String,
                nextHop: ((path["nexthops"] as? [[String: Any]])?.first?["ip"]) as? String,
                communities: ((path["extendedCommunity"] as? [String: Any])?["string"] as? String) ?? ""))
          }
        }
      }
    }
    return routes
  }

  /// A vxswitch API call over the control socket (curl): the JSON object answered.
  func api(_ method: String, _ path: String, body: String? = nil) throws -> [String: Any] {
    var command = ["curl", "-sS", "--fail-with-body", "--unix-socket", socket, "-X", method]
    if let body { command += ["-H", "Content-Type: application/json", "-d", body] }
    let text = try DaemonFixture.run(command + ["http://localhost\(path)"])
    if text.isEmpty { return [:] }
    return (try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
  }

  private func start(_ name: String, _ arguments: [String], log: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    FileManager.default.createFile(atPath: directory + "/" + log, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/" + log))
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    processes.append((name, process))
  }

  func logs() -> String {
    ["vx.log", "zebra.out", "bgpd.out", "frr/bgpd.log", "frr/zebra.log"].map { name in
      let text = (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
      return "== \(name)\n" + text.split(separator: "\n").suffix(40).joined(separator: "\n")
    }.joined(separator: "\n")
  }

  /// Polls `condition` (other processes' state has no event to wait on) until it holds or
  /// `timeout` passes; the error carries the daemons' logs.
  func waitFor(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    var lastError: Error?
    while true {
      do {
        if try condition() { return }
      } catch {
        lastError = error
      }
      if Date() > deadline {
        throw NSError(
          domain: what, code: 1,
          userInfo: [
            NSLocalizedDescriptionKey:
              "timed out waiting for \(what)\(lastError.map { " (last error: \($0))" } ?? "")\n\(logs())"
          ])
      }
      usleep(200_000)
    }
  }

  func stop() {
    for (_, process) in processes.reversed() where process.isRunning {
      process.terminate()
      process.waitUntilExit()
    }
    processes = []
    for namespace in namespaces { _ = try? DaemonFixture.run(["ip", "netns", "del", namespace]) }
    namespaces = []
    try? FileManager.default.removeItem(atPath: directory)
  }
}
