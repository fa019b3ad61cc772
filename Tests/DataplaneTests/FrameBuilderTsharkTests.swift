import Dataplane
import XCTest

/// Cross-checks FrameBuilder against Wireshark's dissectors: frames are written with
/// PcapWriter and decoded by tshark with checksum verification on.
final class FrameBuilderTsharkTests: XCTestCase {
  let hostA = MACAddress(rawValue: 0x02_00_00_00_00_0A)
  let hostB = MACAddress(rawValue: 0x02_00_00_00_00_0B)
  let vtepA = MACAddress(rawValue: 0x02_00_00_00_01_01)
  let vtepB = MACAddress(rawValue: 0x02_00_00_00_01_02)

  private static let fields = [
    "eth.dst", "eth.src", "vlan.id", "vlan.priority", "arp.opcode", "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4", "ip.src", "ip.dst", "ip.ttl", "ip.dsfield", "ip.id", "ip.flags.df",
    "ip.flags.mf", "ip.frag_offset", "ip.hdr_len", "ip.checksum.status", "ipv6.src", "ipv6.dst",
    "udp.srcport", "udp.dstport", "udp.checksum", "udp.checksum.status", "tcp.flags.syn",
    "tcp.checksum.status", "icmp.type", "icmp.checksum.status", "icmpv6.type",
    "icmpv6.checksum.status", "vxlan.flags", "vxlan.vni", "_ws.malformed", "_ws.expert.severity",
  ]

  func testBuiltFramesDecodeWithExpectedFieldsAndGoodChecksums() throws {
    _ = try ExternalTool.require("tshark")
    let ipA = IPAddress.v4(0x0A01_0001)  // 10.1.0.1
    let ipB = IPAddress.v4(0x0A01_0002)
    let ip6A = try XCTUnwrap(IPAddress("fd00::1"))
    let ip6B = try XCTUnwrap(IPAddress("fd00::2"))
    let link = FrameBuilder.EthernetHeaderFields(destination: hostB, source: hostA)
    let tagged = FrameBuilder.EthernetHeaderFields(
      destination: hostB, source: hostA, vlan: .init(vlanID: 100, priority: 5))
    let underlay4 = FrameBuilder.VXLANUnderlay(
      link: .init(destination: vtepB, source: vtepA), source: .v4(0xC633_6401),  // 198.51.100.1
      destination: .v4(0xC633_6402), sourcePort: 49321, ipv4: .init(dontFragment: true))
    let underlay6 = FrameBuilder.VXLANUnderlay(
      link: .init(destination: vtepB, source: vtepA), source: try XCTUnwrap(IPAddress("2001:db8::1")),
      destination: try XCTUnwrap(IPAddress("2001:db8::2")), sourcePort: 50123)
    let innerPing = FrameBuilder.icmpEchoFrame(
      link: link, source: ipA, destination: ipB, kind: .request, identifier: 7,
      sequenceNumber: 1, payload: Array("vxswitch".utf8))
    let fragmentedDatagram = FrameBuilder.udpDatagram(
      sourcePort: 61009, destinationPort: 61010, payload: [UInt8](repeating: 0x5A, count: 120),
      source: ipA, destination: ipB)

    var frames: [[UInt8]] = [
      // 0: ARP request on VLAN 100 / PCP 5
      FrameBuilder.arpRequestFrame(
        senderMAC: hostA, senderIP: ipA, targetIP: ipB, vlan: .init(vlanID: 100, priority: 5)),
      // 1: ARP reply, padded
      FrameBuilder.arpReplyFrame(
        senderMAC: hostB, senderIP: ipB, targetMAC: hostA, targetIP: ipA, padToMinimum: true),
      // 2: IPv4 UDP with options, DF, TTL, TOS, id; tagged
      FrameBuilder.udpFrame(
        link: tagged, source: ipA, destination: ipB, sourcePort: 61001, destinationPort: 61002,
        payload: [1, 2, 3, 4, 5],
        ipv4: .init(
          typeOfService: 0xB8, identification: 0x1234, timeToLive: 9, dontFragment: true,
          options: [0x94, 0x04, 0, 0])),
      // 3: IPv4 TCP SYN
      FrameBuilder.tcpFrame(
        link: link, source: ipA, destination: ipB, sourcePort: 61007, destinationPort: 61008,
        sequenceNumber: 1000, flags: [.syn], padToMinimum: true),
      // 4: IPv4 ICMP echo request
      innerPing,
      // 5: IPv6 UDP
      FrameBuilder.udpFrame(
        link: link, source: ip6A, destination: ip6B, sourcePort: 61003, destinationPort: 61004,
        payload: [9, 8, 7]),
      // 6: IPv6 TCP with payload
      FrameBuilder.tcpFrame(
        link: link, source: ip6A, destination: ip6B, sourcePort: 61005, destinationPort: 61006,
        sequenceNumber: 5, acknowledgmentNumber: 6, flags: [.ack, .psh], payload: [1, 2, 3]),
      // 7: ICMPv6 echo reply
      FrameBuilder.icmpEchoFrame(
        link: link, source: ip6A, destination: ip6B, kind: .reply, identifier: 1, sequenceNumber: 2),
      // 8: VXLAN over IPv4, zero UDP checksum
      FrameBuilder.vxlanFrame(inner: innerPing, vni: 5001, underlay: underlay4),
      // 9: VXLAN over IPv6, computed UDP checksum, inner ARP
      FrameBuilder.vxlanFrame(
        inner: FrameBuilder.arpRequestFrame(senderMAC: hostA, senderIP: ipA, targetIP: ipB),
        vni: 0xFFFFFF, underlay: underlay6),
    ]
    // 10: VXLAN over IPv4 with an explicitly computed UDP checksum
    var checkedUnderlay = underlay4
    checkedUnderlay.udpChecksum = .computed
    frames.append(FrameBuilder.vxlanFrame(inner: innerPing, vni: 1, underlay: checkedUnderlay))
    // 11, 12: two IPv4 fragments of one UDP datagram
    for fragment in FrameBuilder.ipv4Fragments(
      source: ipA, destination: ipB, protocolNumber: FrameBuilder.IPProtocolNumber.udp,
      payload: fragmentedDatagram, maximumFragmentPayload: 64, fields: .init(identification: 99))
    {
      frames.append(FrameBuilder.ethernet(link, etherType: FrameBuilder.EtherType.ipv4, payload: fragment))
    }

    let path = try makeScratchDirectory(for: self) + "/built.pcap"
    let writer = try PcapWriter(path: path)
    for (index, frame) in frames.enumerated() {
      try writer.write(frame, timestampNanos: 1_000_000_000 * UInt64(index + 1))
    }
    try writer.close()

    let rows = try ExternalTool.tsharkFields(
      file: path, fields: Self.fields, options: ExternalTool.checksumVerification)
    XCTAssertEqual(rows.count, frames.count)
    guard rows.count == frames.count else { return }

    for (index, row) in rows.enumerated() {
      XCTAssertEqual(row["_ws.malformed"], "", "frame \(index) is malformed: \(row)")
      // Severity "error" (0x00800000) would flag bad checksums or lengths.
      XCTAssertFalse(row["_ws.expert.severity"]?.contains("8388608") ?? false, "frame \(index): \(row)")
      for status in [
        "ip.checksum.status", "udp.checksum.status", "tcp.checksum.status", "icmp.checksum.status",
        "icmpv6.checksum.status",
      ] {
        // 0 = Bad, 1 = Good, 2 = Unverified (e.g. UDP checksum zero).
        XCTAssertFalse(
          row[status]?.split(separator: ",").contains("0") ?? false, "frame \(index) \(status): \(row)")
      }
    }

    XCTAssertEqual(rows[0]["eth.dst"], "ff:ff:ff:ff:ff:ff")
    XCTAssertEqual(rows[0]["vlan.id"], "100")
    XCTAssertEqual(rows[0]["vlan.priority"], "5")
    XCTAssertEqual(rows[0]["arp.opcode"], "1")
    XCTAssertEqual(rows[0]["arp.dst.proto_ipv4"], "10.1.0.2")
    XCTAssertEqual(rows[1]["arp.opcode"], "2")
    XCTAssertEqual(rows[1]["eth.dst"], "02:00:00:00:00:0a")

    XCTAssertEqual(rows[2]["ip.hdr_len"], "24")
    XCTAssertEqual(rows[2]["ip.ttl"], "9")
    XCTAssertEqual(rows[2]["ip.id"], "0x1234")
    XCTAssertEqual(rows[2]["ip.dsfield"], "0xb8")
    XCTAssertEqual(rows[2]["ip.flags.df"], "1")
    XCTAssertEqual(rows[2]["ip.checksum.status"], "1")
    XCTAssertEqual(rows[2]["udp.checksum.status"], "1")
    XCTAssertEqual(rows[2]["udp.dstport"], "61002")

    XCTAssertEqual(rows[3]["tcp.flags.syn"], "1")
    XCTAssertEqual(rows[3]["tcp.checksum.status"], "1")
    XCTAssertEqual(rows[4]["icmp.type"], "8")
    XCTAssertEqual(rows[4]["icmp.checksum.status"], "1")
    XCTAssertEqual(rows[5]["ipv6.dst"], "fd00::2")
    XCTAssertEqual(rows[5]["udp.checksum.status"], "1")
    XCTAssertEqual(rows[6]["tcp.checksum.status"], "1")
    XCTAssertEqual(rows[7]["icmpv6.type"], "129")
    XCTAssertEqual(rows[7]["icmpv6.checksum.status"], "1")

    // VXLAN over IPv4: repeated fields list the outer header first, then the inner one.
    XCTAssertEqual(rows[8]["vxlan.vni"], "5001")
    XCTAssertEqual(rows[8]["vxlan.flags"], "0x0800")
    XCTAssertEqual(rows[8]["eth.dst"], "02:00:00:00:01:02,02:00:00:00:00:0b")
    XCTAssertEqual(rows[8]["ip.src"], "198.51.100.1,10.1.0.1")
    XCTAssertEqual(rows[8]["udp.dstport"], "4789")
    XCTAssertEqual(rows[8]["udp.checksum"], "0x0000")
    XCTAssertEqual(rows[8]["ip.checksum.status"], "1,1")
    XCTAssertEqual(rows[8]["icmp.checksum.status"], "1")

    XCTAssertEqual(rows[9]["vxlan.vni"], "16777215")
    XCTAssertEqual(rows[9]["ipv6.src"], "2001:db8::1")
    XCTAssertEqual(rows[9]["udp.checksum.status"], "1")
    XCTAssertEqual(rows[9]["arp.opcode"], "1")

    XCTAssertEqual(rows[10]["udp.checksum.status"], "1")
    XCTAssertEqual(rows[10]["vxlan.vni"], "1")

    XCTAssertEqual(rows[11]["ip.flags.mf"], "1")
    XCTAssertEqual(rows[12]["ip.flags.mf"], "0")
    // tshark 4.0 prints the offset in 8-byte units as on the wire (64 bytes = 8).
    XCTAssertTrue(["8", "64"].contains(rows[12]["ip.frag_offset"]), "\(rows[12])")
    // The reassembled datagram's UDP checksum verifies.
    XCTAssertEqual(rows[12]["udp.checksum.status"], "1")
  }
}
