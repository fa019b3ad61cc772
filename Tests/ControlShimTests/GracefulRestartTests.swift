import Dataplane
import Foundation
import NIOCore
import XCTest

@testable import ControlShim

/// Graceful restart (RFC 4724) on both sides: the capability's Restart State and
/// Forwarding State bits, the helper's answer to a peer that restarted (F bit set: stale
/// routes kept until its End-of-RIB; clear: removed at once; its restart time bounds the
/// wait), and the restarting speaker (End-of-RIB after the restored local routes, received
/// routes installed only after the peers' End-of-RIB).
final class GracefulRestartTests: XCTestCase {
  private var started: [EVPNSpeaker] = []

  override func tearDown() async throws {
    for speaker in started { await speaker.shutdown() }
    started = []
  }

  let marker = String(repeating: "ff", count: 16)
  let m1 = mac("02:00:00:00:00:01")
  let m2 = mac("02:00:00:00:00:02")

  // MARK: capability bytes

  /// RFC 4724 section 3: the R bit is the top bit of the 16-bit header (0x8000 over the
  /// 12-bit restart time), the F bit the top bit of each family's flags.
  func testRestartAndForwardingBitsOnTheWire() throws {
    let restarted = BGPCapability.gracefulRestart(
      GracefulRestartCapability(
        restarting: true, restartTime: 120, families: [.init(family: .l2vpnEVPN, forwardingPreserved: true)]))
    let withoutForwarding = BGPCapability.gracefulRestart(
      GracefulRestartCapability(
        restarting: true, restartTime: 4095,
        families: [
          .init(family: .l2vpnEVPN, forwardingPreserved: false),
          .init(family: .routeTargetConstraint, forwardingPreserved: true),
        ]))
    // RFC 8538: the N bit is the second bit of the header, next to R.
    let notifying = BGPCapability.gracefulRestart(
      GracefulRestartCapability(
        notification: true, restartTime: 120, families: [.init(family: .l2vpnEVPN, forwardingPreserved: true)]
      ))
    for (capability, bytes) in [
      (restarted, "40 06 8078 0019 46 80"), (withoutForwarding, "40 0a 8fff 0019 46 00 0001 84 80"),
      (notifying, "40 06 4078 0019 46 80"),
    ] {
      let open = OpenMessage(asn: 65001, holdTime: 90, bgpIdentifier: 0x0101_0101, capabilities: [capability])
      let encoded = BGPMessageCodec.encode(.open(open))
      // The encoder adds the 4-octet AS capability to every OPEN.
      let parameters = hex(bytes + "41 04 0000fde9")
      let body =
        hex("04 fde9 005a 01010101") + [UInt8(parameters.count + 2), 2, UInt8(parameters.count)]
        + parameters
      let expected = hex(marker) + [UInt8((19 + body.count) >> 8), UInt8((19 + body.count) & 0xFF), 1] + body
      XCTAssertEqual(encoded, expected, bytes)
      guard case .open(let decoded) = try BGPMessageCodec.decode(expected).message else { return XCTFail() }
      XCTAssertEqual(decoded.capabilities.first, capability)
    }
  }

  /// Our OPEN carries R while the restart lasts, with the configured F bit.
  /// `[bgp] restart_time` is what the capability announces; the site's default is 120 s.
  func testRestartTimeComesFromTheSiteConfiguration() throws {
    var config = SiteConfig(site: SiteConfig.Site(name: "gr", vtep: IPAddress("10.0.0.1")!, underlay: "eth1"))
    config.bgp = SiteConfig.BGP(asn: 65000, routerID: IPAddress("1.1.1.1")!)
    var warnings: [String] = []
    XCTAssertEqual(SpeakerConfiguration.site(config, warnings: &warnings)?.gracefulRestartTime, 120)
    config.bgp?.restartTime = 300
    XCTAssertEqual(SpeakerConfiguration.site(config, warnings: &warnings)?.gracefulRestartTime, 300)
    XCTAssertEqual(warnings, [])
  }

  func testOpenCarriesRestartStateOnlyWhileRestarting() async throws {
    for (restarting, preserved) in [(true, true), (true, false), (false, true)] {
      let node = makeNode(
        port: 9, peers: [PeerConfiguration(name: "P", address: "127.0.0.1", remoteAS: 65000)]
      ) {
        $0.restarting = restarting
        $0.forwardingStatePreserved = preserved
      }
      let open = try await node.speaker.eventLoop.submit { node.speaker.peers[0].makeOpen() }.get()
      let capability = try XCTUnwrap(open.gracefulRestart)
      XCTAssertEqual(capability.restarting, restarting)
      XCTAssertEqual(capability.families.first { $0.family == .l2vpnEVPN }?.forwardingPreserved, preserved)
      let status = await node.speaker.status()
      XCTAssertEqual(status.gracefulRestart?.restartState, restarting)
      XCTAssertEqual(status.gracefulRestart?.restarted, restarting)
      await node.speaker.shutdown()
    }
  }

  // MARK: helper side, against a hand-driven peer

  /// The peer drops the session (no NOTIFICATION) and comes back with R=1 F=1: its routes
  /// stay installed (stale) until its End-of-RIB, which removes only those it did not
  /// send again.
  func testPeerRestartingWithForwardingStateKeepsStaleRoutesUntilEndOfRIB() async throws {
    let (node, port) = try await startHelper()
    var raw = try XCTUnwrap(RawBGPPeer(port: port))
    XCTAssertNotNil(handshake(raw, restarting: false, forwarding: true))
    raw.send(announcement(m1))
    raw.send(announcement(m2))
    XCTAssertTrue(node.sink.wait { $0.macs.count == 2 })
    raw = try XCTUnwrap(dropAndWaitStale(raw, node))

    XCTAssertNotNil(handshake(raw, restarting: true, forwarding: true))
    XCTAssertTrue(node.sink.wait { self.peerRestartedEvents($0) == [true] }, "\(node.sink.snapshot.events)")
    let back = await node.speaker.status()
    XCTAssertEqual(back.peers.first?.peerRestarted, true)
    XCTAssertEqual(back.peers.first?.stalePhase, .gracefulRestart, "kept until End-of-RIB")
    XCTAssertEqual(back.peers.first?.routesStale, 2)
    XCTAssertEqual(node.sink.snapshot.macs.count, 2)
    XCTAssertEqual(node.sink.snapshot.removeCalls, 0)

    raw.send(announcement(m1))
    raw.send(.update(.endOfRIB(.l2vpnEVPN)))
    XCTAssertTrue(
      node.sink.wait { $0.installed(100, self.m2) == nil }, "End-of-RIB sweeps what was not resent")
    XCTAssertNotNil(node.sink.snapshot.installed(100, m1))
    XCTAssertEqual(node.sink.snapshot.removeCalls, 1)
  }

  /// R=1 with the F bit clear for EVPN: the forwarding state the stale routes stood for is
  /// gone, so they are removed as the session comes up, before any UPDATE.
  func testPeerRestartingWithoutForwardingStateFlushesStaleRoutesAtOnce() async throws {
    let (node, port) = try await startHelper()
    var raw = try XCTUnwrap(RawBGPPeer(port: port))
    XCTAssertNotNil(handshake(raw, restarting: false, forwarding: true))
    raw.send(announcement(m1))
    XCTAssertTrue(node.sink.wait { $0.installed(100, self.m1) != nil })
    raw = try XCTUnwrap(dropAndWaitStale(raw, node))

    XCTAssertNotNil(handshake(raw, restarting: true, forwarding: false))
    XCTAssertTrue(node.sink.wait { $0.installed(100, self.m1) == nil }, "flushed without End-of-RIB")
    XCTAssertEqual(peerRestartedEvents(node.sink.snapshot), [false])
    let status = await node.speaker.status()
    XCTAssertEqual(status.peers.first?.stalePhase, nil)
    XCTAssertEqual(status.peers.first?.state, .established)
  }

  /// The helper keeps a lost peer's routes for the restart time the peer announced (1 s)
  /// when it is below our stale time (60 s).
  func testHelperHonoursThePeersRestartTime() async throws {
    let (node, port) = try await startHelper()
    var raw = try XCTUnwrap(RawBGPPeer(port: port))
    XCTAssertNotNil(handshake(raw, restarting: false, forwarding: true, restartTime: 1))
    raw.send(announcement(m1))
    XCTAssertTrue(node.sink.wait { $0.installed(100, self.m1) != nil })
    let status = await node.speaker.status()
    XCTAssertEqual(status.peers.first?.peerRestartTime, 1)
    let lost = Date()
    raw = try XCTUnwrap(dropAndWaitStale(raw, node))
    XCTAssertTrue(
      node.sink.wait(timeout: 10) { $0.installed(100, self.m1) == nil }, "swept after the restart time")
    let waited = Date().timeIntervalSince(lost)
    XCTAssertGreaterThan(waited, 0.8)
    XCTAssertLessThan(waited, 10, "not our 60 s stale time")
    _ = raw
  }

  // MARK: NOTIFICATION support (RFC 8538)

  /// Both sides announced the N bit: a NOTIFICATION (hold timer expired) ends the session
  /// but not graceful restart, so the peer's routes stay, stale; a Hard Reset removes them.
  /// Without the N bit from the peer, the same NOTIFICATION removes them at once.
  func testWithTheNBitOnlyAHardResetRemovesTheRoutes() async throws {
    let (node, port) = try await startHelper()
    var raw = try XCTUnwrap(RawBGPPeer(port: port))
    let open = try XCTUnwrap(handshake(raw, restarting: false, forwarding: true, notification: true))
    XCTAssertEqual(open.gracefulRestart?.notification, true, "we announce the N bit")
    raw.send(announcement(m1))
    XCTAssertTrue(node.sink.wait { $0.installed(100, self.m1) != nil })
    raw.send(.notification(.holdTimerExpired))
    XCTAssertTrue(
      node.sink.wait { state in state.count { if case .sessionDown = $0 { true } else { false } } >= 1 })
    var status = await node.speaker.status()
    XCTAssertEqual(status.peers.first?.stalePhase, .gracefulRestart, "kept across the NOTIFICATION")
    XCTAssertEqual(status.peers.first?.routesStale, 1)
    XCTAssertNotNil(node.sink.snapshot.installed(100, m1))

    // Back, and this time a Hard Reset (of an administrative shutdown).
    raw = try XCTUnwrap(RawBGPPeer(port: port))
    XCTAssertNotNil(handshake(raw, restarting: false, forwarding: true, notification: true))
    raw.send(announcement(m1))
    raw.send(.update(.endOfRIB(.l2vpnEVPN)))
    XCTAssertTrue(
      node.sink.wait { state in state.count { if case .established = $0 { true } else { false } } >= 2 })
    raw.send(.notification(NotificationMessage.administrativeShutdown.asHardReset))
    XCTAssertTrue(node.sink.wait { $0.installed(100, self.m1) == nil }, "a Hard Reset removes the routes")
    status = await node.speaker.status()
    XCTAssertEqual(status.peers.first?.stalePhase, nil)

    // A peer without the N bit: the NOTIFICATION ends graceful restart too (RFC 4724).
    raw = try XCTUnwrap(RawBGPPeer(port: port))
    XCTAssertNotNil(handshake(raw, restarting: false, forwarding: true, notification: false))
    raw.send(announcement(m2))
    XCTAssertTrue(node.sink.wait { $0.installed(100, self.m2) != nil })
    raw.send(.notification(.holdTimerExpired))
    XCTAssertTrue(node.sink.wait { $0.installed(100, self.m2) == nil }, "no N bit: removed at once")
  }

  /// With the N bit on both sides, the NOTIFICATIONs that end a session for good
  /// (administrative shutdown, peer de-configured) leave as a Hard Reset carrying them;
  /// without it from the peer, as themselves.
  func testAdministrativeShutdownIsSentAsAHardResetOnlyWithTheNBit() async throws {
    for notification in [true, false] {
      let (node, port) = try await startHelper()
      let raw = try XCTUnwrap(RawBGPPeer(port: port))
      XCTAssertNotNil(handshake(raw, restarting: false, forwarding: true, notification: notification))
      XCTAssertTrue(
        node.sink.wait { state in state.count { if case .established = $0 { true } else { false } } >= 1 })
      try await node.speaker.removePeer(name: "raw")
      let received = try XCTUnwrap(raw.receiveNotification())
      if notification {
        XCTAssertTrue(received.isHardReset, "\(received)")
        XCTAssertEqual(Array(received.data.prefix(2)), [6, NotificationMessage.peerDeconfigured.subcode])
      } else {
        XCTAssertEqual(received, .peerDeconfigured)
      }
    }
  }

  // MARK: restarting speaker

  /// Speaker B restarts: the old instance closes its session without a NOTIFICATION, a
  /// new one starts with `restarting` and the local MAC restored before `start`. Helper A
  /// keeps B's routes throughout (never a removal), sees R=1 F=1, and B's End-of-RIB only
  /// comes after `localStateRestored`, with m1 re-advertised before it. B installs A's
  /// route only after A's End-of-RIB (selection deferral).
  func testRestartedSpeakerIsKeptByItsHelperAndRefreshesItsRoutesBeforeEndOfRIB() async throws {
    let portA = freeTCPPort()
    let portB = freeTCPPort()
    let a = makeNode(
      port: portA, routerID: 0x0101_0101, vtep: "10.0.0.1",
      peers: [PeerConfiguration(name: "B", address: "127.0.0.1", port: portB, remoteAS: 65000, passive: true)]
    )
    let toA = PeerConfiguration(name: "A", address: "127.0.0.1", port: portA, remoteAS: 65000)
    let b1 = makeNode(port: portB, routerID: 0x0202_0202, vtep: "10.0.0.2", peers: [toA])
    try await start(a, b1)
    XCTAssertTrue(a.sink.wait { $0.established("B") == 1 })
    a.speaker.advertiseMAC(vni: 100, mac: m2)
    b1.speaker.advertiseMAC(vni: 100, mac: m1)
    b1.speaker.advertiseInclusiveMulticast(vni: 100)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) != nil && $0.flood[100] == [ip("10.0.0.2")] })
    XCTAssertTrue(b1.sink.wait { $0.installed(100, self.m2) != nil })

    await b1.speaker.shutdown(forRestart: true)
    started.removeAll { $0 === b1.speaker }
    XCTAssertTrue(
      a.sink.wait { state in state.count { if case .sessionDown = $0 { true } else { false } } == 1 })
    let down = await a.speaker.status()
    XCTAssertEqual(down.peers.first?.stalePhase, .gracefulRestart, "no NOTIFICATION: A keeps B's routes")

    let b2 = makeNode(port: portB, routerID: 0x0202_0202, vtep: "10.0.0.2", peers: [toA]) {
      $0.restarting = true
    }
    b2.speaker.advertiseMAC(vni: 100, mac: m1)  // the restored local state
    b2.speaker.advertiseInclusiveMulticast(vni: 100)
    try await start(b2)
    XCTAssertTrue(a.sink.wait { $0.established("B") == 2 })
    XCTAssertTrue(a.sink.wait { self.peerRestartedEvents($0) == [true] }, "\(a.sink.snapshot.events)")
    // A's End-of-RIB has come: B installs A's route now (deferral ended by it).
    XCTAssertTrue(b2.sink.wait { $0.installed(100, self.m2) != nil })
    XCTAssertTrue(
      b2.sink.wait { state in
        state.events.contains { if case .selectionDeferralEnded(.endOfRIB, _) = $0 { true } else { false } }
      })
    // B's End-of-RIB waits for the local state.
    try await Task.sleep(for: .milliseconds(300))
    XCTAssertEqual(endOfRIBCount(a.sink.snapshot, from: "B"), 1, "only the first session's End-of-RIB")
    let waiting = await b2.speaker.status()
    XCTAssertEqual(waiting.gracefulRestart?.restartState, true)
    XCTAssertEqual(waiting.gracefulRestart?.localStateRestored, false)

    b2.speaker.localStateRestored()
    XCTAssertTrue(a.sink.wait { self.endOfRIBCount($0, from: "B") == 2 })
    XCTAssertTrue(a.sink.wait { $0.count { if case .staleRoutesSwept = $0 { true } else { false } } == 1 })
    XCTAssertEqual(a.sink.snapshot.removeCalls, 0, "nothing of B's withdrawn at A")
    XCTAssertNotNil(a.sink.snapshot.installed(100, m1))
    XCTAssertEqual(a.sink.snapshot.flood[100], [ip("10.0.0.2")])
    let after = await a.speaker.status()
    XCTAssertEqual(after.peers.first?.routesStale, 0)
    XCTAssertEqual(after.peers.first?.peerRestarted, true)
    let finished = await b2.speaker.status()
    XCTAssertEqual(finished.gracefulRestart?.restarted, true)
    XCTAssertEqual(finished.gracefulRestart?.restartState, false, "restart over: no more R bit")
    XCTAssertEqual(finished.gracefulRestart?.selectionDeferral, false)
  }

  /// Without any End-of-RIB (the peer never comes), the selection deferral timer ends
  /// deferral; held changes then reach the sink in one batch, in order.
  func testSelectionDeferralTimerReleasesHeldRoutes() async throws {
    let node = makeNode(
      port: freeTCPPort(),
      peers: [PeerConfiguration(name: "P", address: "127.0.0.1", port: 9, remoteAS: 65000)]
    ) {
      $0.restarting = true
      $0.selectionDeferralTime = 0.3
    }
    try await start(node)
    let deferred = try XCTUnwrap(node.speaker.deferredSink)
    let m1 = self.m1
    try await node.speaker.eventLoop.submit {
      deferred.beginBatch()
      deferred.installMAC(
        vni: 100, mac: m1, ip: nil, vtep: ip("10.0.0.9"), sequence: 0, sticky: false, peer: "P")
      deferred.removeMAC(vni: 100, mac: m1, ip: nil)
      deferred.addFloodMember(vni: 100, vtep: ip("10.0.0.9"))
      deferred.endBatch()
    }.get()
    XCTAssertEqual(node.sink.snapshot.installCalls, 0, "held while deferring")
    XCTAssertTrue(
      node.sink.wait(timeout: 5) { state in
        state.events.contains { if case .selectionDeferralEnded(.timer, 3) = $0 { true } else { false } }
      })
    let state = node.sink.snapshot
    XCTAssertEqual(state.installCalls, 1)
    XCTAssertEqual(state.removeCalls, 1)
    XCTAssertNil(state.installed(100, m1), "applied in order: installed, then removed")
    XCTAssertEqual(state.flood[100], [ip("10.0.0.9")])
  }

  // MARK: helpers

  struct Node {
    let speaker: EVPNSpeaker
    let sink: RecordingSink
  }

  private func makeNode(
    port: UInt16, routerID: UInt32 = 0x0101_0101, vtep: String = "10.0.0.1", peers: [PeerConfiguration],
    configure: (inout SpeakerConfiguration) -> Void = { _ in }
  ) -> Node {
    var configuration = SpeakerConfiguration(
      asn: 65000, routerID: routerID, vtep: ip(vtep), listenAddress: "127.0.0.1", listenPort: port,
      vnis: [VNIConfiguration(vni: 100)], peers: peers)
    configuration.holdTime = 9
    configuration.connectRetryTime = 0.05
    configuration.connectRetryMaximum = 0.2
    configuration.staleTime = 60
    configure(&configuration)
    let sink = RecordingSink()
    let speaker = EVPNSpeaker(configuration: configuration, sink: sink)
    sink.observe(speaker)
    return Node(speaker: speaker, sink: sink)
  }

  private func start(_ nodes: Node...) async throws {
    for node in nodes {
      try await node.speaker.start()
      started.append(node.speaker)
    }
  }

  /// A speaker with one passive peer "raw" on loopback (the hand-driven one).
  private func startHelper() async throws -> (Node, UInt16) {
    let port = freeTCPPort()
    let node = makeNode(
      port: port,
      peers: [PeerConfiguration(name: "raw", address: "127.0.0.1", port: 9, remoteAS: 65000, passive: true)])
    try await start(node)
    return (node, port)
  }

  /// OPEN with the graceful-restart capability for EVPN, then KEEPALIVEs; the speaker's OPEN.
  private func handshake(
    _ raw: RawBGPPeer, restarting: Bool, forwarding: Bool, restartTime: UInt16 = 120,
    notification: Bool = false
  )
    -> OpenMessage?
  {
    raw.send(
      .open(
        OpenMessage(
          asn: 65000, holdTime: 30, bgpIdentifier: 0x0909_0909,
          capabilities: [
            .multiprotocol(.l2vpnEVPN),
            .gracefulRestart(
              GracefulRestartCapability(
                restarting: restarting, notification: notification, restartTime: restartTime,
                families: [.init(family: .l2vpnEVPN, forwardingPreserved: forwarding)])),
          ])))
    guard case .open(let open)? = raw.receive() else { return nil }
    raw.send(.keepalive)
    guard case .keepalive? = raw.receive() else { return nil }
    return open
  }

  /// Closes the raw peer's socket (no NOTIFICATION: a crash), waits until the speaker
  /// holds its routes stale, and connects again.
  private func dropAndWaitStale(_ raw: RawBGPPeer, _ node: Node) -> RawBGPPeer? {
    shutdown(raw.fd, Int32(SHUT_RDWR))
    XCTAssertTrue(
      node.sink.wait { state in state.count { if case .sessionDown = $0 { true } else { false } } >= 1 })
    return RawBGPPeer(port: node.speaker.configuration.listenPort)
  }

  /// An iBGP UPDATE announcing `mac` in VNI 100 from VTEP 192.0.2.1.
  private func announcement(_ mac: MACAddress) -> [UInt8] {
    var attributes = PathAttributes()
    attributes.origin = .igp
    attributes.asPath = []
    attributes.localPreference = 100
    attributes.extendedCommunities = [.routeTarget(.twoOctetAS(65000, 100)), .vxlanEncapsulation]
    let route = EVPNNLRI.macIP(
      MACIPAdvertisementRoute(routeDistinguisher: .ipv4(0xC000_0201, 1), mac: mac, ip: nil, label1: 100))
    return UpdateBuilder.announcements(
      [route], attributes: attributes, nextHop: ip("192.0.2.1").bytes,
      context: DecodingContext(fourOctetAS: false))[0]
  }

  private func peerRestartedEvents(_ state: RecordedState) -> [Bool] {
    state.events.compactMap {
      if case .peerRestarted(_, let preserved, _) = $0 { return preserved } else { return nil }
    }
  }

  private func endOfRIBCount(_ state: RecordedState, from peer: String) -> Int {
    state.count { if case .endOfRIB(let name, .l2vpnEVPN) = $0 { name == peer } else { false } }
  }
}
