import API
import ControlShim
import Dataplane
import Foundation
import Management
import XCTest

/// Extension sites (`[peering]`) whose `[[bgp.peer]]` is a gobgpd route reflector (in a
/// namespace of its own, with RT constraint): only extended networks reach the route
/// reflector, under their negotiated route target, and only members get them back.
///
/// Three in-process sites (their VTEPs on the host end of a veth pair into the route
/// reflector's namespace); `listen_port = 0` keeps the members from bringing up direct
/// sessions, so whatever B learns from A came through the route reflector. A extends net1
/// to B only; A's `private` network is never extended; C is not a member and has a local
/// network on the VNI and default route target the extension negotiates (64512:100), the
/// case where importing by route target alone would take A's routes in.
final class RouteReflectorExtensionTests: XCTestCase, @unchecked Sendable {
  private var namespace: String?
  private var hostInterface: String?
  private var daemon: Process?
  private var directory: String?
  private var sites: [APITestSite] = []
  private var subnet = ""

  private let sharedMAC = MACAddress("02:aa:00:00:01:01")!
  private let privateMAC = MACAddress("02:aa:00:00:03:01")!
  private let memberMAC = MACAddress("02:bb:00:00:01:01")!
  private let outsiderMAC = MACAddress("02:cc:00:00:01:01")!

  override func tearDown() async throws {
    for site in sites { await site.stop() }
    sites = []
    if let daemon, daemon.isRunning {
      kill(daemon.processIdentifier, SIGTERM)
      let deadline = Date().addingTimeInterval(5)
      while daemon.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
      if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) }
      daemon.waitUntilExit()
    }
    daemon = nil
    if let namespace { _ = try? Self.run(["ip", "netns", "del", namespace]) }
    if let hostInterface { _ = try? Self.run(["ip", "link", "del", hostInterface], check: false) }
    if let directory { try? FileManager.default.removeItem(atPath: directory) }
  }

  @discardableResult
  static func run(_ arguments: [String], check: Bool = true) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let output = String(decoding: data, as: UTF8.self)
    if check && process.terminationStatus != 0 {
      throw CommandFailed(description: "\(arguments.joined(separator: " ")): \(output)")
    }
    return output
  }

  struct CommandFailed: Error, CustomStringConvertible { let description: String }

  private func vtep(_ site: Int) -> String { "\(subnet).\(10 + site)" }
  private var reflector: String { "\(subnet).2" }

  /// The namespace with gobgpd, reached over a veth pair whose host end carries the VTEPs.
  /// `rtc`: the neighbors have the `rtc` afi-safi (RT constraint) besides `l2vpn-evpn`.
  private func startRouteReflector(rtc: Bool) throws {
    guard getuid() == 0 else { throw XCTSkip("needs root: namespaces, TCP sessions from the VTEPs") }
    guard
      let gobgpd = ["/usr/bin/gobgpd", "/usr/local/bin/gobgpd"].first(where: {
        FileManager.default.isExecutableFile(atPath: $0)
      }), FileManager.default.isExecutableFile(atPath: "/usr/bin/gobgp")
    else { throw XCTSkip("gobgpd/gobgp not installed (Debian package gobgpd)") }
    let tag = String(UInt32.random(in: 0..<0xFFFF_FFFF), radix: 16)
    let name = "vxrrx\(tag)"
    subnet = "10.251.\(UInt8.random(in: 1...254))"
    try Self.run(["ip", "netns", "add", name])
    namespace = name
    let host = "rrx\(tag)"
    try Self.run(["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", name])
    hostInterface = host
    for site in 1...3 { try Self.run(["ip", "addr", "add", "\(vtep(site))/24", "dev", host]) }
    try Self.run(["ip", "link", "set", host, "up"])
    try Self.run(["ip", "-n", name, "addr", "add", "\(reflector)/24", "dev", "eth0"])
    try Self.run(["ip", "-n", name, "link", "set", "eth0", "up"])
    try Self.run(["ip", "-n", name, "link", "set", "lo", "up"])
    let folder = NSTemporaryDirectory() + "vxswitch-rr-\(tag)"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    directory = folder
    var configuration = """
      [global.config]
        as = 64512
        router-id = "\(reflector)"
        port = 179
        local-address-list = ["\(reflector)"]

      """
    for site in 1...3 {
      configuration += """
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "\(vtep(site))"
            peer-as = 64512
          [neighbors.transport.config]
            passive-mode = true
          [neighbors.route-reflector.config]
            route-reflector-client = true
            route-reflector-cluster-id = "\(reflector)"
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "l2vpn-evpn"

        """
      if rtc {
        configuration += """
            [[neighbors.afi-safis]]
              [neighbors.afi-safis.config]
                afi-safi-name = "rtc"

          """
      }
    }
    try configuration.write(toFile: folder + "/gobgpd.toml", atomically: true, encoding: .utf8)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    // `ip netns exec` execs gobgpd: the PID is the daemon's.
    process.arguments = [
      "ip", "netns", "exec", name, gobgpd, "-f", folder + "/gobgpd.toml", "--api-hosts", "127.0.0.1:50051",
    ]
    let log = FileManager.default.createFile(atPath: folder + "/gobgpd.log", contents: nil)
    XCTAssertTrue(log)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: folder + "/gobgpd.log"))
    process.standardError = process.standardOutput
    try process.run()
    daemon = process
    try waitFor("gobgpd's API", timeout: 20) { (try? self.gobgp(["global"])) != nil }
  }

  private func gobgp(_ arguments: [String]) throws -> String {
    try Self.run(["ip", "netns", "exec", namespace!, "gobgp", "-p", "50051"] + arguments)
  }

  /// The route reflector's EVPN RIB, one line per path.
  private func reflectorRIB() -> [String] {
    ((try? gobgp(["global", "rib", "-a", "evpn"])) ?? "").split(separator: "\n").map(String.init)
      .filter { $0.contains("[type:") }
  }

  /// What the route reflector sends site `site` (its Adj-RIB-Out), one line per path.
  private func adjOut(_ site: Int) -> [String] {
    ((try? gobgp(["neighbor", vtep(site), "adj-out", "-a", "evpn"])) ?? "").split(separator: "\n")
      .map(String.init).filter { $0.contains("[type:") }
  }

  private func waitFor(_ what: String, timeout: Double = 20, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      if try condition() { return }
      Thread.sleep(forTimeInterval: 0.1)
    }
    if try condition() { return }
    let log = directory.flatMap { try? String(contentsOfFile: $0 + "/gobgpd.log", encoding: .utf8) } ?? ""
    throw CommandFailed(
      description:
        "timed out waiting for \(what); route reflector RIB:\n\(reflectorRIB().joined(separator: "\n"))"
        + "\nRT constraint RIB:\n\((try? gobgp(["global", "rib", "-a", "rtc"])) ?? "")"
        + "\ngobgpd log (tail):\n\(log.suffix(3000))")
  }

  private func config(_ name: String, site: Int, networks: [(String, UInt32, String)]) -> String {
    var text = """
      [site]
      name = "\(name)"
      vtep = "\(vtep(site))"
      underlay = "eth1"
      underlay_mac = "02:00:00:00:00:0\(site)"
      control_socket = "SOCKET"

      [peering]
      listen = "127.0.0.1:1"
      tls_cert = "unused.pem"
      tls_key = "unused.key"
      tls_ca = "unused-ca.pem"

      [bgp]
      asn = 64512
      router_id = "\(vtep(site))"
      listen_port = 0

      [[bgp.peer]]
      address = "\(reflector)"
      asn = 64512
      hold_time = 9

      """
    for (network, vni, port) in networks {
      text += "\n[[bridge_domain]]\nname = \"\(network)\"\nvni = \(vni)\nports = [\"\(port)\"]\n"
    }
    return text
  }

  private func learn(_ mac: MACAddress, at site: APITestSite, port: String) {
    site.offline.forward(
      interface: port,
      frames: [
        FrameBuilder.arpRequestFrame(
          senderMAC: mac, senderIP: IPAddress("192.168.9.1")!, targetIP: IPAddress("192.168.9.2")!)
      ], now: 1)
  }

  private func fdb(_ site: APITestSite, _ mac: MACAddress) throws -> FDBRow? {
    try site.client.get("/v1/fdb?mac=\(mac)", as: FDBList.self).entries.first
  }

  private func bgp(_ site: APITestSite) throws -> SpeakerStatus {
    try site.client.get("/v1/bgp", as: SpeakerStatus.self, decoder: JSONDecoder())
  }

  private func reflectorPeer(_ site: APITestSite) throws -> PeerStatus? {
    try bgp(site).peers.first { $0.address == reflector }
  }

  func testOnlyExtendedNetworksReachTheRouteReflectorAndOnlyMembersGetThem() async throws {
    try await extendThroughTheRouteReflector(rtc: true)
  }

  /// A route reflector without RT constraint reflects the extension's routes to C as well:
  /// C counts them as ignored and installs none (its filter toward the reflector is empty,
  /// although its local network imports the same route target).
  func testWithoutRouteTargetConstraintANonMemberIgnoresWhatTheReflectorSendsIt() async throws {
    try await extendThroughTheRouteReflector(rtc: false)
  }

  private func extendThroughTheRouteReflector(rtc: Bool) async throws {
    try startRouteReflector(rtc: rtc)
    let peers = LoopbackPeerNetwork()
    // A: net1 (VNI 100) and a private network. B: net1 on VNI 200. C (not a member): a
    // local network on VNI 100, whose default route target is 64512:100.
    let a = try APITestSite(
      config: config("site-a", site: 1, networks: [("net1", 100, "vm1"), ("private", 300, "vm2")]),
      peers: peers, speaker: true)
    sites.append(a)
    let b = try APITestSite(
      config: config("site-b", site: 2, networks: [("net1", 200, "vm1")]), peers: peers, speaker: true)
    sites.append(b)
    let c = try APITestSite(
      config: config("site-c", site: 3, networks: [("local", 100, "vm1")]), peers: peers, speaker: true)
    sites.append(c)
    learn(sharedMAC, at: a, port: "vm1")
    learn(privateMAC, at: a, port: "vm2")
    learn(memberMAC, at: b, port: "vm1")
    learn(outsiderMAC, at: c, port: "vm1")

    // Before any extension: every site's session with the route reflector is up, with RT
    // constraint, and nothing of any site is in the route reflector's RIB.
    for site in [a, b, c] {
      try waitFor("\(site.offline.core.config.site.name)'s session with the route reflector") {
        try self.reflectorPeer(site)?.state == .established
      }
      let peer = try XCTUnwrap(try reflectorPeer(site))
      XCTAssertEqual(peer.routeTargetConstraint, rtc, "RT constraint negotiated with gobgpd")
      XCTAssertEqual(peer.exportVNIs, [], "nothing is extended yet")
      await site.controlPlane!.speaker.sync()
      XCTAssertEqual(try reflectorPeer(site)?.routesAdvertised, 0)
    }
    XCTAssertEqual(reflectorRIB(), [], "no site advertises a network that is not extended")

    // A extends net1 to B: negotiated VNI 100 (A's own, free at B), route target 64512:100.
    let body = try JSONSerialization.data(withJSONObject: ["network": "net1", "sites": ["site-b"]])
    let reply = try a.client.request(.POST, "/v1/extensions", body: body)
    XCTAssertEqual(reply.status, 202)
    let created = try APICoding.decoder.decode(ExtensionStatus.self, from: reply.body)
    let settled = await a.extensions!.settle()
    XCTAssertTrue(settled)
    let status = try a.client.get("/v1/extensions/\(created.id)", as: ExtensionStatus.self)
    XCTAssertEqual(status.members.map(\.state), [.joined, .joined])
    XCTAssertEqual(status.vni, 100)
    XCTAssertEqual(status.routeTarget, "64512:100")

    // Renumbering B's net1 flushed its entries: the VMs speak again.
    learn(sharedMAC, at: a, port: "vm1")
    learn(memberMAC, at: b, port: "vm1")

    // B learns A's VM through the route reflector (no direct session can come up: no site
    // listens), and A learns B's.
    try waitFor("A's MAC at B") { try self.fdb(b, self.sharedMAC) != nil }
    let entry = try XCTUnwrap(try fdb(b, sharedMAC))
    XCTAssertEqual([entry.origin, entry.vtep, "\(entry.vni)"], ["control", vtep(1), "100"])
    try waitFor("B's MAC at A") { try self.fdb(a, self.memberMAC) != nil }
    XCTAssertNotEqual(
      try bgp(b).peers.first { $0.name == "site-a" }?.state, .established, "no direct session between A and B"
    )
    XCTAssertGreaterThan(try XCTUnwrap(try reflectorPeer(b)).routesAccepted, 0)
    XCTAssertEqual(try reflectorPeer(a)?.exportVNIs, [100])

    // The route reflector holds A's net1 routes under the negotiated route target only,
    // and nothing of A's private network; C's local network (same VNI, same default route
    // target) never left C.
    let rib = reflectorRIB()
    let fromA = rib.filter { $0.contains(" \(vtep(1)) ") }
    XCTAssertTrue(fromA.contains { $0.contains("\(sharedMAC)") }, rib.joined(separator: "\n"))
    XCTAssertTrue(fromA.contains { $0.contains("type:multicast") }, rib.joined(separator: "\n"))
    for line in fromA {
      XCTAssertTrue(line.contains("64512:100"), "a route of A without the negotiated RT: \(line)")
      XCTAssertFalse(line.contains("64512:300"), line)
    }
    XCTAssertFalse(rib.contains { $0.contains("\(privateMAC)") }, "A's private network reached the reflector")
    XCTAssertFalse(rib.contains { $0.contains(" \(vtep(3)) ") }, "C advertised its local network")
    XCTAssertFalse(rib.contains { $0.contains("\(outsiderMAC)") })

    // C, not a member, holds nothing of net1, although its own network imports 64512:100.
    // With RT constraint it is sent nothing (it asked for no route target); without, it is
    // sent every reflected route and ignores them all.
    if rtc {
      XCTAssertEqual(adjOut(3), [], "the route reflector sent C routes")
      XCTAssertEqual(try reflectorPeer(c)?.routesReceived, 0)
    } else {
      XCTAssertTrue(
        adjOut(3).contains { $0.contains("\(sharedMAC)") }, "the reflector did not send C A's MAC")
      try waitFor("C ignoring the reflected routes") {
        try self.reflectorPeer(c).map { $0.routesIgnored >= 2 && $0.routesReceived == $0.routesIgnored }
          ?? false
      }
    }
    XCTAssertNil(try fdb(c, sharedMAC))
    XCTAssertNil(try fdb(c, memberMAC))
    XCTAssertEqual(try reflectorPeer(c)?.routesAccepted, 0)
    XCTAssertTrue(try c.client.get("/v1/flood?vni=100", as: FloodList.self).flood.isEmpty)

    // Deleting the extension withdraws A's routes from the route reflector, and B drops them.
    XCTAssertEqual(try a.client.request(.DELETE, "/v1/extensions/\(created.id)").status, 202)
    let deleted = await a.extensions!.settle()
    XCTAssertTrue(deleted)
    try waitFor("A's routes withdrawn from the route reflector") {
      !self.reflectorRIB().contains { $0.contains(" \(self.vtep(1)) ") }
    }
    try waitFor("A's MAC gone at B") { try self.fdb(b, self.sharedMAC) == nil }
    XCTAssertEqual(try reflectorPeer(a)?.exportVNIs, [])
    XCTAssertFalse(reflectorRIB().contains { $0.contains("\(privateMAC)") })
  }
}
