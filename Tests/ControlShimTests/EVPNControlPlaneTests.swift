import API
import Dataplane
import Foundation
import Management
import XCTest

@testable import ControlShim

/// The glue end to end, in process: an `OfflineSwitch` (the real `SwitchCore` and
/// pipeline on in-memory ports) + `EVPNControlPlane`, iBGP to a real gobgpd on 127.0.0.1.
/// Routes added with the gobgp CLI program the FDB and flood list and traffic follows
/// them; MACs learnt by forwarding frames show up in gobgpd's RIB and leave it when they
/// age out.
final class EVPNControlPlaneTests: XCTestCase {
  private var daemon: GoBGPDaemon?
  private var controlPlane: EVPNControlPlane?

  static let localVTEP = ip("10.0.0.1")
  static let remoteVTEP = ip("10.0.0.9")
  static let remoteNextHopMAC = mac("02:00:00:00:99:99")
  static let vm1Host = mac("02:aa:00:00:00:01")
  static let vm2Host = mac("02:aa:00:00:00:02")

  override func tearDown() async throws {
    if let controlPlane { await controlPlane.shutdown() }
    if let daemon {
      daemon.stop()
      if testRun?.hasSucceeded == false { print("gobgpd log:\n" + daemon.log.suffix(4000)) }
      daemon.removeFiles()
    }
  }

  /// gobgpd on its own port, and a switch whose `[bgp]` peers with it.
  private func start(
    staleTime: Int = 300, configure: (inout SiteConfig) -> Void = { _ in }
  ) async throws -> (GoBGPDaemon, OfflineSwitch, EVPNControlPlane) {
    let ourPort = freeTCPPort()
    let daemon = try GoBGPDaemon(
      asn: 65000, routerID: "9.9.9.9",
      neighbors: """
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "127.0.0.1"
            peer-as = 65000
          [neighbors.transport.config]
            remote-port = \(ourPort)
          [neighbors.timers.config]
            connect-retry = 1
            hold-time = 9
            keepalive-interval = 3
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "l2vpn-evpn"
        """)
    self.daemon = daemon
    var site = SiteConfig.Site(name: "evpn", vtep: Self.localVTEP, underlay: "eth1")
    site.underlayMAC = mac("02:00:00:00:00:01")
    site.fdbCapacity = 1 << 12
    site.agingTime = 300
    var config = SiteConfig(site: site)
    config.neighbors = [.init(ip: Self.remoteVTEP, mac: Self.remoteNextHopMAC)]
    var domain = SiteConfig.BridgeDomain(vni: 100)
    domain.ports = [.init(interface: "vm1"), .init(interface: "vm2")]
    config.bridgeDomains = [domain]
    var bgp = SiteConfig.BGP(asn: 65000, routerID: ip("1.1.1.1"))
    bgp.listenPort = ourPort
    bgp.staleTime = staleTime
    var peer = SiteConfig.BGP.Peer(address: ip("127.0.0.1"), asn: 65000)
    peer.port = daemon.bgpPort
    peer.holdTime = 9
    bgp.peers = [peer]
    config.bgp = bgp
    configure(&config)

    let offline = OfflineSwitch(config: config)
    var options = EVPNControlPlane.Options()
    options.listenAddress = "127.0.0.1"
    options.connectRetryTime = 0.2
    options.connectRetryMaximum = 2
    let controlPlane = try XCTUnwrap(EVPNControlPlane(core: offline.core, options: options))
    self.controlPlane = controlPlane
    try await controlPlane.start()
    try await eventually("session with gobgpd", timeout: 30) { self.sessionState() == .established }
    return (daemon, offline, controlPlane)
  }

  private func sessionState() -> SessionState? { controlPlane?.status()?.peers.first?.state }

  /// Polls `condition` (the core and gobgpd are changed by other threads and processes).
  private func eventually(
    _ what: String, timeout: Double = 15, file: StaticString = #filePath, line: UInt = #line,
    _ condition: () -> Bool
  ) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
      if Date() > deadline {
        XCTFail("timed out waiting for \(what)", file: file, line: line)
        throw CancellationError()
      }
      try await Task.sleep(nanoseconds: 20_000_000)
    }
  }

  private func row(_ core: SwitchCore, _ address: MACAddress) -> FDBRow? {
    core.fdbRows(vni: 100, now: 1, annotator: controlPlane?.sink).first { $0.mac == address.description }
  }

  private func ping(from source: MACAddress, to destination: MACAddress) -> [UInt8] {
    FrameBuilder.icmpEchoFrame(
      link: .init(destination: destination, source: source), source: ip("192.168.1.1"),
      destination: ip("192.168.1.2"), kind: .request, identifier: 7, sequenceNumber: 1,
      payload: Array(repeating: 0x5A, count: 18))
  }

  /// (outer destination, VNI) of VXLAN frames sent on the underlay.
  private func encapsulations(_ frames: [[UInt8]]) -> [(IPAddress, UInt32)] {
    frames.compactMap { frame in
      guard frame.count > 50, frame[12] == 0x08, frame[13] == 0x00 else { return nil }
      let destination = frame[30..<34].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
      let vni = UInt32(frame[46]) << 16 | UInt32(frame[47]) << 8 | UInt32(frame[48])
      return (.v4(destination), vni)
    }
  }

  private func paths(_ rib: [String: [[String: Any]]], mac: String) -> [[String: Any]] {
    rib.filter { $0.key.contains("[mac:\(mac)]") }.flatMap(\.value)
  }

  private func attribute(_ path: [String: Any], type: Int) -> [String: Any]? {
    (path["attrs"] as? [[String: Any]])?.first { ($0["type"] as? Int) == type }
  }

  /// RD router-id:1, label 100 (the VNI), next hop the site's VTEP, RT 65000:100 and the
  /// VXLAN encapsulation community (tunnel type 8): what this site's routes must carry.
  func assertAdvertisedBySite(
    _ path: [String: Any], nlri: [String: Any], file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let rd = try XCTUnwrap(nlri["rd"] as? [String: Any], file: file, line: line)
    XCTAssertEqual(rd["admin"] as? String, "1.1.1.1", file: file, line: line)
    XCTAssertEqual(rd["assigned"] as? Int, 1, file: file, line: line)
    XCTAssertEqual(nlri["labels"] as? [Int], [100], file: file, line: line)
    XCTAssertEqual(attribute(path, type: 14)?["nexthop"] as? String, "10.0.0.1", file: file, line: line)
    let communities = extendedCommunities(path)
    XCTAssertTrue(
      communities.contains { ($0["subtype"] as? Int) == 2 && ($0["value"] as? String) == "65000:100" },
      "\(communities)", file: file, line: line)
    XCTAssertTrue(
      communities.contains { ($0["subtype"] as? Int) == 12 && ($0["tunnel_type"] as? Int) == 8 },
      "\(communities)", file: file, line: line)
  }

  private func extendedCommunities(_ path: [String: Any]) -> [[String: Any]] {
    attribute(path, type: 16)?["value"] as? [[String: Any]] ?? []
  }

  func testRemoteRoutesProgramTheFDBAndFloodListAndTrafficFollowsThem() async throws {
    let (daemon, offline, _) = try await start()
    let core = offline.core
    let remote = mac("02:00:00:00:00:aa")
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:aa 10.1.1.1 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    XCTAssertEqual(
      daemon.evpn(
        "add multicast 10.0.0.9 etag 0 rd 9.9.9.9:1 rt 65000:100 encap vxlan pmsi ingress-repl 100 10.0.0.9"
      ).status, 0)
    try await eventually("type-2 route in the FDB") { self.row(core, remote) != nil }
    try await eventually("type-3 route in the flood list") {
      core.bridgeDomainRows().first?.flood == ["10.0.0.9"]
    }
    let entry = try XCTUnwrap(row(core, remote))
    XCTAssertEqual(entry.origin, "control")
    XCTAssertEqual(entry.vtep, "10.0.0.9")
    XCTAssertEqual(entry.peer, "127.0.0.1")
    XCTAssertEqual(entry.sequence, 0)
    XCTAssertNil(entry.ageSeconds)
    // The management service (what GET /v1/fdb and /v1/bgp answer) carries the same annotation.
    let service = SiteService(core: core, controlPlane: controlPlane, clock: { 1 })
    let reply = String(decoding: try APICoding.encoder.encode(service.fdb(FDBQuery())), as: UTF8.self)
    XCTAssertTrue(reply.contains("\"peer\":\"127.0.0.1\""), reply)
    let bgp = String(decoding: try APICoding.encoder.encode(try await service.bgp()), as: UTF8.self)
    XCTAssertTrue(bgp.contains("\"state\":\"Established\""), bgp)
    XCTAssertTrue(bgp.contains("\"routes_accepted\":2"), bgp)

    // Known unicast to the remote MAC goes to the route's next hop, in VNI 100.
    offline.forward(interface: "vm1", frames: [ping(from: Self.vm1Host, to: remote)])
    let unicast = encapsulations(offline.takeOutput("eth1"))
    XCTAssertEqual(unicast.map(\.0), [Self.remoteVTEP])
    XCTAssertEqual(unicast.map(\.1), [100])
    XCTAssertTrue(offline.takeOutput("vm2").isEmpty, "known unicast is not flooded")
    // Broadcast follows the type-3 flood list (and the other local port).
    offline.forward(interface: "vm1", frames: [ping(from: Self.vm1Host, to: .broadcast)])
    XCTAssertEqual(encapsulations(offline.takeOutput("eth1")).map(\.0), [Self.remoteVTEP])
    XCTAssertEqual(offline.takeOutput("vm2").count, 1)

    // Withdrawals remove both.
    XCTAssertEqual(
      daemon.evpn("del macadv 02:00:00:00:00:aa 10.1.1.1 etag 0 label 100 rd 9.9.9.9:1").status, 0)
    XCTAssertEqual(daemon.evpn("del multicast 10.0.0.9 etag 0 rd 9.9.9.9:1").status, 0)
    try await eventually("withdrawn type-2 leaves the FDB") { self.row(core, remote) == nil }
    try await eventually("withdrawn type-3 leaves the flood list") {
      core.bridgeDomainRows().first?.flood == []
    }
  }

  func testMACIPRouteMakesTheSwitchAnswerARPLocally() async throws {
    let (daemon, offline, _) = try await start { $0.bridgeDomains[0].arpSuppression = true }
    let core = offline.core
    let remote = mac("02:00:00:00:00:ab")
    let request = FrameBuilder.arpRequestFrame(
      senderMAC: Self.vm1Host, senderIP: ip("10.1.1.5"), targetIP: ip("10.1.1.2"))
    // Before the route: flooded to the other port.
    offline.forward(interface: "vm1", frames: [request])
    XCTAssertEqual(offline.takeOutput("vm2"), [request])
    XCTAssertEqual(offline.takeOutput("vm1"), [])

    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:ab 10.1.1.2 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    try await eventually("MAC/IP route in the ARP table") {
      core.arpBinding(vni: 100, ip: ip("10.1.1.2")) == remote
    }
    offline.forward(interface: "vm1", frames: [request])
    XCTAssertEqual(
      offline.takeOutput("vm1"),
      [
        FrameBuilder.arpReplyFrame(
          senderMAC: remote, senderIP: ip("10.1.1.2"), targetMAC: Self.vm1Host, targetIP: ip("10.1.1.5"))
      ])
    XCTAssertEqual(offline.takeOutput("vm2"), [], "answered, not flooded")
    XCTAssertEqual(offline.takeOutput("eth1"), [])
    XCTAssertEqual(core.statisticsReport().arpSuppressed, 1)

    // Withdrawn: flooded again.
    XCTAssertEqual(
      daemon.evpn("del macadv 02:00:00:00:00:ab 10.1.1.2 etag 0 label 100 rd 9.9.9.9:1").status, 0)
    try await eventually("withdrawn MAC/IP route leaves the ARP table") {
      core.arpBinding(vni: 100, ip: ip("10.1.1.2")) == nil
    }
    offline.forward(interface: "vm1", frames: [request])
    XCTAssertEqual(offline.takeOutput("vm2"), [request])
    XCTAssertEqual(offline.takeOutput("vm1"), [])
  }

  func testLocallyLearntMACIsAdvertisedAndWithdrawnWhenItAgesOut() async throws {
    let (daemon, offline, _) = try await start()
    // Our type-3 route is there from the start.
    XCTAssertTrue(
      daemon.waitForRIB {
        $0.keys.contains { $0.contains("[type:multicast]") && $0.contains("[ip:10.0.0.1]") }
      })
    offline.forward(interface: "vm1", frames: [ping(from: Self.vm1Host, to: .broadcast)], now: 10)
    XCTAssertEqual(row(offline.core, Self.vm1Host)?.origin, "local")
    XCTAssertTrue(
      daemon.waitForRIB { !self.paths($0, mac: "02:aa:00:00:00:01").isEmpty }, daemon.evpn("-j").output)
    let ours = try XCTUnwrap(paths(daemon.evpnRIB(), mac: "02:aa:00:00:00:01").first)
    let nlri = try XCTUnwrap((ours["nlri"] as? [String: Any])?["value"] as? [String: Any])
    try assertAdvertisedBySite(ours, nlri: nlri)

    // vm2's host keeps talking, vm1's falls silent past aging_time: withdrawn.
    offline.forward(interface: "vm2", frames: [ping(from: Self.vm2Host, to: .broadcast)], now: 200)
    XCTAssertTrue(daemon.waitForRIB { !self.paths($0, mac: "02:aa:00:00:00:02").isEmpty })
    offline.forward(interface: "vm2", frames: [ping(from: Self.vm2Host, to: .broadcast)], now: 400)
    XCTAssertNil(row(offline.core, Self.vm1Host))
    XCTAssertTrue(
      daemon.waitForRIB { self.paths($0, mac: "02:aa:00:00:00:01").isEmpty }, "aged MAC not withdrawn")
    XCTAssertFalse(paths(daemon.evpnRIB(), mac: "02:aa:00:00:00:02").isEmpty)
  }

  func testMACMovingFromARemoteVTEPToALocalPortIsAdvertisedWithAHigherSequence() async throws {
    let (daemon, offline, _) = try await start()
    let moving = mac("02:00:00:00:00:cc")
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:cc 0.0.0.0 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    try await eventually("remote MAC installed") { self.row(offline.core, moving)?.vtep == "10.0.0.9" }
    // The host shows up on vm2: local learning takes the entry over, we advertise it
    // with sequence 1 and gobgpd drops its own (RFC 7432 section 15).
    offline.forward(interface: "vm2", frames: [ping(from: moving, to: .broadcast)], now: 5)
    XCTAssertEqual(row(offline.core, moving)?.port, "vm2")
    XCTAssertTrue(
      daemon.waitForRIB { rib in
        self.paths(rib, mac: "02:00:00:00:00:cc").contains { path in
          (self.attribute(path, type: 14)?["nexthop"] as? String) == "10.0.0.1"
            && self.extendedCommunities(path).contains {
              ($0["type"] as? Int) == 6 && ($0["sequence"] as? Int) == 1
            }
        }
      }, daemon.evpn("-j").output)
    XCTAssertEqual(
      row(offline.core, moving)?.origin, "local", "the withdrawn remote route does not remove the local entry"
    )
  }

  func testSessionLossKeepsForwardingStateAndLocalSwitching() async throws {
    let (daemon, offline, _) = try await start(staleTime: 60)
    let remote = mac("02:00:00:00:00:d1")
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:d1 0.0.0.0 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    XCTAssertEqual(
      daemon.evpn(
        "add multicast 10.0.0.9 etag 0 rd 9.9.9.9:1 rt 65000:100 encap vxlan pmsi ingress-repl 100 10.0.0.9"
      ).status, 0)
    try await eventually("routes installed") {
      self.row(offline.core, remote) != nil && offline.core.bridgeDomainRows().first?.flood == ["10.0.0.9"]
    }
    offline.forward(interface: "vm2", frames: [ping(from: Self.vm2Host, to: .broadcast)], now: 2)
    for port in ["eth1", "vm1", "vm2"] { _ = offline.takeOutput(port) }

    daemon.stop()
    try await eventually("session down") { self.sessionState() != .established }
    try await eventually("routes counted stale") {
      (self.controlPlane?.status()?.peers.first?.routesStale ?? 0) == 2
    }
    XCTAssertEqual(row(offline.core, remote)?.vtep, "10.0.0.9", "stale route stays installed")
    XCTAssertEqual(offline.core.bridgeDomainRows().first?.flood, ["10.0.0.9"])
    // Remote and local forwarding go on.
    offline.forward(interface: "vm1", frames: [ping(from: Self.vm1Host, to: remote)], now: 3)
    XCTAssertEqual(encapsulations(offline.takeOutput("eth1")).map(\.0), [Self.remoteVTEP])
    _ = offline.takeOutput("vm1")
    offline.forward(interface: "vm1", frames: [ping(from: Self.vm1Host, to: Self.vm2Host)], now: 3)
    XCTAssertEqual(offline.takeOutput("vm2").count, 1)
    XCTAssertTrue(offline.takeOutput("eth1").isEmpty)
  }

  /// SIGHUP path: a bridge domain added to the configuration gets its type-3 route and
  /// imports routes the peer sent before (ROUTE-REFRESH); a removed one is withdrawn.
  func testReloadAdvertisesAddedAndWithdrawsRemovedBridgeDomains() async throws {
    let (daemon, offline, controlPlane) = try await start()
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:02:aa 0.0.0.0 etag 0 label 200 rd 9.9.9.9:2 rt 65000:200 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    offline.forward(interface: "vm1", frames: [ping(from: Self.vm1Host, to: .broadcast)], now: 2)
    XCTAssertTrue(daemon.waitForRIB { !self.paths($0, mac: "02:aa:00:00:00:01").isEmpty })
    try await eventually("the VNI 200 route is counted, not installed") {
      (controlPlane.status()?.peers.first?.routesIgnored ?? 0) >= 1
    }

    var next = offline.core.config
    next.bridgeDomains[0].vni = 200
    offline.core.reload(next)
    controlPlane.reload(next)
    XCTAssertTrue(
      daemon.waitForRIB { rib in
        rib.keys.contains { $0.contains("[type:multicast][rd:1.1.1.1:2]") }
          && !rib.keys.contains { $0.contains("[type:multicast][rd:1.1.1.1:1]") }
          && self.paths(rib, mac: "02:aa:00:00:00:01").isEmpty
      }, daemon.evpn("-j").output)
    try await eventually("the VNI 200 route imported after ROUTE-REFRESH") {
      offline.core.fdbRows(vni: 200, now: 1).contains {
        $0.mac == "02:00:00:00:02:aa" && $0.vtep == "10.0.0.9"
      }
    }
  }

  /// Issue 5: IPv4 bindings learnt from local ARP go out as MAC/IP routes (RFC 7432
  /// section 7.2) next to the MAC-only route, with the same RD, RT, label and
  /// encapsulation, and leave gobgpd's RIB when the binding changes or ages out.
  func testLocalARPBindingIsAdvertisedAsAMACIPRouteAndWithdrawnWhenItGoes() async throws {
    let (daemon, offline, controlPlane) = try await start { $0.bridgeDomains[0].arpSuppression = true }
    let hostIP = "10.1.1.5"
    func announce(_ host: MACAddress, on port: String, now: UInt32) {
      offline.forward(
        interface: port,
        frames: [
          FrameBuilder.arpRequestFrame(senderMAC: host, senderIP: ip(hostIP), targetIP: ip("10.1.1.99"))
        ],
        now: now)
      for name in ["eth1", "vm1", "vm2"] { _ = offline.takeOutput(name) }
    }
    func macIP(_ rib: [String: [[String: Any]]], mac: String) -> [[String: Any]] {
      rib.filter { $0.key.contains("[mac:\(mac)]") && $0.key.contains("[ip:\(hostIP)]") }.flatMap(\.value)
    }
    announce(Self.vm1Host, on: "vm1", now: 10)
    XCTAssertEqual(offline.core.arpBinding(vni: 100, ip: ip(hostIP)), Self.vm1Host)
    XCTAssertTrue(
      daemon.waitForRIB { !macIP($0, mac: "02:aa:00:00:00:01").isEmpty }, daemon.evpn("-j").output)
    let rib = daemon.evpnRIB()
    let ours = try XCTUnwrap(macIP(rib, mac: "02:aa:00:00:00:01").first)
    let nlri = try XCTUnwrap((ours["nlri"] as? [String: Any])?["value"] as? [String: Any])
    XCTAssertEqual(nlri["ip"] as? String, hostIP)
    XCTAssertEqual(nlri["mac"] as? String, "02:aa:00:00:00:01")
    try assertAdvertisedBySite(ours, nlri: nlri)
    // The MAC-only route stays next to it (as FRR does).
    XCTAssertEqual(paths(rib, mac: "02:aa:00:00:00:01").count, 2, "\(rib.keys.sorted())")

    // show arp through the management service: the local binding with its MAC's age.
    let service = SiteService(core: offline.core, controlPlane: controlPlane, clock: { 15 })
    let arp = ["entries": service.arp(vni: 100)]
    let binding = try XCTUnwrap(arp["entries"]?.first)
    XCTAssertEqual(arp["entries"]?.count, 1)
    XCTAssertEqual(
      [binding.ip, binding.mac, binding.origin], [hostIP, "02:aa:00:00:00:01", "local"])
    XCTAssertEqual(binding.ageSeconds, 5)
    XCTAssertNil(binding.peer)

    // The IP moves to vm2's host: the old MAC/IP route goes, the new one comes; the old
    // MAC-only route stays (the MAC is still there).
    announce(Self.vm2Host, on: "vm2", now: 20)
    XCTAssertTrue(
      daemon.waitForRIB {
        macIP($0, mac: "02:aa:00:00:00:01").isEmpty && !macIP($0, mac: "02:aa:00:00:00:02").isEmpty
      }, daemon.evpn("-j").output)
    XCTAssertEqual(paths(daemon.evpnRIB(), mac: "02:aa:00:00:00:01").count, 1)

    // vm2's host falls silent past aging_time (300 s): its MAC and MAC/IP routes go.
    offline.forward(interface: "vm1", frames: [ping(from: Self.vm1Host, to: .broadcast)], now: 200)
    offline.forward(interface: "vm1", frames: [ping(from: Self.vm1Host, to: .broadcast)], now: 400)
    XCTAssertNil(offline.core.arpBinding(vni: 100, ip: ip(hostIP)))
    XCTAssertTrue(
      daemon.waitForRIB { self.paths($0, mac: "02:aa:00:00:00:02").isEmpty }, daemon.evpn("-j").output)
    XCTAssertEqual(paths(daemon.evpnRIB(), mac: "02:aa:00:00:00:01").count, 1)
  }
}

func snakeCaseDecoder() -> JSONDecoder {
  let decoder = JSONDecoder()
  decoder.keyDecodingStrategy = .convertFromSnakeCase
  return decoder
}
