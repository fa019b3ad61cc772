import Dataplane
import Foundation
import XCTest

/// The committed captures in Tests/Fixtures (see Tests/Fixtures/README.md for provenance).
///
/// The fixtures are generated from the definitions below. To regenerate after changing
/// them: `VXSWITCH_WRITE_FIXTURES=1 swift test --filter PcapFixtureTests`. Without the
/// variable, the tests check that the committed files still match the definitions.
enum VXLANFixtures {
  static var directory: String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Fixtures").path
  }
  static var realCapturesPath: String { directory + "/vxlan-real-captures.pcap" }
  static var malformedPath: String { directory + "/vxlan-malformed.pcap" }

  /// Synthetic timestamps: the published byte arrays carry none.
  static func timestamp(ofFrame index: Int) -> UInt64 {
    1_500_000_000_000_000_000 + UInt64(index) * 1_000_000
  }

  // MARK: real captures

  struct PublishedFrame {
    let name: String
    let hex: String
    var bytes: [UInt8] {
      let digits = Array(hex.filter { !$0.isWhitespace })
      return stride(from: 0, to: digits.count - 1, by: 2).compactMap {
        UInt8(String(digits[$0...$0 + 1]), radix: 16)
      }
    }
  }

  /// Frame 0: the hex dump in the comment above `testPacketVXLAN` in google/gopacket
  /// layers/vxlan_test.go (an ICMP echo request captured in CloudShark's vxlan.pcap, as the
  /// older gopacket test says). The Go byte array below that comment sets the VNI to 255; we
  /// use the dump, i.e. the bytes as captured (VNI 0).
  /// Frame 1: seladb/PcapPlusPlus Tests/Packet++Test/PacketExamples/Vxlan1.dat, the NEXT
  /// packet of the same capture (IP id 0xd2c2, ICMP seq 2) whose VXLAN header was edited
  /// by PcapPlusPlus to exercise Group Based Policy (flags 0x88/0x48, GPID 100,
  /// VNI 3000001).
  static let realFrames = [
    PublishedFrame(
      name: "gopacket-vxlan_test-testPacketVXLAN-hexdump",
      hex: """
        00 16 3e 08 71 cf 36 dc 85 1e b3 40 08 00 45 00  00 86 d2 c0 40 00 40 11 51 52 c0 a8 cb 01 c0 a8
        ca 01 b0 5d 12 b5 00 72 00 00 08 00 00 00 00 00  00 00 00 30 88 01 00 02 00 16 3e 37 f6 04 08 00
        45 00 00 54 00 00 40 00 40 01 23 4f c0 a8 cb 03  c0 a8 cb 05 08 00 f6 f2 05 0c 00 01 fc e2 97 51
        00 00 00 00 a6 f8 02 00 00 00 00 00 10 11 12 13  14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23
        24 25 26 27 28 29 2a 2b 2c 2d 2e 2f 30 31 32 33  34 35 36 37
        """),
    PublishedFrame(
      name: "PcapPlusPlus-Vxlan1.dat",
      hex: """
        00163e0871cf36dc851eb340080045000086d2c2400040115150c0a8cb01c0a8ca01b05d12b50072e9a988480064\
        2dc6c10000308801000200163e37f604080045000054000040004001234fc0a8cb03c0a8cb05080005ed050c0002\
        fde297510000000096fd020000000000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d\
        2e2f3031323334353637
        """),
  ]

  // MARK: malformed frames

  struct CraftedFrame {
    let name: String
    let bytes: [UInt8]
  }

  static let outerLink = FrameBuilder.EthernetHeaderFields(
    destination: MACAddress(rawValue: 0x02_00_5E_00_00_02), source: MACAddress(rawValue: 0x02_00_5E_00_00_01))
  static let vtepA = IPAddress.v4(0xC000_0201)  // 192.0.2.1
  static let vtepB = IPAddress.v4(0xC000_0202)  // 192.0.2.2
  static let vni: UInt32 = 4242
  static let ipv4Offset = FrameBuilder.ethernetHeaderLength
  static let udpOffset = ipv4Offset + FrameBuilder.ipv4MinimumHeaderLength

  static var underlay: FrameBuilder.VXLANUnderlay {
    FrameBuilder.VXLANUnderlay(link: outerLink, source: vtepA, destination: vtepB, sourcePort: 51000)
  }

  /// A distinct, valid inner frame per fixture (inner source MAC ends in the frame index),
  /// so that a dropped or forwarded frame can be told apart in a dataplane test.
  static func innerFrame(_ index: Int) -> [UInt8] {
    FrameBuilder.icmpEchoFrame(
      link: .init(
        destination: MACAddress(rawValue: 0x02_AA_00_00_00_01),
        source: MACAddress(rawValue: 0x02_BB_00_00_00_00 | UInt64(index))),
      source: .v4(0x0A00_0001), destination: .v4(0x0A00_0002), kind: .request,
      identifier: 0x5678, sequenceNumber: UInt16(index), payload: Array("malformed".utf8))
  }

  static func recomputeIPv4HeaderChecksum(_ frame: inout [UInt8], headerLength: Int = 20) {
    frame[ipv4Offset + 10] = 0
    frame[ipv4Offset + 11] = 0
    let value = InternetChecksum.checksum(Array(frame[ipv4Offset..<ipv4Offset + headerLength]))
    frame[ipv4Offset + 10] = UInt8(value >> 8)
    frame[ipv4Offset + 11] = UInt8(value & 0xFF)
  }

  static func vxlanUDPFrame(payload: [UInt8], checksum: FrameBuilder.UDPChecksum = .zero) -> [UInt8] {
    FrameBuilder.udpFrame(
      link: outerLink, source: vtepA, destination: vtepB, sourcePort: 51000,
      destinationPort: FrameBuilder.vxlanPort, payload: payload, checksum: checksum)
  }

  /// The malformed (and borderline) VXLAN frames, in file order. Names are documented in
  /// Tests/Fixtures/README.md.
  static var malformedFrames: [CraftedFrame] {
    var frames: [CraftedFrame] = []
    func add(_ name: String, _ bytes: [UInt8]) { frames.append(CraftedFrame(name: name, bytes: bytes)) }

    add("valid-reference", FrameBuilder.vxlanFrame(inner: innerFrame(0), vni: vni, underlay: underlay))

    // UDP header cut after the ports: IP payload is 4 bytes (IP total length 24).
    let udpHeaderStart = [UInt8]([0xC7, 0x38, 0x12, 0xB5])  // ports 51000 -> 4789
    add(
      "udp-header-truncated",
      FrameBuilder.ethernet(
        outerLink, etherType: FrameBuilder.EtherType.ipv4,
        payload: FrameBuilder.ipv4Packet(
          source: vtepA, destination: vtepB, protocolNumber: FrameBuilder.IPProtocolNumber.udp,
          payload: udpHeaderStart)))

    var longUDP = FrameBuilder.vxlanFrame(inner: innerFrame(2), vni: vni, underlay: underlay)
    longUDP[udpOffset + 4] = 0x05  // UDP length 1400 > what the IP payload holds
    longUDP[udpOffset + 5] = 0x78
    add("udp-length-exceeds-ip-payload", longUDP)

    add("vxlan-header-truncated", vxlanUDPFrame(payload: [0x08, 0x00, 0x00, 0x00]))

    add(
      "vxlan-i-flag-clear",
      vxlanUDPFrame(payload: FrameBuilder.vxlanHeader(vni: vni, flags: 0x00) + innerFrame(4)))

    add(
      "vxlan-reserved-flag-bit-set",
      vxlanUDPFrame(payload: FrameBuilder.vxlanHeader(vni: vni, flags: 0x09) + innerFrame(5)))

    add(
      "vxlan-inner-frame-truncated",
      vxlanUDPFrame(payload: FrameBuilder.vxlanHeader(vni: vni) + innerFrame(6).prefix(6)))

    let fragmentedDatagram = FrameBuilder.udpDatagram(
      sourcePort: 51000, destinationPort: FrameBuilder.vxlanPort,
      payload: FrameBuilder.vxlanHeader(vni: vni) + innerFrame(7), source: vtepA, destination: vtepB,
      checksum: .zero)
    let fragments = FrameBuilder.ipv4Fragments(
      source: vtepA, destination: vtepB, protocolNumber: FrameBuilder.IPProtocolNumber.udp,
      payload: fragmentedDatagram, maximumFragmentPayload: 48, fields: .init(identification: 0x0F0F))
    for (fragment, name) in zip(fragments, ["outer-ipv4-first-fragment", "outer-ipv4-last-fragment"]) {
      add(name, FrameBuilder.ethernet(outerLink, etherType: FrameBuilder.EtherType.ipv4, payload: fragment))
    }

    var withOptions = underlay
    withOptions.ipv4.options = [0x94, 0x04, 0x00, 0x00]  // Router Alert (RFC 2113)
    add(
      "outer-ipv4-with-options",
      FrameBuilder.vxlanFrame(inner: innerFrame(9), vni: vni, underlay: withOptions))

    var badChecksum = FrameBuilder.vxlanFrame(inner: innerFrame(10), vni: vni, underlay: underlay)
    badChecksum[ipv4Offset + 10] ^= 0x55
    add("outer-ipv4-bad-header-checksum", badChecksum)

    var longIP = FrameBuilder.vxlanFrame(inner: innerFrame(11), vni: vni, underlay: underlay)
    longIP[ipv4Offset + 2] = 0x05  // total length 1500 > frame
    longIP[ipv4Offset + 3] = 0xDC
    recomputeIPv4HeaderChecksum(&longIP)
    add("outer-ipv4-total-length-exceeds-frame", longIP)

    var shortIHL = FrameBuilder.vxlanFrame(inner: innerFrame(12), vni: vni, underlay: underlay)
    shortIHL[ipv4Offset] = 0x44  // IHL 4 (16 bytes) is below the 20-byte minimum
    recomputeIPv4HeaderChecksum(&shortIHL)
    add("outer-ipv4-ihl-below-minimum", shortIHL)

    var checkedUnderlay = underlay
    checkedUnderlay.udpChecksum = .computed
    var badUDP = FrameBuilder.vxlanFrame(inner: innerFrame(13), vni: vni, underlay: checkedUnderlay)
    badUDP[udpOffset + 6] ^= 0x55
    add("outer-udp-bad-nonzero-checksum", badUDP)
    return frames
  }

  static func write(_ frames: [[UInt8]], to path: String) throws {
    let writer = try PcapWriter(path: path, resolution: .microseconds)
    for (index, frame) in frames.enumerated() {
      try writer.write(frame, timestampNanos: timestamp(ofFrame: index))
    }
    try writer.close()
  }
}

final class PcapFixtureTests: XCTestCase {
  override class func setUp() {
    super.setUp()
    guard ProcessInfo.processInfo.environment["VXSWITCH_WRITE_FIXTURES"] == "1" else { return }
    do {
      try VXLANFixtures.write(VXLANFixtures.realFrames.map(\.bytes), to: VXLANFixtures.realCapturesPath)
      try VXLANFixtures.write(VXLANFixtures.malformedFrames.map(\.bytes), to: VXLANFixtures.malformedPath)
    } catch {
      XCTFail("regenerating fixtures failed: \(error)")
    }
  }

  func testRealCaptureFixtureHoldsThePublishedBytes() throws {
    let trace = try PcapTrace(path: VXLANFixtures.realCapturesPath)
    XCTAssertEqual(trace.count, VXLANFixtures.realFrames.count)
    for (index, published) in VXLANFixtures.realFrames.enumerated() where index < trace.count {
      XCTAssertEqual(published.bytes.count, 148, published.name)
      XCTAssertEqual(trace.frameArray(at: index), published.bytes, published.name)
      XCTAssertEqual(trace.timestampsNanos[index], VXLANFixtures.timestamp(ofFrame: index))
    }
    // The published frames carry valid IPv4 header checksums, outer and inner.
    for published in VXLANFixtures.realFrames {
      let bytes = published.bytes
      XCTAssertTrue(InternetChecksum.isValid(Array(bytes[14..<34])), published.name)
      XCTAssertTrue(InternetChecksum.isValid(Array(bytes[64..<84])), published.name)
    }
  }

  func testRealCapturesDecodeInTshark() throws {
    let rows = try ExternalTool.tsharkFields(
      file: VXLANFixtures.realCapturesPath,
      fields: [
        "eth.src", "eth.dst", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "vxlan.flags",
        "vxlan.vni", "vxlan.gbp", "icmp.type", "icmp.seq", "_ws.malformed",
      ],
      options: ExternalTool.checksumVerification)
    XCTAssertEqual(rows.count, 2)
    guard rows.count == 2 else { return }
    for row in rows {
      XCTAssertEqual(row["eth.src"], "36:dc:85:1e:b3:40,00:16:3e:37:f6:04", "outer, inner")
      XCTAssertEqual(row["eth.dst"], "00:16:3e:08:71:cf,00:30:88:01:00:02", "outer, inner")
      XCTAssertEqual(row["ip.src"], "192.168.203.1,192.168.203.3")
      XCTAssertEqual(row["ip.dst"], "192.168.202.1,192.168.203.5")
      XCTAssertEqual(row["udp.srcport"], "45149")
      XCTAssertEqual(row["udp.dstport"], "4789")
      XCTAssertEqual(row["icmp.type"], "8")
      XCTAssertEqual(row["_ws.malformed"], "")
    }
    XCTAssertEqual(rows[0]["vxlan.vni"], "0")
    XCTAssertEqual(rows[0]["vxlan.flags"], "0x0800")
    XCTAssertEqual(rows[0]["icmp.seq"], "1")
    XCTAssertEqual(rows[1]["vxlan.vni"], "3000001")
    XCTAssertEqual(rows[1]["vxlan.flags"], "0x8848")
    XCTAssertEqual(rows[1]["vxlan.gbp"], "100")
    XCTAssertEqual(rows[1]["icmp.seq"], "2")
  }

  func testMalformedFixtureMatchesItsDefinition() throws {
    let trace = try PcapTrace(path: VXLANFixtures.malformedPath)
    let expected = VXLANFixtures.malformedFrames
    XCTAssertEqual(trace.count, expected.count)
    for (index, frame) in expected.enumerated() where index < trace.count {
      XCTAssertEqual(trace.frameArray(at: index), frame.bytes, "\(index) \(frame.name) differs; regenerate?")
    }
  }

  func testMalformedFramesCarryTheirDefect() throws {
    let frames = Dictionary(uniqueKeysWithValues: VXLANFixtures.malformedFrames.map { ($0.name, $0.bytes) })
    let ip = VXLANFixtures.ipv4Offset
    let udp = VXLANFixtures.udpOffset
    func word(_ bytes: [UInt8], _ offset: Int) -> Int { Int(bytes[offset]) << 8 | Int(bytes[offset + 1]) }

    let valid = try XCTUnwrap(frames["valid-reference"])
    XCTAssertTrue(InternetChecksum.isValid(Array(valid[ip..<udp])))
    XCTAssertEqual(valid[udp + 8], 0x08)

    let truncatedUDP = try XCTUnwrap(frames["udp-header-truncated"])
    XCTAssertEqual(word(truncatedUDP, ip + 2), 24)
    XCTAssertEqual(truncatedUDP.count, udp + 4)

    let longUDP = try XCTUnwrap(frames["udp-length-exceeds-ip-payload"])
    XCTAssertGreaterThan(word(longUDP, udp + 4), word(longUDP, ip + 2) - 20)

    XCTAssertEqual(try XCTUnwrap(frames["vxlan-header-truncated"]).count, udp + 8 + 4)
    XCTAssertEqual(try XCTUnwrap(frames["vxlan-i-flag-clear"])[udp + 8], 0x00)
    XCTAssertEqual(try XCTUnwrap(frames["vxlan-reserved-flag-bit-set"])[udp + 8], 0x09)
    XCTAssertEqual(try XCTUnwrap(frames["vxlan-inner-frame-truncated"]).count, udp + 8 + 8 + 6)

    let first = try XCTUnwrap(frames["outer-ipv4-first-fragment"])
    XCTAssertEqual(word(first, ip + 6), 0x2000, "MF set, offset 0")
    let last = try XCTUnwrap(frames["outer-ipv4-last-fragment"])
    XCTAssertEqual(word(last, ip + 6), 48 / 8, "MF clear, offset 48 bytes")

    let options = try XCTUnwrap(frames["outer-ipv4-with-options"])
    XCTAssertEqual(options[ip], 0x46)
    XCTAssertTrue(InternetChecksum.isValid(Array(options[ip..<ip + 24])))

    XCTAssertFalse(
      InternetChecksum.isValid(Array(try XCTUnwrap(frames["outer-ipv4-bad-header-checksum"])[ip..<udp])))

    let longIP = try XCTUnwrap(frames["outer-ipv4-total-length-exceeds-frame"])
    XCTAssertGreaterThan(word(longIP, ip + 2), longIP.count - ip)
    XCTAssertTrue(InternetChecksum.isValid(Array(longIP[ip..<udp])))

    XCTAssertEqual(try XCTUnwrap(frames["outer-ipv4-ihl-below-minimum"])[ip], 0x44)

    let badUDP = try XCTUnwrap(frames["outer-udp-bad-nonzero-checksum"])
    XCTAssertNotEqual(word(badUDP, udp + 6), 0)
    let pseudo = InternetChecksum.pseudoHeaderSum(
      source: VXLANFixtures.vtepA, destination: VXLANFixtures.vtepB, protocolNumber: 17,
      upperLayerLength: badUDP.count - udp)
    XCTAssertFalse(InternetChecksum.isValid(Array(badUDP[udp...]), initial: pseudo))
  }

  func testMalformedFixtureAsSeenByTshark() throws {
    let rows = try ExternalTool.tsharkFields(
      file: VXLANFixtures.malformedPath,
      fields: [
        "ip.hdr_len", "ip.flags.mf", "ip.checksum.status", "udp.checksum.status", "vxlan.flags",
        "vxlan.vni", "_ws.malformed", "_ws.expert.severity",
      ],
      options: ExternalTool.checksumVerification)
    let names = VXLANFixtures.malformedFrames.map(\.name)
    XCTAssertEqual(rows.count, names.count)
    guard rows.count == names.count else { return }
    let row = Dictionary(uniqueKeysWithValues: zip(names, rows))
    let errorSeverity = "8388608"
    func hasError(_ name: String) -> Bool {
      (row[name]?["_ws.expert.severity"] ?? "").split(separator: ",").contains { $0 == errorSeverity }
        || !(row[name]?["_ws.malformed"] ?? "").isEmpty
    }

    XCTAssertFalse(hasError("valid-reference"), "\(String(describing: row["valid-reference"]))")
    XCTAssertEqual(row["valid-reference"]?["vxlan.vni"], "4242")
    XCTAssertTrue(hasError("udp-header-truncated"))
    XCTAssertTrue(hasError("udp-length-exceeds-ip-payload"))
    XCTAssertTrue(hasError("vxlan-header-truncated"))
    XCTAssertEqual(row["vxlan-i-flag-clear"]?["vxlan.flags"], "0x0000")
    XCTAssertEqual(row["vxlan-reserved-flag-bit-set"]?["vxlan.flags"], "0x0900")
    XCTAssertTrue(hasError("vxlan-inner-frame-truncated"))
    XCTAssertEqual(outer("outer-ipv4-first-fragment", "ip.flags.mf"), "1")
    XCTAssertEqual(row["outer-ipv4-first-fragment"]?["vxlan.vni"], "", "not decodable before reassembly")
    XCTAssertEqual(row["outer-ipv4-last-fragment"]?["vxlan.vni"], "4242", "tshark reassembles")
    // Repeated fields list the outer header first, then the inner frame's.
    func outer(_ name: String, _ field: String) -> String? {
      row[name]?[field]?.split(separator: ",").first.map(String.init)
    }
    XCTAssertEqual(outer("outer-ipv4-with-options", "ip.hdr_len"), "24")
    XCTAssertFalse(hasError("outer-ipv4-with-options"))
    XCTAssertEqual(outer("outer-ipv4-bad-header-checksum", "ip.checksum.status"), "0")
    XCTAssertTrue(hasError("outer-ipv4-total-length-exceeds-frame"))
    XCTAssertTrue(hasError("outer-ipv4-ihl-below-minimum"))
    XCTAssertEqual(row["outer-udp-bad-nonzero-checksum"]?["udp.checksum.status"], "0")
  }
}
