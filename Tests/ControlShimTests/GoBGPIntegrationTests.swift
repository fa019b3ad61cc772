import Dataplane
import Foundation
import XCTest

@testable import ControlShim

/// Interop with a real GoBGP 3.10 over iBGP on 127.0.0.1 (non-179 ports), family
/// l2vpn-evpn. gobgpd runs without graceful restart: GoBGP 3.10 panics in MAC-mobility
/// handling as GR helper with type-2 routes held, so our side keeps routes stale by
/// policy (`StaleRoutePolicy.always`) instead.
final class GoBGPIntegrationTests: XCTestCase {
  private var daemon: GoBGPDaemon?
  private var speaker: EVPNSpeaker?
  private var sink = RecordingSink()

  override func tearDown() async throws {
    if let speaker { await speaker.shutdown() }
    if let daemon {
      daemon.stop()
      if testRun?.hasSucceeded == false { print("gobgpd log:\n" + daemon.log.suffix(4000)) }
      daemon.removeFiles()
    }
  }

  private func startPair(
    staleTime: Double = 300, ourASN: UInt32 = 65000, password: String? = nil, routeTarget: RouteTarget? = nil,
    longLivedStaleTime: Double = 0, gobgpGracefulRestart: String = "",
    gobgpFamilyGracefulRestart: String = "",
    restarting: Bool = false
  ) async throws -> GoBGPDaemon {
    let ourPort = freeTCPPort()
    let neighbors = """
      [[neighbors]]
        [neighbors.config]
          neighbor-address = "127.0.0.1"
          peer-as = \(ourASN)
          \(password.map { "auth-password = \"\($0)\"" } ?? "")
        [neighbors.transport.config]
          remote-port = \(ourPort)
        [neighbors.timers.config]
          connect-retry = 1
          hold-time = 9
          keepalive-interval = 3
      \(gobgpGracefulRestart)
        [[neighbors.afi-safis]]
          [neighbors.afi-safis.config]
            afi-safi-name = "l2vpn-evpn"
      \(gobgpFamilyGracefulRestart)
      """
    let daemon = try GoBGPDaemon(asn: 65000, routerID: "9.9.9.9", neighbors: neighbors)
    self.daemon = daemon
    var configuration = SpeakerConfiguration(
      asn: ourASN, routerID: 0x0101_0101, vtep: ip("10.0.0.1"), listenAddress: "127.0.0.1",
      listenPort: ourPort,
      vnis: [
        VNIConfiguration(
          vni: 100, importRouteTargets: routeTarget.map { [$0] }, exportRouteTargets: routeTarget.map { [$0] }
        )
      ],
      peers: [
        PeerConfiguration(
          name: "gobgp", address: "127.0.0.1", port: daemon.bgpPort, remoteAS: 65000, password: password,
          staleRoutePolicy: .always)
      ])
    configuration.connectRetryTime = 0.2
    configuration.connectRetryMaximum = 2
    configuration.staleTime = staleTime
    configuration.longLivedStaleTime = longLivedStaleTime
    configuration.restarting = restarting
    let speaker = EVPNSpeaker(configuration: configuration, sink: sink)
    self.speaker = speaker
    sink.observe(speaker)
    try await speaker.start()
    XCTAssertTrue(sink.wait(timeout: 30) { $0.established("gobgp") >= 1 }, "no session with gobgpd")
    return daemon
  }

  /// Paths in gobgpd's RIB whose key mentions `mac`.
  private func paths(_ rib: [String: [[String: Any]]], mac: String) -> [[String: Any]] {
    rib.filter { $0.key.contains("[mac:\(mac)]") }.flatMap(\.value)
  }

  private func attribute(_ path: [String: Any], type: Int) -> [String: Any]? {
    (path["attrs"] as? [[String: Any]])?.first { ($0["type"] as? Int) == type }
  }

  private func extendedCommunities(_ path: [String: Any]) -> [[String: Any]] {
    attribute(path, type: 16)?["value"] as? [[String: Any]] ?? []
  }

  func testRoutesFlowBothWaysWithGoBGP() async throws {
    let daemon = try await startPair()
    let remoteMAC = mac("02:00:00:00:00:aa")

    // gobgp -> us: type 2 and type 3 reach the sink.
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:aa 10.1.1.1 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    XCTAssertEqual(
      daemon.evpn(
        "add multicast 10.0.0.9 etag 0 rd 9.9.9.9:1 rt 65000:100 encap vxlan pmsi ingress-repl 100 10.0.0.9"
      ).status, 0)
    XCTAssertTrue(
      sink.wait { $0.installed(100, remoteMAC, ip("10.1.1.1")) != nil && $0.flood[100] == [ip("10.0.0.9")] })
    XCTAssertEqual(
      sink.snapshot.installed(100, remoteMAC, ip("10.1.1.1")),
      .init(vtep: ip("10.0.0.9"), sequence: 0, sticky: false, peer: "gobgp"))
    // A route for a VNI we do not have is counted, not installed.
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:ab 10.1.1.3 etag 0 label 555 rd 9.9.9.9:5 rt 65000:555 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    try await waitForStatus(speaker!) { $0.peers.first?.routesIgnored == 1 }

    // us -> gobgp: RD, RT, label = VNI, encapsulation and next hop as gobgp decodes them.
    speaker!.advertiseMAC(vni: 100, mac: mac("02:00:00:00:00:01"), ip: ip("10.1.1.2"))
    speaker!.advertiseInclusiveMulticast(vni: 100)
    XCTAssertTrue(
      daemon.waitForRIB {
        !self.paths($0, mac: "02:00:00:00:00:01").isEmpty && $0.keys.contains { $0.contains("[ip:10.0.0.1]") }
      })
    let rib = daemon.evpnRIB()
    let ours = try XCTUnwrap(paths(rib, mac: "02:00:00:00:00:01").first)
    let nlri = try XCTUnwrap((ours["nlri"] as? [String: Any])?["value"] as? [String: Any])
    let rd = try XCTUnwrap(nlri["rd"] as? [String: Any])
    XCTAssertEqual(rd["type"] as? Int, 1)
    XCTAssertEqual(rd["admin"] as? String, "1.1.1.1")
    XCTAssertEqual(rd["assigned"] as? Int, 1)
    XCTAssertEqual(nlri["labels"] as? [Int], [100])
    XCTAssertEqual(nlri["ip"] as? String, "10.1.1.2")
    XCTAssertEqual(attribute(ours, type: 14)?["nexthop"] as? String, "10.0.0.1")
    XCTAssertEqual(attribute(ours, type: 5)?["value"] as? Int, 100, "iBGP LOCAL_PREF")
    let communities = extendedCommunities(ours)
    XCTAssertTrue(
      communities.contains {
        ($0["type"] as? Int) == 0 && ($0["subtype"] as? Int) == 2 && ($0["value"] as? String) == "65000:100"
      }, "\(communities)")
    XCTAssertTrue(
      communities.contains { ($0["subtype"] as? Int) == 12 && ($0["tunnel_type"] as? Int) == 8 },
      "\(communities)")
    let multicast = try XCTUnwrap(
      rib.first { $0.key.contains("[type:multicast]") && $0.key.contains("[ip:10.0.0.1]") }?.value.first)
    let pmsi = try XCTUnwrap(attribute(multicast, type: 22))
    XCTAssertEqual(pmsi["tunnel-type"] as? Int, 6)
    XCTAssertEqual(pmsi["label"] as? Int, 100)
    XCTAssertEqual(pmsi["tunnel-id"] as? String, "10.0.0.1")

    // Withdrawals both ways.
    XCTAssertEqual(
      daemon.evpn("del macadv 02:00:00:00:00:aa 10.1.1.1 etag 0 label 100 rd 9.9.9.9:1").status, 0)
    XCTAssertTrue(sink.wait { $0.installed(100, remoteMAC, ip("10.1.1.1")) == nil })
    speaker!.withdrawMAC(vni: 100, mac: mac("02:00:00:00:00:01"), ip: ip("10.1.1.2"))
    XCTAssertTrue(daemon.waitForRIB { self.paths($0, mac: "02:00:00:00:00:01").isEmpty })
    XCTAssertEqual(daemon.evpn("del multicast 10.0.0.9 etag 0 rd 9.9.9.9:1").status, 0)
    XCTAssertTrue(sink.wait { $0.flood[100] == [] })
  }

  func testMACMoveWithSequenceNumbers() async throws {
    let daemon = try await startPair()
    let moving = mac("02:00:00:00:00:cc")
    // The MAC lives behind gobgp's VTEP (no MAC mobility community: sequence 0).
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:cc 0.0.0.0 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    XCTAssertTrue(sink.wait { $0.installed(100, moving)?.vtep == ip("10.0.0.9") })
    // It moves to us: we advertise with sequence 0 + 1 and stop pointing at 10.0.0.9.
    speaker!.advertiseMAC(vni: 100, mac: moving)
    XCTAssertTrue(sink.wait { $0.installed(100, moving) == nil })
    XCTAssertTrue(
      daemon.waitForRIB { rib in
        self.paths(rib, mac: "02:00:00:00:00:cc").contains { path in
          (self.attribute(path, type: 14)?["nexthop"] as? String) == "10.0.0.1"
            && self.extendedCommunities(path).contains {
              ($0["type"] as? Int) == 6 && ($0["sequence"] as? Int) == 1
            }
        }
      }, "our MAC-mobility route never showed up: \(daemon.evpn("-j").output)")
    // An explicit, higher sequence is carried as is.
    speaker!.advertiseMAC(vni: 100, mac: moving, sequence: 7)
    XCTAssertTrue(
      daemon.waitForRIB { rib in
        self.paths(rib, mac: "02:00:00:00:00:cc").contains { path in
          self.extendedCommunities(path).contains {
            ($0["type"] as? Int) == 6 && ($0["sequence"] as? Int) == 7
          }
        }
      })
    // GoBGP, like us, withdraws the route that lost (RFC 7432 section 15): only ours is left.
    XCTAssertTrue(daemon.waitForRIB { self.paths($0, mac: "02:00:00:00:00:cc").count == 1 })
    // It leaves us: we withdraw; when it reappears behind gobgp's VTEP we point there again.
    speaker!.withdrawMAC(vni: 100, mac: moving)
    XCTAssertTrue(daemon.waitForRIB { self.paths($0, mac: "02:00:00:00:00:cc").isEmpty })
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:cc 0.0.0.0 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    XCTAssertTrue(sink.wait { $0.installed(100, moving)?.vtep == ip("10.0.0.9") })
  }

  /// RFC 9494 capability exchange with gobgpd (graceful restart with long-lived graceful
  /// restart for l2vpn-evpn on its side): the session comes up, each side sees the other's
  /// LLGR capability for EVPN with the time it announced.
  func testLongLivedGracefulRestartCapabilityExchange() async throws {
    let daemon = try await startPair(
      longLivedStaleTime: 7200,
      gobgpGracefulRestart: """
          [neighbors.graceful-restart.config]
            enabled = true
            restart-time = 120
            long-lived-enabled = true
        """,
      gobgpFamilyGracefulRestart: """
            [neighbors.afi-safis.mp-graceful-restart.config]
              enabled = true
            [neighbors.afi-safis.long-lived-graceful-restart.config]
              enabled = true
              restart-time = 3600
        """)
    try await waitForStatus(speaker!) { $0.peers.first?.state == .established }
    let status = await speaker!.status()
    XCTAssertEqual(status.peers.first?.peerGracefulRestart, true)
    XCTAssertEqual(status.peers.first?.peerLongLivedStaleTime, 3600, "gobgpd's LLGR capability for EVPN")
    // gobgpd's view of our OPEN: "long-lived-graceful-restart: advertised and received".
    let neighbor = daemon.cli(["neighbor", "127.0.0.1"]).output
    let lines = neighbor.split(separator: "\n")
    XCTAssertTrue(
      lines.contains {
        $0.contains("long-lived-graceful-restart:") && $0.contains("advertised and received")
      },
      neighbor)
    XCTAssertTrue(
      lines.contains { $0.contains(" graceful-restart:") && $0.contains("advertised and received") }, neighbor
    )
  }

  /// RFC 4724 section 4.1 with gobgpd as helper: after our restart our OPEN carries the
  /// Restart State bit and the F bit for EVPN, and gobgpd reads them so; its End-of-RIB
  /// ends our selection deferral, and ours goes once the local state is restored. No
  /// type-2 routes are exchanged (see the class comment: gobgpd's helper mode and type-2
  /// routes).
  func testRestartStateReachesGoBGP() async throws {
    let daemon = try await startPair(
      gobgpGracefulRestart: """
          [neighbors.graceful-restart.config]
            enabled = true
            restart-time = 120
        """,
      gobgpFamilyGracefulRestart: """
            [neighbors.afi-safis.mp-graceful-restart.config]
              enabled = true
        """,
      restarting: true)
    try await waitForStatus(speaker!) { $0.peers.first?.state == .established }
    // gobgpd's view of our OPEN: "Remote: restart time 120 sec, restart flag set,
    // notification flag set" (R and the RFC 8538 N bit) and "l2vpn-evpn, forward flag
    // set" under graceful-restart.
    let neighbor = daemon.cli(["neighbor", "127.0.0.1"]).output
    let lines = neighbor.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    let remote = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("Remote: restart time") }, neighbor)
    XCTAssertEqual(
      lines[remote], "Remote: restart time 120 sec, restart flag set, notification flag set", neighbor)
    XCTAssertEqual(lines[remote + 1], "l2vpn-evpn, forward flag set", neighbor)
    XCTAssertTrue(
      sink.wait { state in
        state.events.contains { if case .selectionDeferralEnded(.endOfRIB, _) = $0 { true } else { false } }
      }, "gobgpd's End-of-RIB ends the deferral")
    speaker!.localStateRestored()
    try await waitForStatus(speaker!) { $0.gracefulRestart?.restartState == false }
  }

  func testSessionLossKeepsRoutesStaleAndReconnectRefreshes() async throws {
    let daemon = try await startPair(staleTime: 60)
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:d1 0.0.0.0 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:d2 0.0.0.0 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    XCTAssertEqual(
      daemon.evpn(
        "add multicast 10.0.0.9 etag 0 rd 9.9.9.9:1 rt 65000:100 encap vxlan pmsi ingress-repl 100 10.0.0.9"
      ).status, 0)
    XCTAssertTrue(sink.wait { $0.macs.count == 2 && $0.flood[100] == [ip("10.0.0.9")] })
    let removals = sink.snapshot.removeCalls

    // Take the session down from gobgp's side and keep it down.
    XCTAssertEqual(daemon.cli(["neighbor", "127.0.0.1", "disable"]).status, 0)
    XCTAssertTrue(
      sink.wait { $0.count { if case .sessionDown = $0 { return true } else { return false } } >= 1 })
    try await waitForStatus(speaker!) { $0.peers.first?.routesStale == 3 }
    XCTAssertEqual(sink.snapshot.macs.count, 2, "routes stay installed while stale")
    XCTAssertEqual(sink.snapshot.removeCalls, removals)

    // While it is down one MAC goes away; after reconnect only the other comes back.
    XCTAssertEqual(
      daemon.evpn("del macadv 02:00:00:00:00:d2 0.0.0.0 etag 0 label 100 rd 9.9.9.9:1").status, 0)
    XCTAssertEqual(daemon.cli(["neighbor", "127.0.0.1", "enable"]).status, 0)
    XCTAssertTrue(sink.wait(timeout: 30) { $0.established("gobgp") >= 2 })
    // gobgpd without GR sends no End-of-RIB: we sweep at its first KEEPALIVE (3 s here).
    XCTAssertTrue(sink.wait { $0.installed(100, mac("02:00:00:00:00:d2")) == nil }, "stale route not swept")
    XCTAssertNotNil(sink.snapshot.installed(100, mac("02:00:00:00:00:d1")))
    XCTAssertEqual(sink.snapshot.flood[100], [ip("10.0.0.9")])
    try await waitForStatus(speaker!) {
      $0.peers.first?.routesStale == 0 && $0.peers.first?.routesAccepted == 2
    }
  }

  /// eBGP (AS 65001 to gobgpd's 65000) with a TCP MD5 key on both sides: our AS is
  /// prepended, the next hop is our VTEP, no LOCAL_PREF; gobgpd's AS is on what we get.
  func testEBGPWithTCPMD5() async throws {
    let daemon = try await startPair(
      ourASN: 65001, password: "vx-secret", routeTarget: .twoOctetAS(65000, 100))
    speaker!.advertiseMAC(vni: 100, mac: mac("02:00:00:00:00:e1"))
    XCTAssertTrue(daemon.waitForRIB { !self.paths($0, mac: "02:00:00:00:00:e1").isEmpty })
    let ours = try XCTUnwrap(paths(daemon.evpnRIB(), mac: "02:00:00:00:00:e1").first)
    let asPath = try XCTUnwrap(attribute(ours, type: 2)?["as_paths"] as? [[String: Any]])
    XCTAssertEqual(asPath.first?["asns"] as? [Int], [65001], "\(asPath)")
    XCTAssertEqual(attribute(ours, type: 14)?["nexthop"] as? String, "10.0.0.1")
    XCTAssertNil(attribute(ours, type: 5), "no LOCAL_PREF over eBGP")
    XCTAssertEqual(
      daemon.evpn(
        "add macadv 02:00:00:00:00:e2 0.0.0.0 etag 0 label 100 rd 9.9.9.9:1 rt 65000:100 encap vxlan nexthop 10.0.0.9"
      ).status, 0)
    XCTAssertTrue(sink.wait { $0.installed(100, mac("02:00:00:00:00:e2"))?.vtep == ip("10.0.0.9") })
    let status = await speaker!.status()
    XCTAssertEqual(status.peers.first?.md5, true)
    XCTAssertEqual(status.peers.first?.isInternal, false)
  }
}
