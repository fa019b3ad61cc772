import Dataplane
import Foundation
import Synchronization
import XCTest

@testable import ControlShim

/// Inter-site sessions brought up on demand: sites without `[bgp]` run the speaker from
/// `PeeringDefaults` (AS 64512, router ID = VTEP, nothing exported by default) over
/// `OfflineSwitch` cores, on their own loopback addresses (127.0.10.N). Peers are added
/// and removed at run time with per-peer export filters; what reaches the other site is
/// read from its FDB (entries of origin control) and flood lists.
final class DynamicPeerTests: XCTestCase {
  /// One site: its switch, its control plane and where it listens.
  struct Site {
    let name: String
    let offline: OfflineSwitch
    let controlPlane: EVPNControlPlane
    /// Loopback address the speaker listens on and connects from.
    let address: String
    let port: UInt16
    var vtep: String { offline.core.config.site.vtep.description }
    var core: SwitchCore { offline.core }
  }

  private var sites: [Site] = []
  private var daemon: GoBGPDaemon?

  override func tearDown() async throws {
    for site in sites { await site.controlPlane.shutdown() }
    sites = []
    if let daemon {
      daemon.stop()
      if testRun?.hasSucceeded == false { print("gobgpd log:\n" + daemon.log.suffix(4000)) }
      daemon.removeFiles()
    }
  }

  static let host100 = mac("02:0a:00:00:01:00")
  static let host200 = mac("02:0a:00:00:02:00")

  /// Bridge domains 100 (port vm1) and 200 (port vm2), no `[bgp]`.
  private func siteConfig(_ number: Int, configure: (inout SiteConfig) -> Void = { _ in }) -> SiteConfig {
    var site = SiteConfig.Site(name: "site\(number)", vtep: ip("10.0.0.\(number)"), underlay: "eth1")
    site.underlayMAC = mac("02:00:00:00:00:0\(number)")
    site.fdbCapacity = 1 << 12
    var config = SiteConfig(site: site)
    var domain100 = SiteConfig.BridgeDomain(vni: 100)
    domain100.ports = [.init(interface: "vm1")]
    var domain200 = SiteConfig.BridgeDomain(vni: 200)
    domain200.ports = [.init(interface: "vm2")]
    config.bridgeDomains = [domain100, domain200]
    configure(&config)
    return config
  }

  /// Site N listens on 127.0.10.N (a free port) with the peering defaults, and has
  /// learnt one host in each VNI: 02:0N:00:00:01:00 on vm1 and 02:0N:00:00:02:00 on vm2.
  private func startSite(
    _ number: Int, address: String? = nil, configure: (inout SiteConfig) -> Void = { _ in }
  ) async throws -> Site {
    let config = siteConfig(number, configure: configure)
    XCTAssertNil(config.bgp)
    let offline = OfflineSwitch(config: config)
    for (port, host) in [("vm1", hostMAC(number, vni: 100)), ("vm2", hostMAC(number, vni: 200))] {
      offline.forward(interface: port, frames: [broadcast(from: host)], now: 1)
    }
    let address = address ?? "127.0.10.\(number)"
    var options = EVPNControlPlane.Options()
    options.listenAddress = address
    options.connectRetryTime = 0.05
    options.connectRetryMaximum = 0.5
    var defaults = EVPNControlPlane.PeeringDefaults()
    defaults.listenPort = 0
    let controlPlane = try XCTUnwrap(
      EVPNControlPlane(core: offline.core, options: options, defaults: defaults))
    try await controlPlane.start()
    let listening = await controlPlane.listeningPort
    let port = try XCTUnwrap(listening)
    let site = Site(
      name: "site\(number)", offline: offline, controlPlane: controlPlane, address: address, port: port)
    sites.append(site)
    return site
  }

  private func hostMAC(_ site: Int, vni: UInt32) -> MACAddress {
    mac(String(format: "02:%02x:00:00:%02x:00", site, vni / 100))
  }

  private func broadcast(from source: MACAddress) -> [UInt8] {
    FrameBuilder.icmpEchoFrame(
      link: .init(destination: .broadcast, source: source), source: ip("192.168.1.1"),
      destination: ip("192.168.1.2"), kind: .request, identifier: 7, sequenceNumber: 1,
      payload: Array(repeating: 0x5A, count: 18))
  }

  /// `site`'s peer configuration for `other`: named after it, at its address and port,
  /// connecting from `site`'s own address.
  private func peer(
    _ site: Site, to other: Site, exportVNIs: Set<UInt32>?, password: String? = nil, passive: Bool = false
  ) -> PeerConfiguration {
    var peer = PeerConfiguration(
      name: other.name, address: other.address, port: other.port,
      remoteAS: EVPNControlPlane.PeeringDefaults.defaultASN, passive: passive, password: password,
      holdTime: 9, exportVNIs: exportVNIs, localAddress: site.address)
    peer.staleRoutePolicy = .gracefulRestartOnly
    return peer
  }

  /// MACs `site` holds behind `vtep` (origin control), by VNI.
  private func remoteMACs(_ site: Site, from vtep: String) -> [UInt32: Set<String>] {
    var result: [UInt32: Set<String>] = [:]
    for row in site.core.fdbRows(now: 1) where row.origin == "control" && row.vtep == vtep {
      result[row.vni, default: []].insert(row.mac)
    }
    return result
  }

  /// VNIs whose flood list at `site` holds `vtep`.
  private func floodVNIs(_ site: Site, with vtep: String) -> Set<UInt32> {
    Set(site.core.bridgeDomainRows().filter { $0.flood.contains(vtep) }.map(\.vni))
  }

  private func peerStatus(_ site: Site, _ name: String) -> PeerStatus? {
    site.controlPlane.status()?.peers.first { $0.name == name }
  }

  private func established(_ site: Site, _ name: String) -> Bool {
    peerStatus(site, name)?.state == .established
  }

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

  /// Lets queued UPDATEs arrive and be applied before asserting that nothing came.
  private func settle(_ sites: Site...) async throws {
    for site in sites { await site.controlPlane.speaker.sync() }
    try await Task.sleep(nanoseconds: 300_000_000)
    for site in sites { await site.controlPlane.speaker.sync() }
  }

  private func expected(_ site: Site, _ vnis: [UInt32]) -> [UInt32: Set<String>] {
    let number = Int(site.vtep.split(separator: ".").last!)!
    return Dictionary(uniqueKeysWithValues: vnis.map { ($0, [hostMAC(number, vni: $0).description]) })
  }

  // MARK: defaults

  func testSiteWithoutBGPRunsTheSpeakerWithThePeeringDefaults() async throws {
    let config = siteConfig(1)
    XCTAssertNil(
      EVPNControlPlane(core: OfflineSwitch(config: config).core), "no [bgp], no defaults: no speaker")
    let a = try await startSite(1)
    let status = try XCTUnwrap(a.controlPlane.status())
    XCTAssertEqual(status.asn, 64512)
    XCTAssertEqual(status.routerID, "10.0.0.1", "router ID = the IPv4 VTEP")
    XCTAssertEqual(status.peers, [])
    XCTAssertEqual(status.listeningPort, a.port)
    XCTAssertNotEqual(a.port, 0)
    XCTAssertEqual(a.controlPlane.speaker.configuration.exportWithoutFilter, false)
    XCTAssertEqual(
      a.controlPlane.speaker.configuration.resolvedVNIs().map(\.exportRouteTargets),
      [[.twoOctetAS(64512, 100)], [.twoOctetAS(64512, 200)]])

    XCTAssertEqual(EVPNControlPlane.PeeringDefaults.routerID(forVTEP: ip("192.0.2.7")), 0xC000_0207)
    let v6 = EVPNControlPlane.PeeringDefaults.routerID(forVTEP: ip("2001:db8::1"))
    XCTAssertEqual(v6, EVPNControlPlane.PeeringDefaults.routerID(forVTEP: ip("2001:db8::1")), "stable")
    XCTAssertNotEqual(v6, EVPNControlPlane.PeeringDefaults.routerID(forVTEP: ip("2001:db8::2")))
    XCTAssertNotEqual(v6, 0)
    XCTAssertEqual(EVPNControlPlane.PeeringDefaults().listenPort, 179)
  }

  func testPeerWithoutExportFilterIsSentNothingOnAPeeringSite() async throws {
    let a = try await startSite(1)
    let c = try await startSite(3)
    try await a.controlPlane.addPeer(peer(a, to: c, exportVNIs: nil))
    try await c.controlPlane.addPeer(peer(c, to: a, exportVNIs: [100]))
    try await eventually("A-C established") { self.established(a, "site3") && self.established(c, "site1") }
    try await eventually("C's VNI 100 at A") {
      self.remoteMACs(a, from: "10.0.0.3") == self.expected(c, [100])
    }
    try await settle(a, c)
    XCTAssertEqual(remoteMACs(c, from: "10.0.0.1"), [:], "A's networks stay local")
    XCTAssertEqual(floodVNIs(c, with: "10.0.0.1"), [])
    XCTAssertEqual(peerStatus(c, "site1")?.routesReceived, 0)
    XCTAssertEqual(peerStatus(a, "site3")?.exportVNIs, nil)
    XCTAssertEqual(peerStatus(c, "site1")?.exportVNIs, [100])
  }

  // MARK: export filter

  func testExportFilterWidensAndNarrowsWhatThePeerLearns() async throws {
    let a = try await startSite(1)
    let b = try await startSite(2)
    try await a.controlPlane.addPeer(peer(a, to: b, exportVNIs: [100]))
    try await b.controlPlane.addPeer(peer(b, to: a, exportVNIs: [100]))
    try await eventually("A-B established") { self.established(a, "site2") && self.established(b, "site1") }

    // Only VNI 100 crosses, both ways: MAC routes and type-3 (flood list).
    try await eventually("A's VNI 100 at B") {
      self.remoteMACs(b, from: "10.0.0.1") == self.expected(a, [100])
        && self.floodVNIs(b, with: "10.0.0.1") == [100]
    }
    try await eventually("B's VNI 100 at A") {
      self.remoteMACs(a, from: "10.0.0.2") == self.expected(b, [100])
    }
    // A host learnt in VNI 200 while the session is up does not cross either.
    a.offline.forward(interface: "vm2", frames: [broadcast(from: mac("02:01:00:00:02:01"))], now: 2)
    try await settle(a, b)
    XCTAssertEqual(remoteMACs(b, from: "10.0.0.1"), expected(a, [100]), "nothing of VNI 200")
    XCTAssertEqual(floodVNIs(b, with: "10.0.0.1"), [100])
    XCTAssertEqual(peerStatus(b, "site1")?.routesReceived, 2, "A sent one MAC route and one type-3 route")
    XCTAssertEqual(peerStatus(b, "site1")?.routesIgnored, 0)

    // Widening sends VNI 200's routes, the one learnt meanwhile too.
    try await a.controlPlane.setExportVNIs(peer: "site2", [100, 200])
    var widened = expected(a, [100, 200])
    widened[200]!.insert("02:01:00:00:02:01")
    try await eventually("A's VNI 200 at B") {
      self.remoteMACs(b, from: "10.0.0.1") == widened && self.floodVNIs(b, with: "10.0.0.1") == [100, 200]
    }
    XCTAssertEqual(peerStatus(a, "site2")?.exportVNIs, [100, 200])
    XCTAssertEqual(remoteMACs(a, from: "10.0.0.2"), expected(b, [100]), "B's filter is its own")

    // Narrowing withdraws them; VNI 100 stays.
    try await a.controlPlane.setExportVNIs(peer: "site2", [100])
    try await eventually("A's VNI 200 withdrawn at B") {
      self.remoteMACs(b, from: "10.0.0.1") == self.expected(a, [100])
        && self.floodVNIs(b, with: "10.0.0.1") == [100]
    }
    XCTAssertTrue(established(b, "site1"), "filter changes keep the session")
    XCTAssertEqual(peerStatus(b, "site1")?.establishedTransitions, 1)

    // updatePeer with only the filter changed is the same as setExportVNIs.
    try await a.controlPlane.updatePeer(peer(a, to: b, exportVNIs: [200]))
    try await eventually("only VNI 200 at B") {
      self.remoteMACs(b, from: "10.0.0.1") == [200: widened[200]!]
        && self.floodVNIs(b, with: "10.0.0.1") == [200]
    }
    XCTAssertEqual(peerStatus(b, "site1")?.establishedTransitions, 1)
  }

  // MARK: removal

  func testRemovePeerSendsCeaseAndBothSitesDropTheRoutesAtOnce() async throws {
    let a = try await startSite(1)
    let b = try await startSite(2)
    let c = try await startSite(3)
    try await a.controlPlane.addPeer(peer(a, to: b, exportVNIs: [100, 200]))
    try await b.controlPlane.addPeer(peer(b, to: a, exportVNIs: [100]))
    try await a.controlPlane.addPeer(peer(a, to: c, exportVNIs: [100]))
    try await c.controlPlane.addPeer(peer(c, to: a, exportVNIs: [200]))
    try await eventually("routes exchanged") {
      self.remoteMACs(b, from: "10.0.0.1") == self.expected(a, [100, 200])
        && self.remoteMACs(a, from: "10.0.0.2") == self.expected(b, [100])
        && self.remoteMACs(c, from: "10.0.0.1") == self.expected(a, [100])
        && self.remoteMACs(a, from: "10.0.0.3") == self.expected(c, [200])
    }
    let notifications = Mutex<[NotificationMessage]>([])
    b.controlPlane.speaker.addObserver { event in
      if case .notificationReceived(_, let notification) = event {
        notifications.withLock { $0.append(notification) }
      }
    }
    await b.controlPlane.speaker.sync()

    try await a.controlPlane.removePeer(name: "site2")
    XCTAssertNil(peerStatus(a, "site2"))
    // A dropped B's routes at once (no stale time, though B announced graceful restart).
    XCTAssertEqual(remoteMACs(a, from: "10.0.0.2"), [:])
    XCTAssertEqual(floodVNIs(a, with: "10.0.0.2"), [])
    // B got Cease/Peer De-configured, as a Hard Reset (both announce the RFC 8538 N bit),
    // and dropped A's routes at once.
    try await eventually("A's routes gone at B") {
      self.remoteMACs(b, from: "10.0.0.1") == [:] && self.floodVNIs(b, with: "10.0.0.1") == []
    }
    XCTAssertEqual(notifications.withLock { $0 }.first, NotificationMessage.peerDeconfigured.asHardReset)
    XCTAssertEqual(peerStatus(b, "site1")?.routesStale, 0)
    // The other session is untouched, both ways.
    try await settle(a, c)
    XCTAssertTrue(established(a, "site3"))
    XCTAssertEqual(remoteMACs(c, from: "10.0.0.1"), expected(a, [100]))
    XCTAssertEqual(remoteMACs(a, from: "10.0.0.3"), expected(c, [200]))
    // B keeps trying; A refuses until it adds B again, which brings the routes back.
    try await Task.sleep(nanoseconds: 500_000_000)
    XCTAssertFalse(established(b, "site1"))
    do {
      try await a.controlPlane.removePeer(name: "site2")
      XCTFail("removing an unknown peer must fail")
    } catch let error as PeerChangeError {
      XCTAssertEqual(error, .unknownPeer("site2"))
    }
    try await a.controlPlane.addPeer(peer(a, to: b, exportVNIs: [200]))
    try await eventually("A and B again") {
      self.remoteMACs(b, from: "10.0.0.1") == self.expected(a, [200])
        && self.remoteMACs(a, from: "10.0.0.2") == self.expected(b, [100])
    }
    do {
      try a.controlPlane.addPeerBlocking(peer(a, to: b, exportVNIs: nil))
      XCTFail("a second peer with the same name must be refused")
    } catch let error as PeerChangeError {
      XCTAssertEqual(error, .duplicateName("site2"))
    }
  }

  // MARK: TCP MD5

  func testTCPMD5OnDynamicPeersAndOnTheListener() async throws {
    try XCTSkipUnless(
      kernelSupportsTCPMD5(),
      "the kernel has no TCP_MD5SIG (CONFIG_TCP_MD5SIG): TCP MD5 cannot be tested here")
    let a = try await startSite(1)
    let b = try await startSite(2)
    let c = try await startSite(3)
    // A only accepts: B and C connect to A's listener, keyed by addPeer after start.
    try await a.controlPlane.addPeer(
      peer(a, to: b, exportVNIs: [100], password: "same-secret", passive: true))
    try await b.controlPlane.addPeer(peer(b, to: a, exportVNIs: [100], password: "same-secret"))
    try await a.controlPlane.addPeer(peer(a, to: c, exportVNIs: [100], password: "one-secret", passive: true))
    try await c.controlPlane.addPeer(peer(c, to: a, exportVNIs: [100], password: "another-secret"))
    try await eventually("A-B established with MD5") {
      self.established(a, "site2") && self.remoteMACs(b, from: "10.0.0.1") == self.expected(a, [100])
    }
    XCTAssertEqual(peerStatus(a, "site2")?.md5, true)
    // Different keys: C's SYNs fail A's signature check, nothing comes up.
    try await Task.sleep(nanoseconds: 2_000_000_000)
    XCTAssertFalse(established(a, "site3"))
    XCTAssertFalse(established(c, "site1"))
    XCTAssertEqual(remoteMACs(c, from: "10.0.0.1"), [:])
    // Unsigned connections from B's address are dropped while A holds B's key...
    XCTAssertFalse(plainConnect(from: b.address, to: a.address, port: a.port, timeout: 1))
    // ...and accepted once B is removed (the listener's key goes with it).
    try await a.controlPlane.removePeer(name: "site2")
    XCTAssertTrue(plainConnect(from: b.address, to: a.address, port: a.port, timeout: 5))
    // C with the right key comes up.
    try await c.controlPlane.updatePeer(peer(c, to: a, exportVNIs: [100], password: "one-secret"))
    try await eventually("A-C established with MD5") {
      self.established(a, "site3") && self.remoteMACs(c, from: "10.0.0.1") == self.expected(a, [100])
    }
  }

  // MARK: reload

  func testReloadReadvertisesChangedRouteTargetsAndAddedVNIs() async throws {
    // B exports VNI 200 under 64512:999, which A's VNI 200 does not import (yet).
    let a = try await startSite(1)
    let b = try await startSite(2) { $0.bridgeDomains[1].exportRTs = ["64512:999"] }
    try await a.controlPlane.addPeer(peer(a, to: b, exportVNIs: [100, 200, 300]))
    try await b.controlPlane.addPeer(peer(b, to: a, exportVNIs: [100, 200, 300]))
    try await eventually("A's routes at B") {
      self.remoteMACs(b, from: "10.0.0.1") == self.expected(a, [100, 200])
    }
    try await eventually("B's VNI 200 route ignored at A") {
      (self.peerStatus(a, "site2")?.routesIgnored ?? 0) >= 1
    }
    XCTAssertEqual(remoteMACs(a, from: "10.0.0.2"), expected(b, [100]))

    // A: VNI 200 imports 64512:999 and exports 64512:777; VNI 300 is added.
    var next = a.core.config
    next.bridgeDomains[1].importRTs = ["64512:999"]
    next.bridgeDomains[1].exportRTs = ["64512:777"]
    next.bridgeDomains.append(SiteConfig.BridgeDomain(vni: 300))
    a.core.reload(next)
    a.controlPlane.reload(next)
    // B's route sent before under 64512:999 is imported now (ROUTE-REFRESH)...
    try await eventually("B's VNI 200 imported at A") {
      self.remoteMACs(a, from: "10.0.0.2") == self.expected(b, [100, 200])
    }
    // ...A's VNI 200 goes out under 64512:777, which B does not import: gone at B.
    try await eventually("A's VNI 200 gone at B") {
      self.remoteMACs(b, from: "10.0.0.1") == self.expected(a, [100])
    }
    XCTAssertEqual(floodVNIs(b, with: "10.0.0.1"), [100])

    // B imports 64512:777 for VNI 200 and adds VNI 300: A's routes of both arrive.
    var nextB = b.core.config
    nextB.bridgeDomains[1].importRTs = ["64512:777"]
    nextB.bridgeDomains.append(SiteConfig.BridgeDomain(vni: 300))
    b.core.reload(nextB)
    b.controlPlane.reload(nextB)
    try await eventually("A's VNI 200 (new RT) and 300 at B") {
      self.remoteMACs(b, from: "10.0.0.1") == self.expected(a, [100, 200])
        && self.floodVNIs(b, with: "10.0.0.1") == [100, 200, 300]
    }
    try await eventually("B's type-3 routes at A") { self.floodVNIs(a, with: "10.0.0.2") == [100, 200, 300] }
    XCTAssertEqual(remoteMACs(a, from: "10.0.0.2"), expected(b, [100, 200]))
    XCTAssertTrue(established(a, "site2"), "reloads keep the session")
  }

  // MARK: interop

  /// A dynamic peer with an export filter (and TCP MD5 where the kernel has it) toward
  /// gobgpd: its RIB holds exactly the VNIs the filter allows, and loses the session
  /// and our routes on removal.
  func testDynamicPeerWithExportFilterTowardGoBGP() async throws {
    let a = try await startSite(1, address: "127.0.0.1")
    let md5 = kernelSupportsTCPMD5()
    let daemon = try GoBGPDaemon(
      asn: 64512, routerID: "9.9.9.9",
      neighbors: """
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "127.0.0.1"
            peer-as = 64512
            \(md5 ? "auth-password = \"gobgp-key\"" : "")
          [neighbors.transport.config]
            remote-port = \(a.port)
          [neighbors.timers.config]
            connect-retry = 1
            hold-time = 9
            keepalive-interval = 3
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "l2vpn-evpn"
        """)
    self.daemon = daemon
    var toGoBGP = PeerConfiguration(
      name: "gobgp", address: "127.0.0.1", port: daemon.bgpPort, remoteAS: 64512,
      password: md5 ? "gobgp-key" : nil, holdTime: 9, exportVNIs: [100], localAddress: "127.0.0.1")
    try await a.controlPlane.addPeer(toGoBGP)
    try await eventually("session with gobgpd", timeout: 30) { self.established(a, "gobgp") }
    XCTAssertEqual(peerStatus(a, "gobgp")?.md5, md5)

    func ours(_ rib: [String: [[String: Any]]]) -> Set<String> {
      Set(
        rib.keys.filter { $0.contains("[rd:10.0.0.1:") }.map { key in
          (key.contains("[type:multicast]") ? "multicast " : "macadv ")
            + (key.contains("[rd:10.0.0.1:1]") ? "100" : "200")
        })
    }
    XCTAssertTrue(
      daemon.waitForRIB { ours($0) == ["macadv 100", "multicast 100"] }, daemon.evpn("-j").output)
    try await settle(a)
    XCTAssertEqual(ours(daemon.evpnRIB()), ["macadv 100", "multicast 100"], "nothing of VNI 200")
    XCTAssertTrue(daemon.evpnRIB().keys.contains { $0.contains("[mac:02:01:00:00:01:00]") })

    try await a.controlPlane.setExportVNIs(peer: "gobgp", [100, 200])
    XCTAssertTrue(
      daemon.waitForRIB { ours($0) == ["macadv 100", "multicast 100", "macadv 200", "multicast 200"] },
      daemon.evpn("-j").output)
    toGoBGP.exportVNIs = [200]
    try a.controlPlane.updatePeerBlocking(toGoBGP)
    XCTAssertTrue(
      daemon.waitForRIB { ours($0) == ["macadv 200", "multicast 200"] }, daemon.evpn("-j").output)
    XCTAssertEqual(peerStatus(a, "gobgp")?.establishedTransitions, 1)

    try a.controlPlane.removePeerBlocking(name: "gobgp")
    XCTAssertTrue(daemon.waitForRIB { ours($0).isEmpty }, daemon.evpn("-j").output)
    XCTAssertNil(peerStatus(a, "gobgp"))
  }
}

/// Whether the kernel accepts a TCP_MD5SIG key (CONFIG_TCP_MD5SIG).
func kernelSupportsTCPMD5() -> Bool {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  var option = tcp_md5sig()
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  withUnsafeMutableBytes(of: &option.tcpm_addr) { storage in
    withUnsafeBytes(of: address) { storage.copyMemory(from: $0) }
  }
  option.tcpm_keylen = 4
  withUnsafeMutableBytes(of: &option.tcpm_key) { $0.copyBytes(from: Array("test".utf8)) }
  return setsockopt(fd, Int32(IPPROTO_TCP), TCP_MD5SIG, &option, socklen_t(MemoryLayout<tcp_md5sig>.size))
    == 0
}

/// Whether an unsigned TCP connection from `source` to `destination:port` completes
/// within `timeout` (a listener holding a TCP MD5 key for `source` drops its SYNs).
func plainConnect(from source: String, to destination: String, port: UInt16, timeout: Double) -> Bool {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  func address(_ text: String, _ port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr(text)
    address.sin_port = port.bigEndian
    return address
  }
  var local = address(source, 0)
  let bound = withUnsafePointer(to: &local) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  guard bound == 0 else { return false }
  _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
  var remote = address(destination, port)
  let result = withUnsafePointer(to: &remote) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  if result == 0 { return true }
  guard errno == EINPROGRESS else { return false }
  var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
  guard poll(&poller, 1, Int32(timeout * 1000)) > 0 else { return false }
  var error: Int32 = 0
  var length = socklen_t(MemoryLayout<Int32>.size)
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
  return error == 0
}
