import Dataplane
import Foundation
import XCTest

@testable import ControlShim

/// `PeerConfiguration.importOnlyExported` (the configured peers, route reflectors, of a
/// `[peering]` site): the export filter is also the import filter, and with RT constraint
/// the memberships announced to the peer follow it. Two speakers on loopback, both with
/// VNIs 100 and 200; A's filter toward B starts empty.
final class ImportFilterTests: XCTestCase {
  private var started: [EVPNSpeaker] = []

  override func tearDown() async throws {
    for speaker in started { await speaker.shutdown() }
    started = []
  }

  let m1 = mac("02:00:00:00:00:01")
  let m2 = mac("02:00:00:00:00:02")
  let m3 = mac("02:00:00:00:00:03")

  private func node(
    routerID: UInt32, vtep: String, port: UInt16, peer: PeerConfiguration
  ) -> (speaker: EVPNSpeaker, sink: RecordingSink) {
    var configuration = SpeakerConfiguration(
      asn: 65000, routerID: routerID, vtep: ip(vtep), listenAddress: "127.0.0.1", listenPort: port,
      vnis: [VNIConfiguration(vni: 100), VNIConfiguration(vni: 200)], peers: [peer])
    configuration.holdTime = 9
    configuration.connectRetryTime = 0.05
    configuration.connectRetryMaximum = 0.5
    let sink = RecordingSink()
    let speaker = EVPNSpeaker(configuration: configuration, sink: sink)
    sink.observe(speaker)
    return (speaker, sink)
  }

  /// A (filtered toward B) and B; `rtc`: both offer RT constraint.
  private func pair(rtc: Bool) async throws -> (
    a: (speaker: EVPNSpeaker, sink: RecordingSink), b: (speaker: EVPNSpeaker, sink: RecordingSink)
  ) {
    let portA = freeTCPPort()
    let portB = freeTCPPort()
    let toB = PeerConfiguration(
      name: "B", address: "127.0.0.1", port: portB, remoteAS: 65000, routeTargetConstraint: rtc,
      exportVNIs: [], importOnlyExported: true)
    let toA = PeerConfiguration(
      name: "A", address: "127.0.0.1", port: portA, remoteAS: 65000, passive: true, routeTargetConstraint: rtc
    )
    let a = node(routerID: 0x0101_0101, vtep: "10.0.0.1", port: portA, peer: toB)
    let b = node(routerID: 0x0202_0202, vtep: "10.0.0.2", port: portB, peer: toA)
    for speaker in [a.speaker, b.speaker] {
      try await speaker.start()
      started.append(speaker)
    }
    XCTAssertTrue(a.sink.wait { $0.established("B") >= 1 })
    XCTAssertTrue(b.sink.wait { $0.established("A") >= 1 })
    return (a, b)
  }

  func testWithRouteTargetConstraintThePeerIsAskedOnlyForTheFilteredVNIs() async throws {
    let (a, b) = try await pair(rtc: true)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    b.speaker.advertiseMAC(vni: 200, mac: m2)
    a.speaker.advertiseMAC(vni: 200, mac: m3)
    try await waitForStatus(a.speaker) { $0.peers.first?.routeTargetConstraint == true }
    // A asked for nothing: B sends nothing, and A sends nothing.
    await b.speaker.sync()
    let status1 = await b.speaker.status()
    XCTAssertEqual(status1.peers.first?.routesAdvertised, 0)
    let status2 = await a.speaker.status()
    XCTAssertEqual(status2.peers.first?.routesAdvertised, 0)

    // Widened to 100: A announces 65000:100, B sends m1 (and nothing of VNI 200, which A
    // would count as ignored).
    try await a.speaker.setExportVNIs(peer: "B", [100])
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) != nil }, "m1 never arrived")
    XCTAssertNil(a.sink.snapshot.installed(200, m2))
    XCTAssertNil(b.sink.snapshot.installed(200, m3), "A's VNI 200 is not in its filter")
    let widened = await a.speaker.status()
    XCTAssertEqual(widened.peers.first?.routesIgnored, 0, "B sent routes A did not ask for")

    // Narrowed to nothing: m1 leaves A at once, and B no longer sends VNI 100 once it has
    // the membership's withdrawal (the one UPDATE A sends it).
    let updates = { (state: RecordedState) in state.count { $0 == .updateProcessed(peer: "A") } }
    let before = updates(b.sink.snapshot)
    try await a.speaker.setExportVNIs(peer: "B", [])
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) == nil }, "m1 stayed")
    XCTAssertTrue(b.sink.wait { updates($0) > before }, "the membership was not withdrawn")
    let sent = await b.speaker.status().peers.first?.routesAdvertised
    b.speaker.advertiseMAC(vni: 100, mac: m3)
    await b.speaker.sync()
    let after = await b.speaker.status().peers.first?.routesAdvertised
    XCTAssertEqual(after, sent, "B sent VNI 100 again")
    XCTAssertTrue(a.sink.snapshot.macs.isEmpty)
  }

  func testWithoutRouteTargetConstraintRoutesOutsideTheFilterAreIgnored() async throws {
    let (a, b) = try await pair(rtc: false)
    b.speaker.advertiseMAC(vni: 100, mac: m1)
    b.speaker.advertiseMAC(vni: 200, mac: m2)
    // B sends both; A, whose filter is empty, installs neither.
    try await waitForStatus(a.speaker) { $0.peers.first?.routesIgnored == 2 }
    XCTAssertTrue(a.sink.snapshot.macs.isEmpty)
    // Widened to 100: A asks for the routes again (ROUTE-REFRESH) and installs m1 only.
    try await a.speaker.setExportVNIs(peer: "B", [100])
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) != nil }, "m1 never arrived")
    try await waitForStatus(a.speaker) { $0.peers.first?.routesIgnored == 3 }
    XCTAssertNil(a.sink.snapshot.installed(200, m2))
    // Narrowed: m1 leaves.
    try await a.speaker.setExportVNIs(peer: "B", [])
    XCTAssertTrue(a.sink.wait { $0.installed(100, self.m1) == nil }, "m1 stayed")
  }
}
