import Foundation
import XCTest

@testable import Dataplane

/// Every drop reason, each provoked by its own malformed or unforwardable frame: the
/// frame is counted under exactly that reason, nothing is emitted, and forwarding of a
/// good frame right after is unaffected.
final class PipelineDropTests: XCTestCase {
  typealias S = TestSite

  private func assertDrop(
    _ reason: DropReason, on interface: String = "eth1", config: SiteConfig = S.config(),
    prepare: ((OfflineSwitch) -> Void)? = nil, then goodFrame: [UInt8]? = nil, file: StaticString = #filePath,
    line: UInt = #line, _ frame: [UInt8]
  ) {
    let sw = OfflineSwitch(config: config)
    prepare?(sw)
    for port in sw.ports { _ = port.takeTransmitted() }
    let before = sw.totalDrops()
    let reasonBefore = sw.drops(reason)
    sw.forward(interface: interface, frames: [frame])
    XCTAssertEqual(sw.drops(reason) - reasonBefore, 1, "\(reason.name)", file: file, line: line)
    XCTAssertEqual(
      sw.totalDrops() - before, 1, "exactly one reason for \(reason.name)", file: file, line: line)
    for port in sw.ports where interface == "eth1" || port.name == "eth1" {
      XCTAssertEqual(
        port.takeTransmitted(), [], "\(reason.name): nothing emitted on \(port.name)", file: file, line: line)
    }
    // A good frame still gets through afterwards.
    let inner = S.ping(from: S.hostR, to: .broadcast)
    sw.forward(interface: "eth1", frames: [goodFrame ?? S.vxlan(inner)])
    XCTAssertEqual(sw.takeOutput("vm1"), [inner], file: file, line: line)
  }

  private var good: [UInt8] { S.vxlan(S.ping(from: S.hostR, to: S.hostA)) }

  private func patched(_ frame: [UInt8], fixIPChecksum: Bool = true, _ edit: (inout [UInt8]) -> Void)
    -> [UInt8]
  {
    var bytes = frame
    edit(&bytes)
    if fixIPChecksum && bytes.count >= 34 && bytes[12] == 0x08 && bytes[13] == 0x00 {
      let headerLength = Int(bytes[14] & 0x0F) * 4
      guard headerLength >= 20, bytes.count >= 14 + headerLength else { return bytes }
      bytes[24] = 0
      bytes[25] = 0
      let checksum = InternetChecksum.checksum(Array(bytes[14..<(14 + headerLength)]))
      bytes[24] = UInt8(checksum >> 8)
      bytes[25] = UInt8(checksum & 0xFF)
    }
    return bytes
  }

  /// Flips every bit of a good frame's outer headers (Ethernet type to VXLAN reserved
  /// byte), the IPv4 header checksum recomputed so that each flip reaches the check it
  /// is meant for. The result is always one of two: the inner frame delivered byte for
  /// byte, or exactly one counted drop. Flips in what the decap fast path compares
  /// (EtherType, version and header length, fragment bits, protocol, destination address
  /// and port, UDP checksum, the I flag) are all dropped, by whichever path.
  func testEveryOuterHeaderBitFlipIsDeliveredIntactOrDroppedOnce() {
    let inner = S.ping(from: S.hostR, to: .broadcast)
    let frame = S.vxlan(inner)
    var mustDrop = [UInt8](repeating: 0, count: 50)
    for byte in [12, 13, 14, 21, 23, 30, 31, 32, 33, 36, 37, 40, 41] { mustDrop[byte] = 0xFF }
    mustDrop[20] = 0x3F
    mustDrop[42] = 0x08
    let sw = OfflineSwitch(config: S.config())
    func outputs() -> [String: [[UInt8]]] {
      Dictionary(uniqueKeysWithValues: sw.ports.map { ($0.name, $0.takeTransmitted()) })
    }
    sw.forward(interface: "eth1", frames: [frame])
    let reference = outputs()
    XCTAssertEqual(reference["vm1"], [inner])
    var delivered = 0
    for byte in 12..<50 {
      for bit in 0..<8 {
        let mutated = patched(frame) { $0[byte] ^= 1 << bit }
        let dropsBefore = sw.totalDrops()
        sw.forward(interface: "eth1", frames: [mutated])
        let output = outputs()
        let drops = sw.totalDrops() - dropsBefore
        if output.values.allSatisfy(\.isEmpty) {
          XCTAssertEqual(drops, 1, "byte \(byte) bit \(bit): not delivered, so exactly one drop")
        } else {
          delivered += 1
          XCTAssertEqual(drops, 0, "byte \(byte) bit \(bit)")
          XCTAssertEqual(output, reference, "byte \(byte) bit \(bit): delivered as the intact frame is")
        }
        if mustDrop[byte] & 1 << bit != 0 {
          XCTAssertEqual(drops, 1, "byte \(byte) bit \(bit) must be dropped")
        }
      }
    }
    // TOS, identification, DF, TTL, source address and port, other VXLAN flag bits and
    // reserved bytes do not matter: those flips are still delivered.
    XCTAssertGreaterThan(delivered, 60)
  }

  /// Drop reasons have their own counter slots, ahead of the other counters.
  func testEveryDropReasonHasACounterSlotOfItsOwn() {
    XCTAssertLessThanOrEqual(DropReason.allCases.count, Counter.dropReasonSlots)
    let slots = Set(DropReason.allCases.map(Counter.drop))
    XCTAssertEqual(slots.count, DropReason.allCases.count)
    XCTAssertLessThan(slots.max()!, Counter.encapsulated)
    XCTAssertGreaterThanOrEqual(slots.min()!, Counter.txBytes(Counter.interfaces - 1) + 1)
  }

  func testRunt() {
    assertDrop(.runt, Array(good[0..<30]))
    assertDrop(.badIPLength, Array(good[0..<60]))
    assertDrop(.runt, on: "vm1", [1, 2, 3])
  }

  /// Frames that end inside the UDP header, the VXLAN header or the inner Ethernet header,
  /// with IP and UDP lengths consistent with the cut (so that the length checks cannot
  /// catch them first): each is a counted drop, never a read past its end.
  func testTruncatedHeaders() {
    for (cut, name) in [(38, "UDP header"), (46, "VXLAN header"), (60, "inner Ethernet header")] {
      let truncated = patched(Array(good[0..<cut])) { bytes in
        let ipLength = cut - 14
        bytes[16] = UInt8(ipLength >> 8)
        bytes[17] = UInt8(ipLength & 0xFF)
        if cut >= 40 {
          bytes[38] = UInt8((ipLength - 20) >> 8)
          bytes[39] = UInt8((ipLength - 20) & 0xFF)
        }
      }
      XCTAssertEqual(truncated.count, cut, name)
      assertDrop(.badUDPLength, truncated)
    }
    let good6 = S.vxlan(S.ping(from: S.hostR, to: .broadcast), from: S.remote6, to: S.local6)
    assertDrop(.runt, config: S.config(ipv6: true), then: good6, Array(good6[0..<50]))
  }

  func testBadSourceMAC() {
    assertDrop(.badSourceMAC, on: "vm1", S.ping(from: MACAddress("01:00:5e:00:00:01")!, to: S.hostB))
    assertDrop(.badSourceMAC, S.vxlan(S.ping(from: .zero, to: S.hostA)))
  }

  func testUnmappedVLAN() {
    assertDrop(.unmappedVLAN, on: "trunk0", S.ping(from: S.hostA, to: S.hostB, vlan: 99))
  }

  func testSameInterface() {
    assertDrop(
      .sameInterface, on: "vm1",
      prepare: { $0.forward(interface: "vm1", frames: [S.ping(from: S.hostB, to: .broadcast)]) },
      S.ping(from: S.hostA, to: S.hostB))
  }

  func testInnerVLANTag() { assertDrop(.innerVLANTag, S.vxlan(S.ping(from: S.hostR, to: S.hostA, vlan: 10))) }

  func testNotIP() {
    assertDrop(
      .notIP,
      patched(good) {
        $0[12] = 0x88; $0[13] = 0xCC
      })
  }

  func testBadIPHeader() {
    assertDrop(.badIPHeader, patched(good) { $0[14] = 0x44 })
    assertDrop(.badIPHeader, patched(good) { $0[14] = 0x55 })
  }

  func testBadIPChecksum() {
    assertDrop(.badIPChecksum, patched(good, fixIPChecksum: false) { $0[24] ^= 0x55 })
  }

  func testBadIPLength() {
    assertDrop(
      .badIPLength,
      patched(good) {
        $0[16] = 0x05; $0[17] = 0xDC
      })
    assertDrop(
      .badIPLength,
      patched(good) {
        $0[16] = 0; $0[17] = 16
      })
  }

  func testOuterFragment() {
    assertDrop(.outerFragment, patched(good) { $0[20] = 0x20 })
    // The last fragment: no More Fragments bit, a non-zero offset (185 * 8 bytes).
    assertDrop(
      .outerFragment,
      patched(good) {
        $0[20] = 0x00; $0[21] = 185
      })
  }

  /// IPv4 options (four NOPs) in the outer header: RFC 791 allows them, so the frame is
  /// decapsulated like any other, on the fast paths and on the general path.
  func testOuterIPv4OptionsAreDecapsulatedOnEveryPath() {
    let inner = S.ping(from: S.hostR, to: S.hostA)
    var frame = S.vxlan(inner)
    frame.insert(contentsOf: [1, 1, 1, 1], at: 34)
    frame = patched(frame) {
      $0[14] = 0x46
      let ipLength = $0.count - 14
      $0[16] = UInt8(ipLength >> 8)
      $0[17] = UInt8(ipLength & 0xFF)
    }
    for fastPaths in [true, false] {
      let sw = OfflineSwitch(config: S.config())
      sw.pipeline.fastPathsEnabled = fastPaths
      sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)])
      for port in sw.ports { _ = port.takeTransmitted() }
      sw.forward(interface: "eth1", frames: [frame, frame])
      XCTAssertEqual(sw.takeOutput("vm1"), [inner, inner], "fast paths \(fastPaths)")
      XCTAssertEqual(sw.totalDrops(), 0, "fast paths \(fastPaths)")
    }
  }

  /// Jumbo frames: at a 9000-byte MTU an 8950-byte inner frame is decapsulated and
  /// encapsulated whole; past the transmit slot it is a counted `oversize` drop.
  func testJumboFrames() {
    let config = S.config(mtu: 9000)
    let jumbo = S.ping(from: S.hostR, to: S.hostA, payload: 8950 - 42)
    XCTAssertEqual(jumbo.count, 8950)
    let sw = OfflineSwitch(config: config)
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)])
    for port in sw.ports { _ = port.takeTransmitted() }
    sw.forward(interface: "eth1", frames: [S.vxlan(jumbo)])
    XCTAssertEqual(sw.takeOutput("vm1"), [jumbo])
    let reply = S.ping(from: S.hostA, to: S.hostR, payload: 8950 - 42)
    sw.forward(interface: "vm1", frames: [reply])
    let encapsulated = sw.takeOutput("eth1")
    XCTAssertEqual(encapsulated.map(\.count), [9000], "one 9000-byte frame to the VTEP that sent the jumbo")
    XCTAssertEqual(sw.totalDrops(), 0)
    assertDrop(
      .oversize, config: config,
      prepare: { $0.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)]) },
      S.vxlan(S.ping(from: S.hostR, to: S.hostA, payload: 9400)))
  }

  func testUnsupportedIPv6Extension() {
    let frame = S.vxlan(S.ping(from: S.hostR, to: S.hostA), from: S.remote6, to: S.local6)
    let good6 = S.vxlan(S.ping(from: S.hostR, to: .broadcast), from: S.remote6, to: S.local6)
    assertDrop(
      .unsupportedIPv6Extension, config: S.config(ipv6: true), then: good6, patched(frame) { $0[20] = 0 })
    assertDrop(.outerFragment, config: S.config(ipv6: true), then: good6, patched(frame) { $0[20] = 44 })
    // Routing, destination options, ESP, AH, mobility: none is followed to find UDP.
    for nextHeader: UInt8 in [43, 60, 50, 51, 135] {
      assertDrop(
        .unsupportedIPv6Extension, config: S.config(ipv6: true), then: good6,
        patched(frame) { $0[20] = nextHeader })
    }
  }

  func testNotForLocalVTEP() {
    assertDrop(.notForLocalVTEP, S.vxlan(S.ping(from: S.hostR, to: S.hostA), to: IPAddress("10.0.0.77")!))
  }

  func testNotUDP() { assertDrop(.notUDP, patched(good) { $0[23] = 6 }) }

  func testWrongUDPPort() {
    assertDrop(.wrongUDPPort, S.vxlan(S.ping(from: S.hostR, to: S.hostA), destinationPort: 8472))
    var config = S.config()
    config.site.udpPort = 8472
    assertDrop(
      .wrongUDPPort, config: config,
      then: S.vxlan(S.ping(from: S.hostR, to: .broadcast), destinationPort: 8472), good)
  }

  func testBadUDPLength() {
    assertDrop(
      .badUDPLength,
      patched(good) {
        $0[38] = 0x05; $0[39] = 0x78
      })
    assertDrop(
      .badUDPLength,
      patched(good) {
        $0[38] = 0; $0[39] = 20
      })
  }

  func testBadUDPChecksum() {
    var frame = S.vxlan(S.ping(from: S.hostR, to: S.hostA), checksum: .computed)
    frame[41] ^= 0x01
    assertDrop(.badUDPChecksum, frame)
  }

  func testBadVXLANFlags() { assertDrop(.badVXLANFlags, patched(good) { $0[42] = 0x00 }) }

  func testUnknownVNI() { assertDrop(.unknownVNI, S.vxlan(S.ping(from: S.hostR, to: S.hostA), vni: 999)) }

  func testUnknownVTEPWhenOnlyKnownOnesAreAccepted() {
    var config = S.config()
    config.site.acceptedVTEPs = .known
    assertDrop(.unknownVTEP, config: config, S.vxlan(S.ping(from: S.hostR, to: S.hostA), from: S.stranger))
  }

  /// A VTEP of a BGP route is known from then on; before, its frames are neither
  /// forwarded nor learnt from.
  func testAVTEPBecomesKnownThroughTheControlPlane() {
    var config = S.config()
    config.site.acceptedVTEPs = .known
    let sw = OfflineSwitch(config: config)
    let inner = S.ping(from: S.hostR, to: .broadcast)
    sw.forward(interface: "eth1", frames: [S.vxlan(inner, from: S.stranger)])
    XCTAssertEqual(sw.drops(.unknownVTEP), 1)
    XCTAssertEqual(sw.takeOutput("vm1"), [])
    XCTAssertEqual(sw.core.fdbRows(now: 1).count, 0, "nothing learnt from an unknown VTEP")
    sw.core.installRemoteMAC(vni: 100, mac: S.hostB, vtep: S.stranger)
    sw.forward(interface: "eth1", frames: [S.vxlan(inner, from: S.stranger)])
    XCTAssertEqual(sw.takeOutput("vm1"), [inner])
    XCTAssertEqual(sw.drops(.unknownVTEP), 1)
  }

  func testAnyVTEPIsAcceptedByDefault() {
    let sw = OfflineSwitch(config: S.config())
    let inner = S.ping(from: S.hostR, to: .broadcast)
    sw.forward(interface: "eth1", frames: [S.vxlan(inner, from: S.stranger)])
    XCTAssertEqual(sw.takeOutput("vm1"), [inner])
  }

  func testSplitHorizon() {
    assertDrop(
      .splitHorizon,
      prepare: {
        $0.forward(
          interface: "eth1", frames: [S.vxlan(S.ping(from: S.hostB, to: .broadcast), from: S.remoteB)])
      },
      S.vxlan(S.ping(from: S.hostR, to: S.hostB)))
  }

  func testMTUExceeded() {
    var config = S.config()
    config.bridgeDomains[0].flood = [S.remoteA]
    config.bridgeDomains[0].ports = [.init(interface: "vm1")]
    assertDrop(.mtuExceeded, on: "vm1", config: config, S.ping(from: S.hostA, to: S.hostR, payload: 1472))
  }

  func testNoNextHop() {
    var config = S.config()
    config.neighbors = []
    config.bridgeDomains[0].flood = [S.remoteA]
    config.bridgeDomains[0].ports = [.init(interface: "vm1")]
    assertDrop(.noNextHop, on: "vm1", config: config, S.ping(from: S.hostA, to: S.hostR))
  }

  func testNoFloodTargets() {
    var config = S.config()
    config.bridgeDomains[1].ports = [.init(interface: "vm3")]
    assertDrop(.noFloodTargets, on: "vm3", config: config, S.ping(from: S.hostA, to: .broadcast))
  }

  func testFDBDrop() {
    let sw = OfflineSwitch(config: S.config())
    let domain = sw.core.state.domainIndex(vni: 100)!
    sw.core.fdb.update(FDBKey(bridgeDomain: domain, mac: S.hostB.rawValue)) { _ in
      .set(
        FDBEntry(kind: .drop, index: 0, origin: .static, domainGeneration: 0, targetGeneration: 0, stamp: 0))
    }
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: S.hostB)])
    XCTAssertEqual(sw.drops(.fdbDrop), 1)
    XCTAssertEqual(sw.takeOutput("vm2"), [])
  }

  func testTxRingFullAndOversize() {
    let sw = OfflineSwitch(config: S.config())
    // 1100 frames in one call fill vm2's 1024-slot ring before it is flushed? No: the
    // switch flushes after every batch of 256, so fill the ring by hand instead.
    let ring = sw.port("vm2")!.transmitRing
    for _ in 0..<ring.pointee.slotCount { ring.pointee.commit(length: 60) }
    sw.pipeline.process(
      vectorWith: S.ping(from: S.hostA, to: S.hostB), ingress: UInt16(sw.interfaceIndex("vm1")!))
    XCTAssertEqual(sw.drops(.txRingFull), 1)
    let huge = S.ping(from: S.hostA, to: S.hostB, payload: 9400)
    let fresh = OfflineSwitch(config: S.config(mtu: 9216))
    fresh.forward(interface: "vm1", frames: [huge])
    XCTAssertEqual(fresh.drops(.oversize), 2, "the copies to vm2 and trunk0 exceed the transmit slot")
    XCTAssertEqual(fresh.drops(.mtuExceeded), 2, "the copies to both VTEPs exceed the underlay MTU")
  }

  /// Malformed frames from the crafted fixture (Tests/Fixtures/README.md) are counted
  /// drops; the valid reference frame is forwarded.
  func testMalformedFixtureFramesAreCountedDrops() throws {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Fixtures/vxlan-malformed.pcap").path
    let trace = try PcapTrace(path: path)
    var site = SiteConfig.Site(name: "fixture", vtep: IPAddress("192.0.2.2")!, underlay: "eth1")
    site.underlayMAC = MACAddress("02:00:5e:00:00:02")
    var config = SiteConfig(site: site)
    var domain = SiteConfig.BridgeDomain(vni: 4242)
    domain.ports = [.init(interface: "vm1")]
    config.bridgeDomains = [domain]
    let sw = OfflineSwitch(config: config)
    let frames = (0..<trace.count).map { trace.frameArray(at: $0) }
    sw.forward(interface: "eth1", frames: frames)
    let delivered = sw.takeOutput("vm1")
    // Forwarded: the reference (0), reserved flag bits ignored as RFC 7348 says (5), IPv4 options (9).
    let sources = delivered.map { Int($0[11]) }
    XCTAssertEqual(sources, [0, 5, 9])
    XCTAssertEqual(sw.totalDrops(), UInt64(trace.count - 3))
    XCTAssertEqual(sw.drops(.outerFragment), 2)
    XCTAssertEqual(sw.drops(.badVXLANFlags), 1)
    XCTAssertEqual(sw.drops(.badIPChecksum), 1)
    XCTAssertEqual(sw.drops(.badUDPChecksum), 1)
  }

  /// Real VXLAN frames captured by someone else (gopacket / PcapPlusPlus test data).
  func testRealCapturedVXLANFramesDecapsulate() throws {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Fixtures/vxlan-real-captures.pcap").path
    let trace = try PcapTrace(path: path)
    let first = trace.frameArray(at: 0)
    var site = SiteConfig.Site(name: "real", vtep: IPAddress("192.168.202.1")!, underlay: "eth1")
    site.underlayMAC = MACAddress(rawValue: 0x0200_0000_0001)
    var config = SiteConfig(site: site)
    var vni0 = SiteConfig.BridgeDomain(vni: 0)
    vni0.ports = [.init(interface: "vm1")]
    var vniBig = SiteConfig.BridgeDomain(vni: 3_000_001)
    vniBig.ports = [.init(interface: "vm2")]
    config.bridgeDomains = [vni0, vniBig]
    let sw = OfflineSwitch(config: config)
    sw.forward(interface: "eth1", frames: (0..<trace.count).map { trace.frameArray(at: $0) })
    let delivered = sw.takeOutput("vm1") + sw.takeOutput("vm2")
    XCTAssertEqual(sw.totalDrops(), 0)
    XCTAssertEqual(delivered.count, 2)
    XCTAssertEqual(delivered.first, Array(first[50...]), "inner frame of the real capture, byte-exact")
  }
}

extension Pipeline {
  /// Runs one frame through `process` (tests that need the pipeline without flushing).
  func process(vectorWith frame: [UInt8], ingress: UInt16, now: UInt32 = 1) {
    var vector = FrameVector()
    var bytes = frame
    bytes.withUnsafeMutableBytes { raw in
      vector.append(raw.baseAddress!, length: raw.count)
      vector.ingress = ingress
      vector.now = now
      process(&vector)
    }
  }
}
