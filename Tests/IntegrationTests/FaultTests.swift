import Foundation
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Faults on a running site, one topology for all of them: two `vxswitch run` daemons in
/// namespaces (site A: VMs a1-a3 in VNI 100 and a4, a5 in VNIs 200/300; site B: VM b1 in
/// VNI 100), one underlay link between them, an iBGP EVPN session (A passive, B active).
/// Each fault checks that local switching goes on, that the state comes back by itself,
/// and that site A's daemon holds afterwards the file descriptors, sockets and threads it
/// held before the fault; at the end nothing of the test's namespaces stays.
final class FaultTests: XCTestCase {
  override func setUpWithError() throws { try DaemonFixture.skipUnlessCapable() }

  func testLinksNeighboursReloadAndBGPPeerRestart() throws {
    let lab = try FaultLab()
    defer {
      lab.stop()
      let left = LabTests.namespaces().filter { $0.hasPrefix(lab.prefix + "-") }
      XCTAssertEqual(left, [], "namespaces left behind")
    }
    try lab.start()
    try lab.converge()
    let baseline = try lab.settledResources(near: nil)

    try accessLinkDownAndUp(lab)
    try lab.expectNoLeaks(baseline, after: "access link down and up")

    try underlayLinkDownAndUp(lab)
    try lab.expectNoLeaks(baseline, after: "underlay link down and up")

    try neighbourTableFlushed(lab)
    try lab.expectNoLeaks(baseline, after: "neighbour table flushed")

    try reloadUnderTraffic(lab)
    try lab.expectNoLeaks(baseline, after: "reloads under traffic")

    try peerKilledAndRestarted(lab)
    try lab.expectNoLeaks(baseline, after: "BGP peer killed and restarted")
  }

  /// Graceful restart, restarting side (RFC 4724): site B's daemon is stopped (SIGTERM, as
  /// for an upgrade) and started again while site A runs on. A keeps b1's entry (from B's
  /// route) the whole time: while B is away (stale), and when B is back, because B puts b1
  /// back from its restart record and advertises it before its End-of-RIB (sent before it,
  /// the End-of-RIB would sweep b1 at A). No traffic reaches B meanwhile, so B cannot have
  /// learnt b1 again from the wire. A sees B's OPEN with the Restart State bit; B says it
  /// restarted; a1 reaches b1 at once afterwards.
  func testSiteRestartKeepsItsRoutesAtThePeer() throws {
    let lab = try FaultLab()
    defer {
      lab.stop()
      let left = LabTests.namespaces().filter { $0.hasPrefix(lab.prefix + "-") }
      XCTAssertEqual(left, [], "namespaces left behind")
    }
    try lab.start()
    try lab.converge()
    let b1 = FaultLab.mac("b1")
    try lab.waitFor("b1's MAC at site A from BGP", timeout: 20) {
      _ = lab.pings(from: "a1", to: "b1")
      return try lab.fdbEntry(at: lab.socketA, mac: b1)?["origin"] as? String == "control"
    }
    // The periodic write has happened by now (one at start); the stop writes it again.
    try lab.terminateSiteB()
    let record = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: lab.restartRecordB)))
        as? [String: Any])
    XCTAssertEqual(record["stopped"] as? Bool, true, "\(record)")
    let saved = (record["macs"] as? [[String: Any]] ?? []).compactMap { $0["mac"] as? String }
    XCTAssertTrue(saved.contains(b1), "b1 in B's restart record: \(record)")

    var missing: [String] = []
    func checkKept(_ moment: String) throws {
      let entry = try lab.fdbEntry(at: lab.socketA, mac: b1)
      if entry?["origin"] as? String != "control" || entry?["vtep"] as? String != "10.0.0.2" {
        missing.append("\(moment): \(entry ?? [:])")
      }
    }
    try lab.waitFor("site A holding B's routes stale", timeout: 20) {
      try checkKept("B stopped")
      guard let peer = try lab.peer(at: lab.socketA) else { return false }
      return peer["state"] as? String != "Established" && peer["stale_phase"] as? String == "graceful_restart"
    }
    try lab.startSiteB()
    try lab.waitFor("B back with the Restart State bit, its routes fresh at A", timeout: 60) {
      try checkKept("B restarting")
      guard let peer = try lab.peer(at: lab.socketA) else { return false }
      let phase = peer["stale_phase"] as? String
      return peer["state"] as? String == "Established" && peer["peer_restarted"] as? Bool == true
        && (phase == nil || phase == "none") && (peer["routes_stale"] as? Int ?? -1) == 0
    }
    for _ in 0..<10 {
      try checkKept("after B's End-of-RIB")
      usleep(100_000)
    }
    XCTAssertEqual(missing, [], "b1's entry at site A went away during B's restart")
    let restart = try XCTUnwrap(lab.api(lab.socketB, "GET", "/v1/bgp")["graceful_restart"] as? [String: Any])
    XCTAssertEqual(restart["restarted"] as? Bool, true, "\(restart)")
    XCTAssertEqual(restart["forwarding_state_preserved"] as? Bool, true, "\(restart)")
    XCTAssertTrue(lab.log(lab.logB).contains("graceful restart: local MACs restored"), lab.log(lab.logB))
    let shownA = try DaemonFixture.run([LabTests.binary.path, "show", "bgp", "--socket", lab.socketA])
    XCTAssertTrue(shownA.contains("gr(restarted)"), shownA)
    let shownB = try DaemonFixture.run([LabTests.binary.path, "show", "bgp", "--socket", lab.socketB])
    XCTAssertTrue(shownB.contains("graceful restart: restarted"), shownB)
    XCTAssertTrue(
      lab.log(lab.logA).contains("restarted (graceful restart, forwarding state kept)"), lab.log(lab.logA))
    let pings = try lab.ping(from: "a1", to: "b1", count: 20, interval: 0.05)
    XCTAssertEqual(pings.received, 20, "a1 to b1 right after B's restart: \(pings.output)")
    try lab.waitFor("B's restart over (no more Restart State)", timeout: 90) {
      let restart = try lab.api(lab.socketB, "GET", "/v1/bgp")["graceful_restart"] as? [String: Any]
      return restart?["restart_state"] as? Bool == false
    }

    // A damaged record does not stop B from starting: a cold start (no R bit, F bit clear),
    // the file kept aside for the operator.
    try lab.terminateSiteB()
    let damaged = "{\"version\": 1, \"site\": "
    try damaged.write(toFile: lab.restartRecordB, atomically: true, encoding: .utf8)
    try lab.startSiteB()
    let cold = try XCTUnwrap(lab.api(lab.socketB, "GET", "/v1/bgp")["graceful_restart"] as? [String: Any])
    XCTAssertEqual(cold["restarted"] as? Bool, false, "\(cold)")
    XCTAssertEqual(cold["forwarding_state_preserved"] as? Bool, false, "\(cold)")
    XCTAssertEqual(try String(contentsOfFile: lab.restartRecordB + ".corrupt", encoding: .utf8), damaged)
    XCTAssertTrue(lab.log(lab.logB).contains("restart record unusable"), lab.log(lab.logB))
    try lab.waitFor("the session with B again after its cold start", timeout: 60) {
      try lab.peer(at: lab.socketA)?["state"] as? String == "Established"
        && lab.peer(at: lab.socketA)?["peer_restarted"] as? Bool == false
    }
  }

  /// Site A's port vm3 (a3) goes down: a1 and a2 keep talking, a3 is unreachable and the
  /// port shows down; it comes up again: a3 answers, with no restart.
  private func accessLinkDownAndUp(_ lab: FaultLab) throws {
    try lab.inSite(lab.siteA, ["ip", "link", "set", "vm3", "down"])
    try lab.waitFor("vm3 down in show ports", timeout: 10) {
      try lab.port("vm3")?["oper_state"] as? String == "down"
    }
    let local = try lab.ping(from: "a1", to: "a2", count: 50, interval: 0.02)
    XCTAssertEqual(local.received, 50, "local switching while vm3 is down: \(local.output)")
    XCTAssertFalse(lab.pings(from: "a1", to: "a3"), "a3 answered through a port that is down")
    // That ping's frames wait in vm3's transmit ring, which the kernel refuses (ENETDOWN)
    // while vm3 is down. The worker retries the ring on its ordinary turns, not every
    // millisecond: over one idle second (a measurement window, nothing to await) its
    // failed kicks stay few (a retry every millisecond makes about a thousand).
    let kicksBefore = try lab.transmitErrors("vm3")
    usleep(1_000_000)
    let kicksDuring = try lab.transmitErrors("vm3") - kicksBefore
    XCTAssertLessThan(kicksDuring, 20, "failed transmit kicks on vm3 in one second while it is down")

    let before = try lab.port("vm3")?["rx_frames"] as? Int ?? -1
    try lab.inSite(lab.siteA, ["ip", "link", "set", "vm3", "up"])
    try lab.waitFor("a3 reachable again after vm3 up", timeout: 20) { lab.pings(from: "a1", to: "a3") }
    let port = try XCTUnwrap(lab.port("vm3"))
    XCTAssertEqual(port["oper_state"] as? String, "up", "\(port)")
    XCTAssertGreaterThan(port["rx_frames"] as? Int ?? 0, before, "vm3 counts a3's frames again: \(port)")
    let again = try lab.ping(from: "a1", to: "a3", count: 20, interval: 0.02)
    XCTAssertEqual(again.received, 20, again.output)
  }

  /// Site A's underlay goes down: a1 and a2 keep talking, b1 is out of reach; it comes
  /// up again: b1 answers again with no command.
  private func underlayLinkDownAndUp(_ lab: FaultLab) throws {
    try lab.inSite(lab.siteA, ["ip", "link", "set", "eth1", "down"])
    try lab.waitFor("eth1 down in show ports", timeout: 10) {
      try lab.port("eth1")?["oper_state"] as? String == "down"
    }
    let local = try lab.ping(from: "a1", to: "a2", count: 50, interval: 0.02)
    XCTAssertEqual(local.received, 50, "local switching while the underlay is down: \(local.output)")
    XCTAssertFalse(lab.pings(from: "a1", to: "b1"), "b1 answered while the underlay is down")
    try lab.inSite(lab.siteA, ["ip", "link", "set", "eth1", "up"])
    try lab.waitFor("b1 reachable again after the underlay came up", timeout: 30) {
      lab.pings(from: "a1", to: "b1")
    }
    let remote = try lab.ping(from: "a1", to: "b1", count: 20, interval: 0.02)
    XCTAssertEqual(remote.received, 20, remote.output)
    try lab.waitFor("the BGP session Established after the cut", timeout: 60) {
      try lab.peer(at: lab.socketA)?["state"] as? String == "Established"
    }
  }

  /// The kernel forgets site A's underlay neighbours (and site B's): the resolver asks
  /// the kernel again, the neighbour is back in the kernel and in `show neighbors`, and
  /// encapsulated traffic to site B goes on.
  private func neighbourTableFlushed(_ lab: FaultLab) throws {
    for site in [lab.siteA, lab.siteB] {
      // `ip neigh flush` repeats until the table stays empty and gives up (exit 255) after
      // ten rounds when the kernel keeps resolving again under traffic: every round deleted
      // the entries, which is the fault wanted here.
      let output = try DaemonFixture.run(
        lab.inNamespace(site, ["ip", "neigh", "flush", "dev", "eth1"]), check: false)
      XCTAssert(
        output.isEmpty || output.contains("Flush not complete"), "ip neigh flush in \(site): \(output)")
    }
    try lab.waitFor("10.0.0.2 in site A's kernel neighbour table again", timeout: 20) {
      let shown = try DaemonFixture.run(
        lab.inNamespace(lab.siteA, ["ip", "neigh", "show", "10.0.0.2", "dev", "eth1"]))
      return shown.contains("lladdr \(FaultLab.underlayMACB)")
    }
    let remote = try lab.ping(from: "a1", to: "b1", count: 20, interval: 0.02)
    XCTAssertEqual(remote.received, 20, "traffic to site B after the flush: \(remote.output)")
    let neighbours = try lab.api(lab.socketA, "GET", "/v1/neighbors")
    let entry = (neighbours["neighbors"] as? [[String: Any]])?
      .first { $0["vtep"] as? String == "10.0.0.2" }
    XCTAssertEqual(entry?["mac"] as? String, FaultLab.underlayMACB, "\(neighbours)")
    XCTAssertEqual(entry?["resolution"] as? String, "kernel", "\(neighbours)")
  }

  /// A steady ICMP echo stream from a1 to a2 (VNI 100, never changed) while site A's
  /// configuration alternates between two versions, applied twice by SIGHUP and twice by
  /// `POST /v1/reload`: VNI 300 removed and vm5 moved into VNI 200, then back. a2 counts
  /// every echo a1 sent (its own ICMP counters), a1 every reply; a4 reaches a5 only while
  /// they share VNI 200.
  private func reloadUnderTraffic(_ lab: FaultLab) throws {
    XCTAssertFalse(lab.pings(from: "a4", to: "a5"), "a4 and a5 are in different bridge domains")
    let echoesBefore = try lab.icmpCounter(in: "a2", "InEchos")
    let repliesBefore = try lab.icmpCounter(in: "a1", "InEchoReps")
    let stream = try lab.startStream(from: "a1", to: "a2")
    // The stream is under way before the first reload.
    try lab.waitFor("the echo stream at a2", timeout: 10) {
      try lab.icmpCounter(in: "a2", "InEchos") - echoesBefore >= 20
    }
    for round in 0..<4 {
      let joined = round % 2 == 0
      try lab.writeConfigA(vm5InVNI200: joined)
      if round < 2 {
        kill(lab.pidA, SIGHUP)
      } else {
        let result = try lab.api(lab.socketA, "POST", "/v1/reload")
        XCTAssertEqual(result["bridge_domains_changed"] as? [Int], [200], "\(result)")
        XCTAssertEqual(
          (joined ? result["bridge_domains_removed"] : result["bridge_domains_added"]) as? [Int], [300],
          "\(result)")
      }
      try lab.waitFor("VNI 300 \(joined ? "removed" : "back") after reload \(round + 1)", timeout: 10) {
        let domains = try lab.api(lab.socketA, "GET", "/v1/bridge-domains")
        let vnis = (domains["bridge_domains"] as? [[String: Any]] ?? [])
          .compactMap { $0["vni"] as? Int }
        return vnis.contains(300) != joined && vnis.contains(100) && vnis.contains(200)
      }
      if joined {
        try lab.waitFor("a4 reaching a5 in VNI 200 after reload \(round + 1)", timeout: 10) {
          lab.pings(from: "a4", to: "a5")
        }
      } else {
        XCTAssertFalse(lab.pings(from: "a4", to: "a5"), "a5 still in VNI 200 after reload \(round + 1)")
      }
    }
    XCTAssertTrue(stream.isRunning, "the stream ended before the reloads did")
    let output = lab.stopStream(stream)
    let transmitted = FaultLab.pingCount(output, "packets transmitted")
    XCTAssertGreaterThan(transmitted, 100, output)
    try lab.waitFor("a2 counting every echo a1 sent (\(transmitted))", timeout: 5) {
      try lab.icmpCounter(in: "a2", "InEchos") - echoesBefore >= transmitted
    }
    try lab.waitFor("a1 counting every reply", timeout: 5) {
      try lab.icmpCounter(in: "a1", "InEchoReps") - repliesBefore >= transmitted
    }
    XCTAssertEqual(try lab.icmpCounter(in: "a2", "InEchos") - echoesBefore, transmitted, output)
    XCTAssertTrue(lab.log(lab.logA).contains("configuration reloaded"), lab.log(lab.logA))
  }

  /// Site B's daemon is killed (SIGKILL: no Cease, as a crash): site A keeps switching
  /// locally and keeps b1's route as stale (graceful restart), still in its FDB; site B
  /// starts again while A runs on: the session comes back, the routes are fresh, b1 and
  /// a1 reach each other, and B holds a1 from A's routes again.
  private func peerKilledAndRestarted(_ lab: FaultLab) throws {
    try lab.waitFor("b1's MAC at site A from BGP", timeout: 20) {
      _ = lab.pings(from: "a1", to: "b1")
      return try lab.fdbEntry(at: lab.socketA, mac: FaultLab.mac("b1"))?["origin"] as? String == "control"
    }
    try lab.killSiteB()
    try lab.waitFor("site A's routes from B stale", timeout: 20) {
      guard let peer = try lab.peer(at: lab.socketA) else { return false }
      return peer["state"] as? String != "Established" && peer["stale_phase"] as? String == "graceful_restart"
        && (peer["routes_stale"] as? Int ?? 0) > 0
    }
    let local = try lab.ping(from: "a1", to: "a2", count: 50, interval: 0.02)
    XCTAssertEqual(local.received, 50, "local switching while the peer is down: \(local.output)")
    let kept = try lab.fdbEntry(at: lab.socketA, mac: FaultLab.mac("b1"))
    XCTAssertEqual(kept?["origin"] as? String, "control", "b1's entry kept while stale: \(kept ?? [:])")
    XCTAssertEqual(kept?["vtep"] as? String, "10.0.0.2")

    try lab.startSiteB()
    try lab.waitFor("the session re-established, routes fresh", timeout: 60) {
      guard let peer = try lab.peer(at: lab.socketA) else { return false }
      let phase = peer["stale_phase"] as? String
      return peer["state"] as? String == "Established" && (phase == nil || phase == "none")
        && (peer["routes_stale"] as? Int ?? 0) == 0
    }
    try lab.waitFor("b1 reachable from a1 after B's restart", timeout: 30) { lab.pings(from: "a1", to: "b1") }
    try lab.waitFor("b1's MAC at A and a1's at B from BGP again", timeout: 20) {
      _ = lab.pings(from: "b1", to: "a1")
      return try lab.fdbEntry(at: lab.socketA, mac: FaultLab.mac("b1"))?["origin"] as? String == "control"
        && lab.fdbEntry(at: lab.socketB, mac: FaultLab.mac("a1"))?["origin"] as? String == "control"
    }
    let remote = try lab.ping(from: "b1", to: "a1", count: 20, interval: 0.02)
    XCTAssertEqual(remote.received, 20, remote.output)
  }
}

/// The namespaces, files and processes of `FaultTests`. `stop` ends only the processes it
/// started (by PID) and deletes its namespaces and directory.
final class FaultLab {
  static let underlayMACA = "02:00:00:00:01:ff"
  static let underlayMACB = "02:00:00:00:02:ff"
  let prefix = "ft\(getpid() % 10000)"
  let directory: String
  var siteA: String { prefix + "-a" }
  var siteB: String { prefix + "-b" }
  var socketA: String { directory + "/a.sock" }
  var socketB: String { directory + "/b.sock" }
  var configA: String { directory + "/a.toml" }
  var configB: String { directory + "/b.toml" }
  let logA = "a.log"
  let logB = "b.log"
  private var namespaces: [String] = []
  private var daemonA: Process?
  private var daemonB: Process?
  private var streams: [Process] = []
  var pidA: pid_t { daemonA?.processIdentifier ?? -1 }

  static let vms: [(name: String, site: String, port: String, address: String)] = [
    ("a1", "a", "vm1", "192.168.77.1"), ("a2", "a", "vm2", "192.168.77.2"),
    ("a3", "a", "vm3", "192.168.77.3"),
    ("a4", "a", "vm4", "192.168.78.4"), ("a5", "a", "vm5", "192.168.78.5"),
    ("b1", "b", "vm1", "192.168.77.11"),
  ]
  static func mac(_ vm: String) -> String {
    let index = vms.firstIndex { $0.name == vm }! + 1
    return "02:00:00:00:0\(vm.hasPrefix("a") ? "a" : "b"):0\(index)"
  }
  static func address(_ vm: String) -> String { vms.first { $0.name == vm }!.address }
  func vmNamespace(_ vm: String) -> String { "\(prefix)-\(vm)" }

  init() throws {
    directory = NSTemporaryDirectory() + "vxswitch-\(prefix)"
    try? FileManager.default.removeItem(atPath: directory)
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    do {
      try build()
    } catch {
      stop()
      throw error
    }
  }

  func inNamespace(_ namespace: String, _ command: [String]) -> [String] {
    ["ip", "netns", "exec", namespace] + command
  }

  @discardableResult
  func inSite(_ site: String, _ command: [String]) throws -> String {
    try DaemonFixture.run(inNamespace(site, command))
  }

  private func build() throws {
    for namespace in [siteA, siteB] + Self.vms.map({ vmNamespace($0.name) }) {
      try DaemonFixture.run(["ip", "netns", "add", namespace])
      namespaces.append(namespace)
      try DaemonFixture.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    }
    try DaemonFixture.run([
      "ip", "-n", siteA, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", siteB,
    ])
    for (site, address, mac) in [
      (siteA, "10.0.0.1/24", Self.underlayMACA), (siteB, "10.0.0.2/24", Self.underlayMACB),
    ] {
      try DaemonFixture.run(["ip", "-n", site, "link", "set", "eth1", "address", mac])
      try DaemonFixture.run(["ip", "-n", site, "addr", "add", address, "dev", "eth1"])
      try DaemonFixture.run(["ip", "-n", site, "link", "set", "eth1", "up"])
    }
    for vm in Self.vms {
      let site = vm.site == "a" ? siteA : siteB
      let namespace = vmNamespace(vm.name)
      try DaemonFixture.run([
        "ip", "-n", site, "link", "add", vm.port, "type", "veth", "peer", "name", "eth0", "netns", namespace,
      ])
      try DaemonFixture.run(["ip", "-n", site, "link", "set", vm.port, "up"])
      try DaemonFixture.run(["ip", "-n", namespace, "link", "set", "eth0", "address", Self.mac(vm.name)])
      try DaemonFixture.run(["ip", "-n", namespace, "addr", "add", vm.address + "/24", "dev", "eth0"])
      try DaemonFixture.run(["ip", "-n", namespace, "link", "set", "eth0", "up"])
    }
    try writeConfigA(vm5InVNI200: false)
    try """
    [site]
    name = "\(prefix)-b"
    vtep = "10.0.0.2"
    underlay = "eth1"
    control_socket = "\(socketB)"

    [[bridge_domain]]
    vni = 100
    ports = ["vm1"]

    [bgp]
    asn = 65000
    router_id = "10.0.0.2"
    listen_port = 0

    [[bgp.peer]]
    address = "10.0.0.1"
    asn = 65000
    hold_time = 30

    """.write(toFile: configB, atomically: true, encoding: .utf8)
  }

  /// Site A's configuration: VNI 100 (a1-a3) never changes; a4 in VNI 200, and a5 either
  /// in VNI 300 or with a4 in VNI 200. B is a passive peer: B connects (at once when it
  /// starts again).
  func writeConfigA(vm5InVNI200: Bool) throws {
    let domains =
      vm5InVNI200
      ? """
      [[bridge_domain]]
      vni = 200
      ports = ["vm4", "vm5"]
      """
      : """
      [[bridge_domain]]
      vni = 200
      ports = ["vm4"]

      [[bridge_domain]]
      vni = 300
      ports = ["vm5"]
      """
    try """
    [site]
    name = "\(prefix)-a"
    vtep = "10.0.0.1"
    underlay = "eth1"
    control_socket = "\(socketA)"

    [[bridge_domain]]
    vni = 100
    ports = ["vm1", "vm2", "vm3"]

    \(domains)

    [bgp]
    asn = 65000
    router_id = "10.0.0.1"

    [[bgp.peer]]
    address = "10.0.0.2"
    asn = 65000
    hold_time = 30
    passive = true

    """.write(toFile: configA, atomically: true, encoding: .utf8)
  }

  func start() throws {
    daemonA = try startDaemon(site: siteA, config: configA, socket: socketA, log: logA)
    try startSiteB()
  }

  func startSiteB() throws {
    daemonB = try startDaemon(site: siteB, config: configB, socket: socketB, log: logB)
  }

  /// Where site B's daemon keeps its restart record (next to its state file).
  var restartRecordB: String { directory + "/\(siteB).restart.json" }

  /// SIGTERM, by PID, as for an upgrade; waits until it exited.
  func terminateSiteB() throws {
    guard let daemonB, daemonB.isRunning else { return }
    kill(daemonB.processIdentifier, SIGTERM)
    daemonB.waitUntilExit()
  }

  /// SIGKILL, by PID: no Cease, no cleanup, as a crash; the stale socket file goes.
  func killSiteB() throws {
    guard let daemonB, daemonB.isRunning else { return }
    kill(daemonB.processIdentifier, SIGKILL)
    daemonB.waitUntilExit()
    try? FileManager.default.removeItem(atPath: socketB)
  }

  private func startDaemon(site: String, config: String, socket: String, log: String) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["ip", "netns", "exec", site, LabTests.binary.path, "run", "--config", config]
    if !FileManager.default.fileExists(atPath: directory + "/" + log) {
      FileManager.default.createFile(atPath: directory + "/" + log, contents: nil)
    }
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/" + log))
    handle.seekToEndOfFile()
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    try waitFor("\(site)'s control socket", timeout: 20) {
      guard process.isRunning else { throw FaultError("\(site)'s daemon exited:\n\(self.log(log))") }
      return FileManager.default.fileExists(atPath: socket)
    }
    return process
  }

  /// The session is up, every VM has been heard (learnt) and reaches its peers.
  func converge() throws {
    try waitFor("the BGP session between the sites", timeout: 30) {
      try self.peer(at: self.socketA)?["state"] as? String == "Established"
    }
    for (from, to) in [("a1", "a2"), ("a1", "a3"), ("a2", "a3")] {
      try waitFor("\(from) reaching \(to)", timeout: 10) { self.pings(from: from, to: to) }
    }
    try waitFor("a1 reaching b1 across the sites", timeout: 30) { self.pings(from: "a1", to: "b1") }
    for vm in ["a4", "a5"] {
      // Heard by the switch (learnt in their own VNIs), so that later checks start warm.
      _ = try? DaemonFixture.run(
        inNamespace(
          vmNamespace(vm), ["ping", "-c", "1", "-W", "1", vm == "a4" ? "192.168.78.5" : "192.168.78.4"]),
        check: false)
    }
  }

  func stop() {
    for process in streams where process.isRunning {
      process.interrupt()
      process.waitUntilExit()
    }
    for process in [daemonA, daemonB].compactMap({ $0 }) where process.isRunning {
      process.terminate()
      process.waitUntilExit()
    }
    for namespace in namespaces { _ = try? DaemonFixture.run(["ip", "netns", "del", namespace]) }
    namespaces = []
    try? FileManager.default.removeItem(atPath: directory)
  }

  func log(_ name: String) -> String {
    (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
  }

  // MARK: Traffic

  /// One ping, one second at most.
  func pings(from: String, to: String) -> Bool {
    (try? DaemonFixture.run(
      inNamespace(vmNamespace(from), ["ping", "-c", "1", "-W", "1", "-q", Self.address(to)]))) != nil
  }

  func ping(from: String, to: String, count: Int, interval: Double) throws -> (received: Int, output: String)
  {
    let output = try DaemonFixture.run(
      inNamespace(
        vmNamespace(from),
        ["ping", "-c", "\(count)", "-i", "\(interval)", "-W", "2", "-q", Self.address(to)]),
      check: false)
    return (Self.pingCount(output, "received"), output)
  }

  static func pingCount(_ output: String, _ label: String) -> Int {
    guard let line = output.split(separator: "\n").first(where: { $0.contains("packets transmitted") })
    else { return -1 }
    for part in line.split(separator: ",") where part.contains(label) {
      return Int(part.split(separator: " ").first ?? "") ?? -1
    }
    return -1
  }

  /// An echo every 10 ms, numbered by ping, until `stopStream`.
  func startStream(from: String, to: String) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = inNamespace(vmNamespace(from), ["ping", "-i", "0.01", "-q", Self.address(to)])
    let output = directory + "/stream-\(streams.count).txt"
    FileManager.default.createFile(atPath: output, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    streams.append(process)
    return process
  }

  /// SIGINT (ping prints its summary), by PID; returns what it printed.
  func stopStream(_ process: Process) -> String {
    let index = streams.firstIndex { $0 === process } ?? 0
    process.interrupt()
    process.waitUntilExit()
    return log("stream-\(index).txt")
  }

  /// An `Icmp:` counter of /proc/net/snmp in a VM's namespace (what it received).
  func icmpCounter(in vm: String, _ name: String) throws -> Int {
    let text = try DaemonFixture.run(inNamespace(vmNamespace(vm), ["cat", "/proc/net/snmp"]))
    let lines = text.split(separator: "\n").filter { $0.hasPrefix("Icmp:") }
    guard lines.count >= 2, let column = lines[0].split(separator: " ").firstIndex(of: Substring(name)) else {
      throw FaultError("no Icmp \(name) in /proc/net/snmp:\n\(text)")
    }
    return Int(lines[1].split(separator: " ")[column]) ?? -1
  }

  // MARK: API

  func api(_ socket: String, _ method: String, _ path: String) throws -> [String: Any] {
    let text = try DaemonFixture.run([
      "curl", "-sS", "--fail-with-body", "--max-time", "5", "--unix-socket", socket, "-X", method,
      "http://localhost\(path)",
    ])
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
      throw FaultError("\(method) \(path): not a JSON object: \(text)")
    }
    return object
  }

  func port(_ name: String) throws -> [String: Any]? {
    (try api(socketA, "GET", "/v1/ports")["ports"] as? [[String: Any]])?.first {
      $0["name"] as? String == name
    }
  }

  /// Failed transmit kicks on a port of site A (its ring statistics).
  func transmitErrors(_ name: String) throws -> Int {
    guard let ring = try port(name)?["ring"] as? [String: Any], let errors = ring["transmit_errors"] as? Int
    else {
      throw FaultError("no ring statistics for \(name): \(try port(name) ?? [:])")
    }
    return errors
  }

  func peer(at socket: String) throws -> [String: Any]? {
    (try api(socket, "GET", "/v1/bgp")["peers"] as? [[String: Any]])?.first
  }

  func fdbEntry(at socket: String, mac: String) throws -> [String: Any]? {
    (try api(socket, "GET", "/v1/fdb?mac=\(mac)")["entries"] as? [[String: Any]])?.first
  }

  // MARK: Resources

  struct Resources: CustomStringConvertible {
    var descriptors: Int
    var sockets: Int
    var threads: Int
    var description: String { "\(descriptors) fds (\(sockets) sockets), \(threads) threads" }
  }

  /// Site A's daemon's open descriptors, sockets among them, and threads.
  func resources() throws -> Resources {
    let pid = pidA
    let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
    let sockets = fds.filter {
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)"))?.hasPrefix(
        "socket:")
        == true
    }
    let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
    return Resources(descriptors: fds.count, sockets: sockets.count, threads: threads.count)
  }

  /// Threads the daemon may hold above its settled count: idle worker threads of the
  /// Swift concurrency and Dispatch pools (one per core on this machine's 2 cores), which
  /// the runtime starts on demand and ends on its own schedule.
  static let threadSlack = 2

  /// The resources once they stop changing (the same three readings 0.5 s apart); with
  /// `near`, once they are back to it (descriptors and sockets exactly, threads within
  /// `threadSlack`).
  func settledResources(near baseline: Resources?) throws -> Resources {
    var readings: [Resources] = []
    var last = try resources()
    try waitFor(
      "site A's descriptors and threads to settle (last \(last), baseline \(baseline?.description ?? "none"))",
      timeout: 15
    ) {
      last = try self.resources()
      readings.append(last)
      if let baseline {
        return last.descriptors == baseline.descriptors && last.sockets == baseline.sockets
          && last.threads <= baseline.threads + Self.threadSlack
      }
      let recent = readings.suffix(6)
      return recent.count == 6
        && recent.allSatisfy {
          $0.descriptors == last.descriptors && $0.sockets == last.sockets && $0.threads == last.threads
        }
    }
    return last
  }

  func expectNoLeaks(
    _ baseline: Resources, after fault: String, file: StaticString = #filePath, line: UInt = #line
  )
    throws
  {
    XCTAssertTrue(
      daemonA?.isRunning == true, "site A's daemon exited after \(fault):\n\(log(logA))", file: file,
      line: line)
    do {
      let now = try settledResources(near: baseline)
      print("FaultTests: after \(fault): \(now) (baseline \(baseline))")
    } catch {
      XCTFail("after \(fault): \(error)", file: file, line: line)
    }
    let extra = LabTests.namespaces().filter { $0.hasPrefix(prefix + "-") && !namespaces.contains($0) }
    XCTAssertEqual(extra, [], "namespaces left by \(fault)", file: file, line: line)
  }

  /// Polls `condition` until it holds or `timeout` passes (an external process's state has
  /// no event to wait on); the error names what was awaited.
  func waitFor(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    var lastError: Error?
    while true {
      do {
        if try condition() { return }
      } catch let error as FaultError {
        throw error
      } catch {
        lastError = error
      }
      if Date() > deadline {
        throw FaultError(
          "timed out waiting for \(what)\(lastError.map { " (last error: \($0))" } ?? "")\nsite A:\n\(log(logA).suffix(3000))\nsite B:\n\(log(logB).suffix(2000))"
        )
      }
      usleep(100_000)
    }
  }
}

struct FaultError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}
