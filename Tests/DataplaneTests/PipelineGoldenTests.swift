import XCTest

@testable import Dataplane

/// Frames in, frames out, byte-exact, through the same pipeline the daemon runs.
final class PipelineGoldenTests: XCTestCase {
  typealias S = TestSite

  func testUnknownUnicastFromAccessFloodsLocallyAndToEveryVTEP() {
    let sw = OfflineSwitch(config: S.config())
    let frame = S.ping(from: S.hostA, to: S.hostB)
    sw.forward(interface: "vm1", frames: [frame])
    XCTAssertEqual(sw.takeOutput("vm1"), [], "never back out of the ingress port")
    XCTAssertEqual(sw.takeOutput("vm2"), [frame])
    XCTAssertEqual(sw.takeOutput("trunk0"), [S.tagged(frame, vlan: 10)])
    XCTAssertEqual(sw.takeOutput("vm3"), [], "other bridge domain")
    let underlay = sw.takeOutput("eth1")
    XCTAssertEqual(underlay.count, 2)
    XCTAssertEqual(
      underlay[0], S.expectedEncap(frame, to: S.remoteA, nextHop: S.remoteAMAC, emitted: underlay[0]))
    XCTAssertEqual(
      underlay[1], S.expectedEncap(frame, to: S.remoteB, nextHop: S.remoteBMAC, emitted: underlay[1]))
    XCTAssertEqual(sw.core.statistics[Counter.floodCopies], 4)
  }

  func testSourcePortComesFromTheInnerFlowWithinTheRange() {
    let sw = OfflineSwitch(config: S.config())
    var ports = Set<UInt16>()
    for sequence in 0..<64 {
      let frame = FrameBuilder.udpFrame(
        link: .init(destination: S.hostB, source: S.hostA), source: IPAddress("192.168.1.1")!,
        destination: IPAddress("192.168.1.2")!, sourcePort: 1000 + UInt16(sequence), destinationPort: 53,
        payload: [1, 2])
      sw.forward(interface: "vm1", frames: [frame, frame])
      let out = sw.takeOutput("eth1").filter { $0[30...33] == [10, 0, 0, 2] }
      XCTAssertEqual(out.count, 2)
      let port = UInt16(out[0][34]) << 8 | UInt16(out[0][35])
      XCTAssertEqual(out[1][34...35], out[0][34...35], "one flow, one source port")
      XCTAssertTrue((49152...65535).contains(port))
      ports.insert(port)
    }
    XCTAssertGreaterThan(ports.count, 32, "distinct flows spread over source ports")
  }

  func testLearnedUnicastGoesOnlyWhereTheMACLives() {
    let sw = OfflineSwitch(config: S.config())
    sw.forward(interface: "vm2", frames: [S.ping(from: S.hostB, to: .broadcast)])
    _ = [sw.takeOutput("vm1"), sw.takeOutput("trunk0"), sw.takeOutput("eth1")]
    let frame = S.ping(from: S.hostA, to: S.hostB)
    sw.forward(interface: "vm1", frames: [frame])
    XCTAssertEqual(sw.takeOutput("vm2"), [frame])
    XCTAssertEqual(sw.takeOutput("trunk0"), [])
    XCTAssertEqual(sw.takeOutput("eth1"), [])
    XCTAssertEqual(sw.core.learnStatistics.learned, 2)
  }

  func testDecapDeliversAndLearnsTheRemoteVTEP() {
    let sw = OfflineSwitch(config: S.config())
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)])
    _ = ["vm2", "trunk0", "eth1"].map(sw.takeOutput)
    let inner = S.ping(from: S.hostR, to: S.hostA)
    sw.forward(interface: "eth1", frames: [S.vxlan(inner)])
    XCTAssertEqual(sw.takeOutput("vm1"), [inner])
    XCTAssertEqual(sw.takeOutput("vm2"), [])
    XCTAssertEqual(sw.takeOutput("eth1"), [])
    // The reply now goes to 10.0.0.2 only: learned from the decapsulated frame.
    let reply = S.ping(from: S.hostA, to: S.hostR)
    sw.forward(interface: "vm1", frames: [reply])
    let underlay = sw.takeOutput("eth1")
    XCTAssertEqual(underlay.count, 1)
    XCTAssertEqual(
      underlay.first, S.expectedEncap(reply, to: S.remoteA, nextHop: S.remoteAMAC, emitted: underlay[0]))
    XCTAssertEqual(sw.takeOutput("vm2"), [])
  }

  func testDecapLearnsAVTEPItHadNeverHeardOf() {
    var config = S.config()
    config.neighbors.append(.init(ip: IPAddress("10.0.0.9")!, mac: MACAddress("02:00:00:00:00:09")!))
    let sw = OfflineSwitch(config: config)
    let inner = S.ping(from: S.hostR, to: S.hostA)
    sw.forward(interface: "eth1", frames: [S.vxlan(inner, from: IPAddress("10.0.0.9")!)])
    XCTAssertEqual(sw.takeOutput("vm1"), [inner])
    let reply = S.ping(from: S.hostA, to: S.hostR)
    sw.forward(interface: "vm1", frames: [reply])
    let underlay = sw.takeOutput("eth1")
    XCTAssertEqual(underlay.count, 1)
    XCTAssertEqual(
      underlay.first,
      S.expectedEncap(
        reply, to: IPAddress("10.0.0.9")!, nextHop: MACAddress("02:00:00:00:00:09")!, emitted: underlay[0]))
  }

  func testFloodFromAVTEPNeverGoesBackToAVTEP() {
    let sw = OfflineSwitch(config: S.config())
    let inner = S.ping(from: S.hostR, to: .broadcast)
    sw.forward(interface: "eth1", frames: [S.vxlan(inner)])
    XCTAssertEqual(sw.takeOutput("vm1"), [inner])
    XCTAssertEqual(sw.takeOutput("vm2"), [inner])
    XCTAssertEqual(sw.takeOutput("trunk0"), [S.tagged(inner, vlan: 10)])
    XCTAssertEqual(sw.takeOutput("eth1"), [], "split horizon")
    // Known unicast to a remote MAC arriving from a VTEP is dropped, not hairpinned.
    sw.forward(interface: "eth1", frames: [S.vxlan(S.ping(from: S.hostB, to: S.hostR), from: S.remoteB)])
    _ = ["vm1", "vm2", "trunk0"].map(sw.takeOutput)
    XCTAssertEqual(sw.takeOutput("eth1"), [])
    XCTAssertEqual(sw.drops(.splitHorizon), 1)
  }

  func testVLANOnTrunkMapsToItsBridgeDomain() {
    let sw = OfflineSwitch(config: S.config())
    let tagged = S.ping(from: S.hostA, to: .broadcast, vlan: 20)
    sw.forward(interface: "trunk0", frames: [tagged])
    XCTAssertEqual(sw.takeOutput("vm3"), [S.untagged(tagged)])
    XCTAssertEqual(sw.takeOutput("vm1"), [])
    XCTAssertEqual(sw.takeOutput("eth1"), [], "VNI 200 floods to no VTEP")
    sw.forward(interface: "trunk0", frames: [S.ping(from: S.hostA, to: .broadcast, vlan: 30)])
    XCTAssertEqual(sw.drops(.unmappedVLAN), 1)
    // Encapsulated frames never carry the access VLAN tag.
    let blue = S.ping(from: S.hostB, to: S.hostR, vlan: 10)
    sw.forward(interface: "trunk0", frames: [blue])
    let underlay = sw.takeOutput("eth1")
    XCTAssertEqual(underlay.count, 2)
    XCTAssertEqual(
      underlay[0],
      S.expectedEncap(S.untagged(blue), to: S.remoteA, nextHop: S.remoteAMAC, emitted: underlay[0]))
    // A kernel-stripped tag (tp_vlan_tci) counts like an in-band one.
    var vector = FrameVector()
    var bytes = S.untagged(S.ping(from: S.hostB, to: .broadcast, vlan: 20))
    bytes.withUnsafeMutableBytes { raw in
      vector.append(raw.baseAddress!, length: raw.count, vlanTag: FrameVector.vlanTagPresent | 20)
      vector.ingress = UInt16(sw.interfaceIndex("trunk0")!)
      vector.now = 1
      sw.process(&vector)
      sw.flush()
    }
    XCTAssertEqual(sw.takeOutput("vm3").count, 1)
  }

  func testUnderlayMTUIsEnforcedWithoutFragmenting() {
    let big = S.ping(from: S.hostA, to: S.hostR, payload: 1472)  // 1514-byte frame: IP 1550 outer
    let small = S.config(mtu: 1500)
    let sw = OfflineSwitch(config: small)
    sw.forward(interface: "vm1", frames: [big])
    XCTAssertEqual(sw.takeOutput("eth1"), [])
    XCTAssertEqual(sw.drops(.mtuExceeded), 2)
    XCTAssertEqual(sw.takeOutput("vm2"), [big], "local delivery is not limited by the underlay")
    let jumbo = OfflineSwitch(config: S.config(mtu: 1550))
    jumbo.forward(interface: "vm1", frames: [big])
    XCTAssertEqual(jumbo.takeOutput("eth1").map(\.count), [1564, 1564])
  }

  func testAgingForgetsIdleMACsAndKeepsActiveOnes() {
    let sw = OfflineSwitch(config: S.config(agingTime: 300))
    sw.forward(interface: "vm2", frames: [S.ping(from: S.hostB, to: .broadcast)], now: 1)
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)], now: 1)
    _ = ["vm1", "vm2", "trunk0", "eth1"].map(sw.takeOutput)
    // hostA keeps talking; hostB falls silent.
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: S.hostB)], now: 200)
    XCTAssertEqual(sw.takeOutput("vm2").count, 1)
    XCTAssertEqual(sw.takeOutput("eth1").count, 0)
    sw.forward(interface: "vm3", frames: [S.ping(from: S.hostR, to: .broadcast)], now: 302)
    sw.forward(interface: "vm2", frames: [S.ping(from: S.hostR, to: S.hostA)], now: 302)
    XCTAssertEqual(sw.takeOutput("vm1").count, 1, "hostA is still known")
    XCTAssertEqual(sw.takeOutput("eth1").count, 0)
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: S.hostB)], now: 303)
    XCTAssertEqual(sw.takeOutput("eth1").count, 2, "hostB aged out: flooded again")
    XCTAssertGreaterThanOrEqual(sw.core.learnStatistics.aged, 1)
  }

  func testMACMoveIsCountedAndStaticEntriesNeverMove() {
    var config = S.config()
    config.staticMACs = [.init(vni: 100, mac: S.hostR, target: .remote(S.remoteB))]
    let sw = OfflineSwitch(config: config)
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)])
    sw.forward(interface: "vm2", frames: [S.ping(from: S.hostA, to: .broadcast)])
    XCTAssertEqual(sw.core.learnStatistics.moves, 1)
    _ = ["vm1", "vm2", "trunk0", "eth1"].map(sw.takeOutput)
    sw.forward(interface: "vm3", frames: [S.ping(from: S.hostB, to: S.hostA)])
    XCTAssertEqual(sw.takeOutput("vm2").count, 0, "vm3 is in another domain")
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostB, to: S.hostA)])
    XCTAssertEqual(sw.takeOutput("vm2").count, 1, "hostA moved to vm2")
    // The static MAC sends from vm1: it is not learned there, and traffic to it still goes to 10.0.0.3.
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostR, to: .broadcast)])
    _ = ["vm2", "trunk0", "eth1"].map(sw.takeOutput)
    sw.forward(interface: "vm2", frames: [S.ping(from: S.hostA, to: S.hostR)])
    let underlay = sw.takeOutput("eth1")
    XCTAssertEqual(underlay.count, 1)
    XCTAssertEqual(Array(underlay[0][30...33]), [10, 0, 0, 3])
    XCTAssertEqual(sw.core.statistics[Counter.staticMACViolations], 1)
  }

  func testIPv6UnderlayEncapAndDecap() {
    let sw = OfflineSwitch(config: S.config(ipv6: true))
    let frame = S.ping(from: S.hostA, to: S.hostR)
    sw.forward(interface: "vm1", frames: [frame])
    let underlay = sw.takeOutput("eth1")
    XCTAssertEqual(underlay.count, 1)
    XCTAssertEqual(underlay[0].count, frame.count + 70)
    XCTAssertEqual(
      underlay[0],
      S.expectedEncap(frame, to: S.remote6, nextHop: S.remoteAMAC, emitted: underlay[0], from: S.local6))
    let inner = S.ping(from: S.hostR, to: S.hostA)
    sw.forward(interface: "eth1", frames: [S.vxlan(inner, from: S.remote6, to: S.local6)])
    XCTAssertEqual(sw.takeOutput("vm1"), [inner])
    // Zero UDP checksum over IPv6 is refused (RFC 8200), a wrong one too.
    sw.forward(interface: "eth1", frames: [S.vxlan(inner, from: S.remote6, to: S.local6, checksum: .zero)])
    XCTAssertEqual(sw.drops(.badUDPChecksum), 1)
  }

  func testDSCPInheritedFromTheInnerHeader() {
    var config = S.config()
    config.site.dscp = .inherit
    let sw = OfflineSwitch(config: config)
    let frame = FrameBuilder.icmpEchoFrame(
      link: .init(destination: S.hostR, source: S.hostA), source: IPAddress("192.168.1.1")!,
      destination: IPAddress("192.168.1.2")!, kind: .request, identifier: 1, sequenceNumber: 1,
      ipv4: .init(typeOfService: 0xB8))
    sw.forward(interface: "vm1", frames: [frame])
    let out = sw.takeOutput("eth1")[0]
    XCTAssertEqual(out[15], 0xB8)
    XCTAssertTrue(InternetChecksum.isValid(Array(out[14..<34])), "outer IPv4 checksum covers the TOS")
  }

  func testOuterUDPChecksumOverIPv4WhenConfigured() {
    var config = S.config()
    config.site.udpChecksumIPv4 = true
    let sw = OfflineSwitch(config: config)
    let frame = S.ping(from: S.hostA, to: S.hostR)
    sw.forward(interface: "vm1", frames: [frame])
    let out = sw.takeOutput("eth1")[0]
    let port = UInt16(out[34]) << 8 | UInt16(out[35])
    let expected = FrameBuilder.vxlanFrame(
      inner: frame, vni: 100,
      underlay: .init(
        link: .init(destination: S.remoteAMAC, source: S.underlayMAC), source: S.local4,
        destination: S.remoteA,
        sourcePort: port, udpChecksum: .computed, ipv4: .init(dontFragment: true)))
    XCTAssertEqual(out, expected)
    // And the decap side verifies a non-zero checksum.
    var corrupt = S.vxlan(S.ping(from: S.hostR, to: S.hostA), checksum: .computed)
    corrupt[40] ^= 0x55
    sw.forward(interface: "eth1", frames: [corrupt])
    XCTAssertEqual(sw.drops(.badUDPChecksum), 1)
  }
}
