import Dataplane
import Foundation
import XCTest

@testable import ControlShim

/// FSM, timers and route exchange between two of our speakers on loopback (and a raw
/// socket peer where misbehaviour is needed). Waits are event-driven with deadlines.
final class BGPSessionTests: XCTestCase {
  struct Node {
    let speaker: EVPNSpeaker
    let sink: RecordingSink
    let port: UInt16
  }

  private var started: [EVPNSpeaker] = []

  override func tearDown() async throws {
    for speaker in started { await speaker.shutdown() }
    started = []
  }

  private func makeNode(
    asn: UInt32, routerID: UInt32, vtep: String, port: UInt16, peers: [PeerConfiguration],
    vnis: [UInt32] = [100], configure: (inout SpeakerConfiguration) -> Void = { _ in }
  ) -> Node {
    var configuration = SpeakerConfiguration(
      asn: asn, routerID: routerID, vtep: ip(vtep), listenAddress: "127.0.0.1", listenPort: port,
      vnis: vnis.map { VNIConfiguration(vni: $0) }, peers: peers)
    configuration.holdTime = 9
    configuration.connectRetryTime = 0.05
    configuration.connectRetryMaximum = 0.5
    configure(&configuration)
    let sink = RecordingSink()
    let speaker = EVPNSpeaker(configuration: configuration, sink: sink)
    sink.observe(speaker)
    return Node(speaker: speaker, sink: sink, port: port)
  }

  private func start(_ nodes: Node...) async throws {
    for node in nodes {
      try await node.speaker.start()
      started.append(node.speaker)
    }
  }

  /// Two speakers that connect to each other (both active: collisions get resolved).
  private func pair(
    asnA: UInt32 = 65000, asnB: UInt32 = 65000, vnisA: [UInt32] = [100], vnisB: [UInt32] = [100],
    peerA: (inout PeerConfiguration) -> Void = { _ in }, peerB: (inout PeerConfiguration) -> Void = { _ in },
    configure: (inout SpeakerConfiguration) -> Void = { _ in }
  ) -> (Node, Node) {
    let portA = freeTCPPort()
    let portB = freeTCPPort()
    var toB = PeerConfiguration(name: "B", address: "127.0.0.1", port: portB, remoteAS: asnB)
    var toA = PeerConfiguration(name: "A", address: "127.0.0.1", port: portA, remoteAS: asnA)
    peerA(&toB)
    peerB(&toA)
    let a = makeNode(
      asn: asnA, routerID: 0x0101_0101, vtep: "10.0.0.1", port: portA, peers: [toB], vnis: vnisA,
      configure: configure)
    let b = makeNode(
      asn: asnB, routerID: 0x0202_0202, vtep: "10.0.0.2", port: portB, peers: [toA], vnis: vnisB,
      configure: configure)
    return (a, b)
  }

  private func waitEstablished(
    _ a: Node, _ b: Node, count: Int = 1, file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertTrue(a.sink.wait { $0.established("B") >= count }, "A never established", file: file, line: line)
    XCTAssertTrue(b.sink.wait { $0.established("A") >= count }, "B never established", file: file, line: line)
  }

  let m1 = mac("02:00:00:00:00:01")
  let m2 = mac("02:00:00:00:00:02")

  func testIBGPSessionExchangesRoutesBothWays() async throws {
    let (a, b) = pair()
    try await start(a, b)
    waitEstablished(a, b)

    a.speaker.advertiseMAC(vni: 100, mac: m1, ip: ip("192.168.1.1"))
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    a.speaker.advertiseInclusiveMulticast(vni: 100)
    b.speaker.advertiseInclusiveMulticast(vni: 100)
    XCTAssertTrue(
      b.sink.wait {
        $0.installed(100, self.m1) != nil && $0.installed(100, self.m1, ip("192.168.1.1")) != nil
      })
    XCTAssertEqual(
      b.sink.snapshot.installed(100, m1), .init(vtep: ip("10.0.0.1"), sequence: 0, sticky: false, peer: "A"))
    XCTAssertTrue(b.sink.wait { $0.flood[100] == [ip("10.0.0.1")] })
    XCTAssertTrue(a.sink.wait { $0.flood[100] == [ip("10.0.0.2")] })

    let status = await b.speaker.status()
    let peer = try XCTUnwrap(status.peers.first)
    XCTAssertEqual(peer.state, .established)
    XCTAssertEqual(peer.negotiatedHoldTime, 9)
    XCTAssertEqual(peer.negotiatedFamilies, ["l2vpn-evpn"])
    XCTAssertTrue(peer.isInternal && peer.fourOctetAS && peer.routeRefresh && peer.peerGracefulRestart)
    XCTAssertEqual(peer.routesAccepted, 3)
    XCTAssertEqual(peer.remoteRouterID, "1.1.1.1")
    XCTAssertNotNil(peer.uptime)
    XCTAssertEqual(status.remoteMACRoutes, 2)
    let json = try JSONEncoder().encode(status)
    XCTAssertEqual(try JSONDecoder().decode(SpeakerStatus.self, from: json), status)

    a.speaker.withdrawMAC(vni: 100, mac: m1)
    a.speaker.withdrawInclusiveMulticast(vni: 100)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1) == nil && $0.flood[100] == [] })
    XCTAssertNotNil(b.sink.snapshot.installed(100, m1, ip("192.168.1.1")))
  }

  func testEBGPSessionAndRouteRefresh() async throws {
    // Default RTs are (ASN & 0xFFFF):VNI, which differ between these ASes: set them.
    let (a, b) = pair(asnA: 65001, asnB: 4_200_000_002) { configuration in
      configuration.vnis = [
        VNIConfiguration(
          vni: 100, importRouteTargets: [.twoOctetAS(65000, 100)],
          exportRouteTargets: [.twoOctetAS(65000, 100)])
      ]
    }
    try await start(a, b)
    waitEstablished(a, b)
    b.speaker.advertiseMAC(vni: 100, mac: m2, sequence: 4, sticky: true)
    XCTAssertTrue(
      a.sink.wait {
        $0.installed(100, self.m2) == .init(vtep: ip("10.0.0.2"), sequence: 4, sticky: true, peer: "B")
      })
    let status = await a.speaker.status()
    XCTAssertEqual(status.peers.first?.isInternal, false)
    a.speaker.requestRouteRefresh(peer: "B")
    XCTAssertTrue(
      a.sink.wait { $0.count { if case .updateProcessed = $0 { return true } else { return false } } >= 3 })
  }

  func testMACMoveUsesSequenceNumbersAndLoserWithdraws() async throws {
    let (a, b) = pair()
    try await start(a, b)
    waitEstablished(a, b)
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1)?.vtep == ip("10.0.0.1") })
    // The MAC shows up behind B: B advertises with A's sequence + 1.
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(
      a.sink.wait {
        $0.installed(100, self.m1) == .init(vtep: ip("10.0.0.2"), sequence: 1, sticky: false, peer: "B")
      })
    // A lost and withdrew its route, so B holds no remote route for it any more.
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1) == nil })
    try await waitForStatus(b.speaker) { $0.remoteMACRoutes == 0 && $0.localMACRoutes == 1 }
    // And back to A: sequence 2.
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(
      b.sink.wait {
        $0.installed(100, self.m1) == .init(vtep: ip("10.0.0.1"), sequence: 2, sticky: false, peer: "A")
      })
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) == nil })
  }

  func testDuplicateMACIsFrozenAfterRepeatedMoves() async throws {
    let (a, b) = pair(configure: { $0.duplicateMACMaxMoves = 3 })
    try await start(a, b)
    waitEstablished(a, b)
    // Moves seen by B: A->B (1), B->A (2), A->B (3): frozen on the third.
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1)?.sequence == 0 })
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1)?.sequence == 1 })
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1)?.sequence == 2 })
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.frozen.count == 1 })
    XCTAssertEqual(b.sink.snapshot.frozen.first?.2, 3)
    try await waitForStatus(b.speaker) { $0.frozenMACs == 1 }
    // Frozen: B stopped advertising, so A still has its own route (no seq 3 arrives).
    await b.speaker.sync()
    await a.speaker.sync()
    XCTAssertNil(a.sink.snapshot.installed(100, m1))
    // Operator clears it: the next advertisement goes out again.
    b.speaker.unfreezeMAC(vni: 100, mac: m1)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1)?.sequence == 3 })
  }

  func testGracefulRestartKeepsStaleRoutesUntilEndOfRIB() async throws {
    // B only accepts and A waits 1 s before reconnecting, so the stale state can be
    // inspected before the session comes back.
    let (a, b) = pair(peerB: { $0.passive = true }, configure: { $0.connectRetryTime = 1 })
    try await start(a, b)
    waitEstablished(a, b)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    b.speaker.advertiseMAC(vni: 100, mac: m2)
    b.speaker.advertiseInclusiveMulticast(vni: 100)
    XCTAssertTrue(a.sink.wait { $0.macs.count == 2 && $0.flood[100] == [ip("10.0.0.2")] })
    let removalsBefore = a.sink.snapshot.removeCalls

    // Link failure: no NOTIFICATION, so RFC 4724 helper mode keeps B's routes.
    await b.speaker.sync()
    a.speaker.dropConnection(peer: "B")
    await a.speaker.sync()  // A's side is closed before B changes anything
    b.speaker.withdrawMAC(vni: 100, mac: m2)  // changes while the session is down
    XCTAssertTrue(
      a.sink.wait { $0.count { if case .sessionDown = $0 { return true } else { return false } } >= 1 })
    let during = await a.speaker.status()
    XCTAssertEqual(a.sink.snapshot.macs.count, 2, "stale routes stay installed")
    XCTAssertEqual(a.sink.snapshot.removeCalls, removalsBefore)

    // Reconnect: B resends m1 and the type-3 route then End-of-RIB; m2 is swept.
    waitEstablished(a, b, count: 2)
    XCTAssertTrue(
      a.sink.wait { $0.count { if case .staleRoutesSwept = $0 { return true } else { return false } } >= 1 })
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m2) == nil })
    XCTAssertNotNil(a.sink.snapshot.installed(100, m1))
    XCTAssertEqual(a.sink.snapshot.flood[100], [ip("10.0.0.2")])
    let after = await a.speaker.status()
    XCTAssertEqual(after.peers.first?.routesStale, 0)
    XCTAssertTrue(during.peers.first.map { $0.state != .established || $0.routesStale > 0 } ?? false)
  }

  private func longLivedEvents(_ state: RecordedState) -> [Int] {
    state.events.compactMap {
      if case .longLivedStale(_, let routes) = $0 { return routes } else { return nil }
    }
  }

  private func sweeps(_ state: RecordedState) -> Int {
    state.count { if case .staleRoutesSwept = $0 { return true } else { return false } }
  }

  /// RFC 9494 between two of our speakers: after the graceful-restart phase (0.2 s) B's
  /// routes are long-lived stale at A, still installed; when B is back, what it resends
  /// is fresh again and End-of-RIB removes what it withdrew meanwhile.
  func testLongLivedStaleRoutesKeepForwardingUntilEndOfRIB() async throws {
    let (a, b) = pair(
      peerB: { $0.passive = true },
      configure: {
        $0.staleTime = 0.2
        $0.longLivedStaleTime = 60
        $0.connectRetryTime = 3
      })
    try await start(b, a)  // B listens before A connects: A retries late
    waitEstablished(a, b)
    let established = await a.speaker.status()
    XCTAssertEqual(established.peers.first?.peerLongLivedStaleTime, 60)
    XCTAssertEqual(established.peers.first?.peerGracefulRestart, true)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    b.speaker.advertiseMAC(vni: 100, mac: m2)
    b.speaker.advertiseInclusiveMulticast(vni: 100)
    XCTAssertTrue(a.sink.wait { $0.macs.count == 2 && $0.flood[100] == [ip("10.0.0.2")] })
    let removalsBefore = a.sink.snapshot.removeCalls

    await b.speaker.sync()
    a.speaker.dropConnection(peer: "B")
    await a.speaker.sync()
    b.speaker.withdrawMAC(vni: 100, mac: m2)
    // A reconnects after 3 s: the long-lived phase starts well before.
    XCTAssertTrue(a.sink.wait { self.longLivedEvents($0) == [3] }, "\(a.sink.snapshot.events)")
    let during = await a.speaker.status()
    XCTAssertEqual(during.peers.first?.stalePhase, .longLived)
    XCTAssertEqual(during.peers.first?.routesLongLivedStale, 3)
    XCTAssertEqual(during.peers.first?.routesStale, 3)
    XCTAssertEqual(a.sink.snapshot.macs.count, 2, "long-lived stale routes stay installed")
    XCTAssertEqual(a.sink.snapshot.flood[100], [ip("10.0.0.2")])
    XCTAssertEqual(a.sink.snapshot.removeCalls, removalsBefore)

    waitEstablished(a, b, count: 2)
    XCTAssertTrue(a.sink.wait { self.sweeps($0) >= 1 })
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m2) == nil })
    XCTAssertNotNil(a.sink.snapshot.installed(100, m1))
    let after = await a.speaker.status()
    XCTAssertEqual(after.peers.first?.stalePhase, nil)
    XCTAssertEqual(after.peers.first?.routesLongLivedStale, 0)
    XCTAssertEqual(after.peers.first?.routesAccepted, 2, "m1 and the type-3 route, fresh")
  }

  /// With no graceful-restart phase (stale time 0) the routes are long-lived stale at
  /// once, and go when the long-lived stale time (1 s) runs out with the peer still away.
  func testLongLivedStaleRoutesGoWhenTheirTimeRunsOut() async throws {
    let (a, b) = pair(
      peerB: { $0.passive = true },
      configure: {
        $0.staleTime = 0
        $0.longLivedStaleTime = 1
        $0.connectRetryTime = 30
      })
    try await start(b, a)  // B listens before A connects: A retries late
    waitEstablished(a, b)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) != nil })
    await b.speaker.sync()
    a.speaker.dropConnection(peer: "B")
    XCTAssertTrue(a.sink.wait { self.longLivedEvents($0) == [1] })
    XCTAssertTrue(a.sink.wait { self.sweeps($0) == 1 })
    XCTAssertNil(a.sink.snapshot.installed(100, m1), "removed when the long-lived time ran out")
    let status = await a.speaker.status()
    XCTAssertEqual(status.peers.first?.routesAccepted, 0)
    XCTAssertNotEqual(status.peers.first?.state, .established, "B was still away")
  }

  /// A peer without long-lived graceful restart: only the graceful-restart phase.
  func testWithoutLongLivedGracefulRestartOnlyTheStaleTimeApplies() async throws {
    let (a, b) = pair(
      peerB: { $0.passive = true },
      configure: {
        $0.staleTime = 0.2
        $0.connectRetryTime = 30
      })
    try await start(b, a)  // B listens before A connects: A retries late
    waitEstablished(a, b)
    let status = await a.speaker.status()
    XCTAssertNil(status.peers.first?.peerLongLivedStaleTime)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) != nil })
    await b.speaker.sync()
    a.speaker.dropConnection(peer: "B")
    XCTAssertTrue(a.sink.wait { self.sweeps($0) == 1 })
    XCTAssertNil(a.sink.snapshot.installed(100, m1))
    XCTAssertEqual(longLivedEvents(a.sink.snapshot), [])
  }

  func testNotificationEndsGracefulRestart() async throws {
    let (a, b) = pair()
    try await start(a, b)
    waitEstablished(a, b)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) != nil })
    // Cease/4, sent as an RFC 8538 Hard Reset (both announce the N bit): routes go at once.
    b.speaker.resetPeer("A")
    XCTAssertTrue(a.sink.wait { $0.removeCalls == 1 })
    waitEstablished(a, b, count: 2)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) != nil })
  }

  func testMaximumRoutesSendsCeaseOne() async throws {
    let (a, b) = pair(peerA: { $0.maxRoutes = 2 })
    try await start(a, b)
    waitEstablished(a, b)
    for index in 1...3 { b.speaker.advertiseMAC(vni: 100, mac: MACAddress(rawValue: UInt64(index))) }
    // Both announce the N bit, so Cease/1 leaves as a Hard Reset carrying it (RFC 8538).
    let sent = NotificationMessage.maximumPrefixesReached.asHardReset
    XCTAssertTrue(a.sink.wait { $0.events.contains(.notificationSent(peer: "B", sent)) })
    XCTAssertTrue(b.sink.wait { $0.events.contains(.notificationReceived(peer: "A", sent)) })
    XCTAssertTrue(a.sink.wait { $0.macs.count < 3 })
  }

  func testRouteTargetConstraintFiltersWhatWeSend() async throws {
    // A imports/exports VNIs 100 and 200; B only 100. With RTC, A never sends 200.
    let (a, b) = pair(
      vnisA: [100, 200], vnisB: [100], peerA: { $0.routeTargetConstraint = true },
      peerB: { $0.routeTargetConstraint = true })
    try await start(a, b)
    waitEstablished(a, b)
    a.speaker.advertiseMAC(vni: 200, mac: m2)
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1) != nil })
    let status = await b.speaker.status()
    XCTAssertEqual(status.peers.first?.routeTargetConstraint, true)
    XCTAssertEqual(status.peers.first?.routesIgnored, 0)
    XCTAssertEqual(status.peers.first?.routesReceived, 1)
  }

  /// RFC 4684: a peer that withdraws a membership is sent withdrawals of our routes it no
  /// longer asks for (type 2 and 3 of that VNI, nothing of the VNIs it still asks for), and
  /// they go out again when it asks again.
  func testAWithdrawnMembershipWithdrawsTheRoutesItCovered() async throws {
    let port = freeTCPPort()
    var rawPeer = PeerConfiguration(
      name: "raw", address: "127.0.0.1", port: 9, remoteAS: 65000, passive: true)
    rawPeer.routeTargetConstraint = true
    let node = makeNode(
      asn: 65000, routerID: 0x0101_0101, vtep: "10.0.0.1", port: port, peers: [rawPeer], vnis: [100, 200])
    try await start(node)
    node.speaker.advertiseMAC(vni: 100, mac: m1)
    node.speaker.advertiseMAC(vni: 200, mac: m2)
    node.speaker.advertiseInclusiveMulticast(vni: 200)
    await node.speaker.sync()
    let raw = try XCTUnwrap(RawBGPPeer(port: port))
    XCTAssertNotNil(
      raw.handshake(
        asn: 65000, routerID: 0x0909_0909, holdTime: 30,
        capabilities: [.multiprotocol(.l2vpnEVPN), .multiprotocol(.routeTargetConstraint)]))
    let memberships = [100, 200].map {
      RouteTargetMembership(originAS: 65000, routeTarget: .twoOctetAS(65000, UInt32($0)))
    }
    func membershipUpdate(reach: [RouteTargetMembership], unreach: [RouteTargetMembership]) -> BGPMessage {
      var attributes = PathAttributes()
      if !unreach.isEmpty { attributes.mpUnreach = .routeTargetMembership(unreach) }
      if !reach.isEmpty {
        attributes.origin = .igp
        attributes.asPath = []
        attributes.localPreference = 100
        attributes.mpReach = MultiprotocolReach(
          nextHop: ip("192.0.2.9").bytes, nlri: .routeTargetMembership(reach))
      }
      return .update(UpdateMessage(attributes: attributes))
    }
    raw.send(membershipUpdate(reach: memberships, unreach: []))
    raw.send(.update(.endOfRIB(.routeTargetConstraint)))
    /// What the speaker sends, read until `done` holds of it (or 10 s pass): MAC routes
    /// announced and withdrawn, type-3 routes announced and withdrawn. The speaker sends
    /// in the order it acts, so what it would have sent before an awaited message has
    /// come in by then.
    struct Seen: Equatable {
      var announced: Set<MACAddress> = []
      var withdrawn: Set<MACAddress> = []
      var multicastAnnounced = 0
      var multicastWithdrawn = 0
    }
    func read(until done: (Seen) -> Bool) -> Seen {
      var seen = Seen()
      let deadline = Date().addingTimeInterval(10)
      while !done(seen), let message = raw.receive(timeout: max(0, deadline.timeIntervalSinceNow)) {
        guard case .update(let update) = message else { continue }
        if case .evpn(let routes)? = update.attributes.mpReach?.nlri {
          for route in routes {
            if case .macIP(let route) = route { seen.announced.insert(route.mac) }
            if case .inclusiveMulticast = route { seen.multicastAnnounced += 1 }
          }
        }
        if case .evpn(let routes)? = update.attributes.mpUnreach {
          for route in routes {
            if case .macIP(let route) = route { seen.withdrawn.insert(route.mac) }
            if case .inclusiveMulticast = route { seen.multicastWithdrawn += 1 }
          }
        }
      }
      return seen
    }
    let m3 = mac("02:00:00:00:00:03")
    let initial = read { $0.announced == [self.m1, self.m2] && $0.multicastAnnounced == 1 }
    XCTAssertEqual(initial.announced, [m1, m2], "both VNIs asked for")
    XCTAssertEqual(initial.multicastAnnounced, 1)

    raw.send(membershipUpdate(reach: [], unreach: [memberships[1]]))
    let afterWithdrawal = read { $0.withdrawn.contains(self.m2) && $0.multicastWithdrawn == 1 }
    XCTAssertEqual(afterWithdrawal.withdrawn, [m2], "VNI 200's route withdrawn, VNI 100's kept")
    XCTAssertEqual(afterWithdrawal.multicastWithdrawn, 1, "VNI 200's type-3 route withdrawn")
    XCTAssertEqual(afterWithdrawal.announced, [])

    // Not a member now: a MAC of VNI 200 that goes is not even withdrawn from it (m3,
    // advertised after, is the marker)...
    node.speaker.withdrawMAC(vni: 200, mac: m2)
    node.speaker.advertiseMAC(vni: 100, mac: m3)
    let meanwhile = read { $0.announced.contains(m3) }
    XCTAssertEqual(meanwhile, Seen(announced: [m3]))
    // ...and asking again brings back what there is (the type-3 route comes last), not
    // what there was.
    raw.send(membershipUpdate(reach: [memberships[1]], unreach: []))
    let again = read { $0.multicastAnnounced == 1 }
    XCTAssertEqual(again.multicastAnnounced, 1, "\(again)")
    XCTAssertFalse(again.announced.contains(m2), "\(again)")
    XCTAssertEqual(again.withdrawn, [])
  }

  func testWithoutRouteTargetConstraintForeignRoutesAreCountedNotInstalled() async throws {
    let (a, b) = pair(vnisA: [100, 200], vnisB: [100])
    try await start(a, b)
    waitEstablished(a, b)
    a.speaker.advertiseMAC(vni: 200, mac: m2)
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1) != nil })
    try await waitForStatus(b.speaker) { $0.peers.first?.routesIgnored == 1 }
    XCTAssertEqual(b.sink.snapshot.macs.count, 1)
  }

  func testConnectRetryUntilPeerAppears() async throws {
    let (a, b) = pair()
    try await start(a)
    try await waitForStatus(a.speaker) { $0.peers.first?.lastError?.contains("connect") == true }
    try await start(b)
    waitEstablished(a, b)
  }

  func testHoldTimerExpirySendsNotification() async throws {
    let port = freeTCPPort()
    let node = makeNode(
      asn: 65000, routerID: 0x0101_0101, vtep: "10.0.0.1", port: port,
      peers: [PeerConfiguration(name: "raw", address: "127.0.0.1", port: 9, remoteAS: 65000, passive: true)])
    try await start(node)
    let raw = try XCTUnwrap(RawBGPPeer(port: port))
    let open = try XCTUnwrap(raw.handshake(asn: 65000, routerID: 0x0909_0909, holdTime: 3))
    XCTAssertEqual(open.asn, 65000)
    XCTAssertTrue(node.sink.wait { $0.established("raw") == 1 })
    // Stay silent: after 3 s the speaker gives up with Hold Timer Expired.
    XCTAssertEqual(raw.receiveNotification(timeout: 8), .holdTimerExpired)
  }

  func testOnlyANormalRouteRefreshRequestResendsRoutes() async throws {
    let port = freeTCPPort()
    let node = makeNode(
      asn: 65000, routerID: 0x0101_0101, vtep: "10.0.0.1", port: port,
      peers: [PeerConfiguration(name: "raw", address: "127.0.0.1", port: 9, remoteAS: 65000, passive: true)])
    try await start(node)
    node.speaker.advertiseMAC(vni: 100, mac: m1)
    let raw = try XCTUnwrap(RawBGPPeer(port: port))
    XCTAssertNotNil(raw.handshake(asn: 65000, routerID: 0x0909_0909, holdTime: 30))
    let m1 = self.m1
    func advertisementsOfM1(within seconds: Double) -> Int {
      var count = 0
      let deadline = Date().addingTimeInterval(seconds)
      while let message = raw.receive(timeout: max(0, deadline.timeIntervalSinceNow)) {
        guard case .update(let update) = message, case .evpn(let routes)? = update.attributes.mpReach?.nlri
        else { continue }
        count += routes.filter { if case .macIP(let route) = $0 { route.mac == m1 } else { false } }.count
      }
      return count
    }
    XCTAssertEqual(advertisementsOfM1(within: 2), 1, "initial advertisement")
    // RFC 7313: Beginning- and End-of-RIB-Refresh markers and a reserved subtype ask for nothing.
    for subtype: UInt8 in [1, 2, 255] {
      raw.send(.routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN, subtype: subtype)))
    }
    XCTAssertEqual(advertisementsOfM1(within: 1.5), 0)
    raw.send(.routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN)))
    XCTAssertEqual(advertisementsOfM1(within: 2), 1, "a normal request resends the route")
  }

  func testMalformedUpdateResetsOnlyThatSession() async throws {
    let (a, b) = pair()
    var rawPeer = PeerConfiguration(
      name: "raw", address: "127.0.0.1", port: 9, remoteAS: 65000, passive: true)
    rawPeer.holdTime = 30
    // A third, passive peer on A from the same address: matched by the AS in its OPEN.
    let portA = a.port
    let a2 = makeNode(
      asn: 65000, routerID: 0x0101_0101, vtep: "10.0.0.1", port: portA,
      peers: a.speaker.configuration.peers + [
        PeerConfiguration(name: "raw", address: "127.0.0.1", port: 9, remoteAS: 65099, passive: true)
      ])
    try await start(a2, b)
    XCTAssertTrue(a2.sink.wait { $0.established("B") >= 1 })
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(a2.sink.wait { $0.installed(100, self.m1) != nil })

    let raw = try XCTUnwrap(RawBGPPeer(port: portA))
    XCTAssertNotNil(raw.handshake(asn: 65099, routerID: 0x0909_0909, holdTime: 30))
    // ORIGIN with the optional bit set is only treat-as-withdraw: session stays.
    var attributes = hex("c0 01 01 00 40 02 00")
    attributes += hex("80 0e 1c 0019 46 04 c0000201 00 03 11 0001 c0000201 0001 00000000 20 c0000201")
    raw.send(rawUpdate(attributes))
    // A truncated MP_REACH resets the session with 3/9.
    raw.send(rawUpdate(hex("40 01 01 00 40 02 00 80 0e 03 0019 46")))
    let notification = raw.receiveNotification()
    XCTAssertEqual(notification?.code, 3)
    XCTAssertEqual(notification?.subcode, 9)
    XCTAssertTrue(
      a2.sink.wait {
        $0.events.contains {
          if case .sessionDown(let peer, _) = $0 { return peer == "raw" } else { return false }
        }
      })
    // The session to B is untouched: still one Established transition, routes kept.
    let status = await a2.speaker.status()
    XCTAssertEqual(status.peers.first { $0.name == "B" }?.state, .established)
    XCTAssertEqual(status.peers.first { $0.name == "B" }?.establishedTransitions, 1)
    XCTAssertNotNil(a2.sink.snapshot.installed(100, m1))
    XCTAssertEqual(status.peers.first { $0.name == "raw" }?.routesAccepted, 0)
  }

  /// RFC 7606 at the session: an UPDATE that is only treat-as-withdraw withdraws its routes,
  /// one with a malformed optional attribute is installed without it (attribute discard),
  /// and the session stays Established through both: no NOTIFICATION, one Established
  /// transition, and a route refresh afterwards is still answered.
  func testTreatAsWithdrawAndAttributeDiscardKeepTheSessionEstablished() async throws {
    let port = freeTCPPort()
    let node = makeNode(
      asn: 65000, routerID: 0x0101_0101, vtep: "10.0.0.1", port: port,
      peers: [PeerConfiguration(name: "raw", address: "127.0.0.1", port: 9, remoteAS: 65000, passive: true)])
    try await start(node)
    let advertised = mac("02:00:00:00:0b:09")
    node.speaker.advertiseMAC(vni: 100, mac: advertised)
    let raw = try XCTUnwrap(RawBGPPeer(port: port))
    XCTAssertNotNil(raw.handshake(asn: 65000, routerID: 0x0909_0909, holdTime: 30))
    XCTAssertEqual(receiveAdvertisement(of: advertised, from: raw), "advertised", "the initial table")

    let first = mac("02:00:00:00:0a:01")
    let second = mac("02:00:00:00:0a:02")
    raw.send(rawUpdate(announcementAttributes(first)))
    XCTAssertTrue(node.sink.wait { $0.installed(100, first) != nil }, "a valid UPDATE is installed")

    // ORIGIN with the optional bit set (RFC 7606 section 7.1): treat-as-withdraw.
    var withdrawing = announcementAttributes(first)
    let origin = try XCTUnwrap(
      withdrawing.indices.first { withdrawing[$0...].starts(with: [0x40, 0x01, 0x01]) })
    withdrawing[origin] = 0xC0
    raw.send(rawUpdate(withdrawing))
    XCTAssertTrue(node.sink.wait { $0.installed(100, first) == nil }, "treat-as-withdraw removes the route")

    // ATOMIC_AGGREGATE of length 1 (section 7.6): attribute discard, the route stays.
    raw.send(rawUpdate(announcementAttributes(second) + hex("40 06 01 00")))
    XCTAssertTrue(node.sink.wait { $0.installed(100, second) != nil }, "attribute discard installs the route")

    // Still Established: a route refresh is answered with our route, before any NOTIFICATION.
    raw.send(.routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN)))
    XCTAssertEqual(
      receiveAdvertisement(of: advertised, from: raw), "advertised",
      "the route refresh after the malformed UPDATEs is answered")
    let status = await node.speaker.status()
    let peer = try XCTUnwrap(status.peers.first { $0.name == "raw" })
    XCTAssertEqual(peer.state, .established)
    XCTAssertEqual(peer.establishedTransitions, 1)
    XCTAssertEqual(peer.routesAccepted, 1, "only the attribute-discard route remains")
  }

  /// Reads what the speaker sends until an UPDATE announces `mac` ("advertised"), a
  /// NOTIFICATION arrives (its description) or the connection stays silent ("nothing").
  private func receiveAdvertisement(of mac: MACAddress, from raw: RawBGPPeer) -> String {
    while let message = raw.receive() {
      if case .notification(let notification) = message { return "\(notification)" }
      if case .update(let update) = message, case .evpn(let routes)? = update.attributes.mpReach?.nlri,
        routes.contains(where: { if case .macIP(let route) = $0 { route.mac == mac } else { false } })
      {
        return "advertised"
      }
    }
    return "nothing"
  }

  /// The path attributes of an iBGP announcement of `mac` in VNI 100 from VTEP 192.0.2.1,
  /// as a speaker encodes them (route target 65000:100, VXLAN encapsulation).
  private func announcementAttributes(_ mac: MACAddress) -> [UInt8] {
    var attributes = PathAttributes()
    attributes.origin = .igp
    attributes.asPath = []
    attributes.localPreference = 100
    attributes.extendedCommunities = [.routeTarget(.twoOctetAS(65000, 100)), .vxlanEncapsulation]
    let route = EVPNNLRI.macIP(
      MACIPAdvertisementRoute(routeDistinguisher: .ipv4(0xC000_0201, 1), mac: mac, ip: nil, label1: 100))
    let message = UpdateBuilder.announcements(
      [route], attributes: attributes, nextHop: ip("192.0.2.1").bytes,
      context: DecodingContext(fourOctetAS: false))[0]
    // Header (19), withdrawn routes length (2, zero), attributes length (2), attributes; no NLRI.
    let length = Int(message[21]) << 8 | Int(message[22])
    return Array(message[23..<(23 + length)])
  }

  func testOpenWithWrongASIsRejected() async throws {
    let port = freeTCPPort()
    let node = makeNode(
      asn: 65000, routerID: 0x0101_0101, vtep: "10.0.0.1", port: port,
      peers: [PeerConfiguration(name: "raw", address: "127.0.0.1", port: 9, remoteAS: 65000, passive: true)])
    try await start(node)
    let raw = try XCTUnwrap(RawBGPPeer(port: port))
    raw.send(.open(OpenMessage(asn: 65123, holdTime: 30, bgpIdentifier: 9, capabilities: [])))
    let notification = raw.receiveNotification()
    XCTAssertEqual(notification.map { [$0.code, $0.subcode] }, [2, 2])
  }

  func testTCPMD5OptionIsAccepted() async throws {
    let (a, b) = pair(peerA: { $0.password = "s3cret" }, peerB: { $0.password = "s3cret" })
    try await start(a, b)
    waitEstablished(a, b)
    let status = await a.speaker.status()
    XCTAssertEqual(status.peers.first?.md5, true)
    // The key is really on the listener: an unsigned SYN from 127.0.0.1 goes unanswered.
    XCTAssertFalse(plainConnectSucceeds(port: a.port, timeout: 1))
    let (c, _) = pair()
    try await start(c)
    XCTAssertTrue(plainConnectSucceeds(port: c.port, timeout: 5), "control: no key, connect works")
  }

  private func rawUpdate(_ attributes: [UInt8]) -> [UInt8] {
    var body: [UInt8] = [0, 0, UInt8(attributes.count >> 8), UInt8(attributes.count & 0xFF)] + attributes
    body =
      hex(String(repeating: "ff", count: 16)) + [
        UInt8((19 + body.count) >> 8), UInt8((19 + body.count) & 0xFF), 2,
      ] + body
    return body
  }
}

/// Polls `status()` until `predicate` holds; status has no change notification.
func waitForStatus(
  _ speaker: EVPNSpeaker, timeout: Double = 15, file: StaticString = #filePath, line: UInt = #line,
  _ predicate: (SpeakerStatus) -> Bool
) async throws {
  let deadline = Date().addingTimeInterval(timeout)
  var last = await speaker.status()
  while !predicate(last) {
    guard Date() < deadline else {
      XCTFail("status never matched: \(last)", file: file, line: line)
      return
    }
    try await Task.sleep(nanoseconds: 20_000_000)
    last = await speaker.status()
  }
}

// MARK: duplicate MACs and IP bindings

extension BGPSessionTests {
  private var ip1: IPAddress { ip("10.1.1.1") }
  private var ip2: IPAddress { ip("10.1.1.2") }

  private func frozenEvents(_ state: RecordedState) -> Int {
    state.count { if case .macFrozen = $0 { return true } else { return false } }
  }

  private func unfrozenReasons(_ state: RecordedState) -> [String] {
    state.events.compactMap { if case .macUnfrozen(_, _, let reason) = $0 { reason } else { nil } }
  }

  func testLocalIPBindingsGoOutAsMACIPRoutesWithTheMACAndComeBackWithIt() async throws {
    let (a, b) = pair()
    try await start(a, b)
    waitEstablished(a, b)
    // A binding of a MAC that is not (yet) local is held, not advertised.
    b.speaker.bindLocalIP(vni: 100, mac: m1, ip: ip1)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    // The MAC-only route goes with it.
    XCTAssertTrue(
      a.sink.wait {
        $0.installed(100, self.m1, self.ip1)?.vtep == ip("10.0.0.2")
          && $0.installed(100, self.m1)?.sequence == 0
      })
    b.speaker.bindLocalIP(vni: 100, mac: m1, ip: ip2)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1, self.ip2)?.sequence == 0 })
    // The MAC moves to A (sequence 1): B withdraws its MAC and MAC/IP routes.
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1)?.sequence == 1 })
    XCTAssertTrue(
      a.sink.wait { $0.installed(100, self.m1) == nil && $0.installed(100, self.m1, self.ip1) == nil },
      "\(a.sink.snapshot.macs)")
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1, self.ip2) == nil })
    // Back to B: the bindings go out again with the MAC's new sequence.
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(
      a.sink.wait {
        $0.installed(100, self.m1, self.ip1)?.sequence == 2
          && $0.installed(100, self.m1, self.ip2)?.sequence == 2
          && $0.installed(100, self.m1)?.sequence == 2
      }, "\(a.sink.snapshot.macs)")
    // A binding that goes is withdrawn alone.
    b.speaker.unbindLocalIP(vni: 100, mac: m1, ip: ip1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1, self.ip1) == nil })
    await b.speaker.sync()
    await a.speaker.sync()
    XCTAssertNotNil(a.sink.snapshot.installed(100, m1, ip2))
    XCTAssertNotNil(a.sink.snapshot.installed(100, m1))
  }

  func testFrozenMACIsWithdrawnNotAdvertisedNorImportedUntilCleared() async throws {
    // Only B detects duplicates (A's router ID is 1.1.1.1).
    let (a, b) = pair(configure: { if $0.routerID == 0x0202_0202 { $0.duplicateMACMaxMoves = 3 } })
    try await start(a, b)
    waitEstablished(a, b)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    b.speaker.bindLocalIP(vni: 100, mac: m1, ip: ip1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1, self.ip1)?.sequence == 0 })
    // B sees moves B->A (1), A->B (2), B->A (3): frozen where the third move put it.
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1)?.sequence == 1 })
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1, self.ip1)?.sequence == 2 })
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.frozen.count == 1 })
    XCTAssertTrue(b.sink.wait { self.frozenEvents($0) == 1 })
    XCTAssertEqual(b.sink.snapshot.installed(100, m1)?.sequence, 3, "frozen behind A")
    XCTAssertEqual(b.speaker.duplicateMACs, [DuplicateMAC(vni: 100, mac: m1)])
    // Nothing of B's is left at A.
    XCTAssertTrue(
      a.sink.wait { $0.installed(100, self.m1) == nil && $0.installed(100, self.m1, self.ip1) == nil },
      "\(a.sink.snapshot.macs)")

    // While frozen: the MAC shows up at B again and gets another IP: nothing is sent.
    // A withdraws its route: B does not process it (its sink still points at A).
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    b.speaker.bindLocalIP(vni: 100, mac: m1, ip: ip2)
    // B must hold its own route before A's withdrawal arrives: an event loop serves
    // socket reads before queued tasks, so without this the withdrawal can overtake
    // them on a busy machine (and B rightly removes a route nobody holds any more).
    await b.speaker.sync()
    a.speaker.withdrawMAC(vni: 100, mac: m1)
    await b.speaker.sync()
    try await waitForStatus(a.speaker) { $0.localMACRoutes == 0 }
    await b.speaker.sync()
    await a.speaker.sync()
    XCTAssertTrue(a.sink.snapshot.macs.isEmpty, "B advertised a frozen MAC: \(a.sink.snapshot.macs)")
    XCTAssertEqual(b.sink.snapshot.installed(100, m1)?.vtep, ip("10.0.0.1"), "frozen: A's withdrawal ignored")
    let status = await b.speaker.status()
    XCTAssertEqual(status.frozenMACs, 1)
    XCTAssertEqual(status.duplicateMACs.map(\.mac), [m1.description])
    XCTAssertEqual(status.duplicateMACs.first?.moves, 3)
    XCTAssertNil(status.duplicateMACs.first?.releaseIn, "frozen until cleared")

    // Cleared: B catches up (A's route is gone, B's own wins) and advertises everything.
    XCTAssertEqual(
      b.speaker.clearDuplicateMACsBlocking(vni: 100), [DuplicateMAC(vni: 100, mac: m1)])
    XCTAssertEqual(unfrozenReasons(b.sink.snapshot), ["cleared"])
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1) == nil })
    XCTAssertTrue(
      a.sink.wait {
        $0.installed(100, self.m1)?.sequence == 4 && $0.installed(100, self.m1, self.ip1)?.sequence == 4
          && $0.installed(100, self.m1, self.ip2)?.sequence == 4
      }, "\(a.sink.snapshot.macs)")
    XCTAssertTrue(b.speaker.duplicateMACs.isEmpty)
    XCTAssertEqual(b.speaker.clearDuplicateMACsBlocking(), [], "nothing left to clear")
  }

  func testFreezeTimeReleasesAFrozenMACByItself() async throws {
    let (a, b) = pair(configure: {
      guard $0.routerID == 0x0202_0202 else { return }
      $0.duplicateMACMaxMoves = 2
      $0.duplicateMACFreezeTime = 1
    })
    try await start(a, b)
    waitEstablished(a, b)
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { $0.installed(100, self.m1)?.sequence == 0 })
    // A->B (1), B->A (2): frozen behind A, B's route withdrawn.
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1)?.sequence == 1 })
    a.speaker.advertiseMAC(vni: 100, mac: m1)
    XCTAssertTrue(b.sink.wait { self.frozenEvents($0) == 1 })
    let status = await b.speaker.status()
    XCTAssertEqual(status.duplicateMACs.count, 1)
    XCTAssertLessThanOrEqual(status.duplicateMACs.first?.releaseIn ?? 99, 1)
    // Back at B while frozen: held. After the freeze time it is released and sent.
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    await b.speaker.sync()
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) == nil })
    XCTAssertTrue(b.sink.wait(timeout: 10) { self.unfrozenReasons($0) == ["freeze time elapsed"] })
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1)?.sequence == 3 }, "\(a.sink.snapshot.macs)")
    XCTAssertTrue(b.speaker.duplicateMACs.isEmpty)
  }
}
