import Dataplane
import XCTest

/// Structural checks of FrameBuilder output, independent of any external tool: every
/// length and checksum is re-derived here from the bytes.
final class FrameBuilderTests: XCTestCase {
  let hostA = MACAddress(rawValue: 0x02_00_00_00_00_0A)
  let hostB = MACAddress(rawValue: 0x02_00_00_00_00_0B)
  var link: FrameBuilder.EthernetHeaderFields { .init(destination: hostB, source: hostA) }
  let ipA = IPAddress.v4(0xC0A8_0001)  // 192.168.0.1
  let ipB = IPAddress.v4(0xC0A8_0002)
  let ip6A = IPAddress.v6(0x2001_0DB8_0000_0000, 0xA)  // 2001:db8::a
  let ip6B = IPAddress.v6(0x2001_0DB8_0000_0000, 0xB)  // 2001:db8::b

  private func word(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
  }

  // MARK: checksum

  func testInternetChecksumMatchesRFC1071Example() {
    // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    let data: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
    XCTAssertEqual(InternetChecksum.sum(data), 0xDDF2)
    XCTAssertEqual(InternetChecksum.checksum(data), 0x220D)
    XCTAssertTrue(InternetChecksum.isValid(data + [0x22, 0x0D]))
    // An odd trailing byte is padded on the right.
    XCTAssertEqual(InternetChecksum.sum([0x12]), 0x1200)
    // Sums chain over even-length pieces.
    XCTAssertEqual(
      InternetChecksum.sum(Array(data[4...]), initial: InternetChecksum.sum(Array(data[..<4]))),
      0xDDF2)
  }

  func testInternetChecksumAcceptsARealCapturedHeader() {
    // Inner IPv4 header of the VXLAN frame published in google/gopacket layers/vxlan_test.go.
    let header: [UInt8] = [
      0x45, 0x00, 0x00, 0x54, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x23, 0x4F, 0xC0, 0xA8, 0xCB, 0x03,
      0xC0, 0xA8, 0xCB, 0x05,
    ]
    XCTAssertTrue(InternetChecksum.isValid(header))
  }

  // MARK: Ethernet and ARP

  func testEthernetHeaderVLANTagAndPadding() {
    let tagged = FrameBuilder.ethernet(
      .init(destination: hostB, source: hostA, vlan: .init(vlanID: 100, priority: 5)),
      etherType: 0x88B5, payload: [1, 2, 3])
    XCTAssertEqual(tagged.count, 14 + 4 + 3)
    XCTAssertEqual(Array(tagged[0..<6]), hostB.octets)
    XCTAssertEqual(Array(tagged[6..<12]), hostA.octets)
    XCTAssertEqual(word(tagged, 12), 0x8100)
    XCTAssertEqual(word(tagged, 14), 0xA064, "PCP 5, DEI 0, VID 100")
    XCTAssertEqual(word(tagged, 16), 0x88B5)

    let padded = FrameBuilder.ethernet(link, etherType: 0x88B5, payload: [1, 2, 3], padToMinimum: true)
    XCTAssertEqual(padded.count, FrameBuilder.minimumFrameLength)
    XCTAssertEqual(Array(padded[17...]), [UInt8](repeating: 0, count: 43))
    let large = FrameBuilder.ethernet(
      link, etherType: 0x88B5, payload: [UInt8](repeating: 9, count: 100), padToMinimum: true)
    XCTAssertEqual(large.count, 114, "padding never shortens or grows a large frame")
  }

  func testARPRequestAndReply() {
    let request = FrameBuilder.arpRequestFrame(senderMAC: hostA, senderIP: ipA, targetIP: ipB)
    XCTAssertEqual(request.count, 42)
    XCTAssertEqual(Array(request[0..<6]), MACAddress.broadcast.octets)
    XCTAssertEqual(word(request, 12), 0x0806)
    XCTAssertEqual(Array(request[14..<22]), [0, 1, 0x08, 0x00, 6, 4, 0, 1])
    XCTAssertEqual(Array(request[22..<28]), hostA.octets)
    XCTAssertEqual(Array(request[28..<32]), ipA.bytes)
    XCTAssertEqual(Array(request[32..<38]), [0, 0, 0, 0, 0, 0])
    XCTAssertEqual(Array(request[38..<42]), ipB.bytes)

    let reply = FrameBuilder.arpReplyFrame(
      senderMAC: hostB, senderIP: ipB, targetMAC: hostA, targetIP: ipA, padToMinimum: true)
    XCTAssertEqual(reply.count, 60)
    XCTAssertEqual(Array(reply[0..<6]), hostA.octets)
    XCTAssertEqual(word(reply, 20), 2)
  }

  // MARK: IP

  func testIPv4HeaderFieldsOptionsAndChecksum() {
    let fields = FrameBuilder.IPv4HeaderFields(
      typeOfService: 0xB8, identification: 0xBEEF, timeToLive: 7, dontFragment: true,
      options: [0x94, 0x04, 0x00])  // Router Alert, one byte short: padded with EOL
    let packet = FrameBuilder.ipv4Packet(
      source: ipA, destination: ipB, protocolNumber: 253, payload: [9, 9, 9, 9, 9], fields: fields)
    XCTAssertEqual(packet[0], 0x46, "version 4, IHL 6 (24-byte header)")
    XCTAssertEqual(packet[1], 0xB8)
    XCTAssertEqual(Int(word(packet, 2)), 24 + 5)
    XCTAssertEqual(packet.count, 29)
    XCTAssertEqual(word(packet, 4), 0xBEEF)
    XCTAssertEqual(word(packet, 6), 0x4000, "DF set, MF clear, offset 0")
    XCTAssertEqual(packet[8], 7)
    XCTAssertEqual(packet[9], 253)
    XCTAssertEqual(Array(packet[20..<24]), [0x94, 0x04, 0x00, 0x00])
    XCTAssertTrue(InternetChecksum.isValid(Array(packet[0..<24])))
  }

  func testIPv4FragmentsCoverThePayloadWithCorrectOffsets() {
    let datagram = FrameBuilder.udpDatagram(
      sourcePort: 1, destinationPort: 2, payload: (0..<100).map { UInt8($0) }, source: ipA,
      destination: ipB)
    let fragments = FrameBuilder.ipv4Fragments(
      source: ipA, destination: ipB, protocolNumber: FrameBuilder.IPProtocolNumber.udp,
      payload: datagram, maximumFragmentPayload: 50,
      fields: .init(identification: 77, dontFragment: true))
    XCTAssertEqual(fragments.count, 3, "108 bytes in 48-byte pieces")
    var reassembled: [UInt8] = []
    for (index, fragment) in fragments.enumerated() {
      let flagsAndOffset = word(fragment, 6)
      XCTAssertEqual(Int(flagsAndOffset & 0x1FFF) * 8, reassembled.count)
      XCTAssertEqual(flagsAndOffset & 0x2000 != 0, index < 2, "MF on all but the last")
      XCTAssertEqual(flagsAndOffset & 0x4000, 0, "fragments never carry DF")
      XCTAssertEqual(word(fragment, 4), 77)
      XCTAssertTrue(InternetChecksum.isValid(Array(fragment[0..<20])))
      reassembled += fragment[20...]
    }
    XCTAssertEqual(reassembled, datagram)
  }

  func testIPv6Header() {
    let packet = FrameBuilder.ipv6Packet(
      source: ip6A, destination: ip6B, nextHeader: 59, payload: [1, 2],
      fields: .init(trafficClass: 0xAB, flowLabel: 0x12345, hopLimit: 3))
    XCTAssertEqual(packet.count, 42)
    XCTAssertEqual(Array(packet[0..<4]), [0x6A, 0xB1, 0x23, 0x45])
    XCTAssertEqual(word(packet, 4), 2)
    XCTAssertEqual(packet[6], 59)
    XCTAssertEqual(packet[7], 3)
    XCTAssertEqual(Array(packet[8..<24]), ip6A.bytes)
    XCTAssertEqual(Array(packet[24..<40]), ip6B.bytes)
  }

  // MARK: transport

  func testUDPChecksumComputedOrZero() {
    for (source, destination) in [(ipA, ipB), (ip6A, ip6B)] {
      let datagram = FrameBuilder.udpDatagram(
        sourcePort: 5000, destinationPort: 53, payload: [1, 2, 3], source: source,
        destination: destination)
      XCTAssertEqual(Int(word(datagram, 4)), 11)
      XCTAssertNotEqual(word(datagram, 6), 0)
      let pseudo = InternetChecksum.pseudoHeaderSum(
        source: source, destination: destination, protocolNumber: 17, upperLayerLength: 11)
      XCTAssertTrue(InternetChecksum.isValid(datagram, initial: pseudo), "\(source)")
    }
    let unchecked = FrameBuilder.udpDatagram(
      sourcePort: 5000, destinationPort: 53, payload: [1, 2, 3], source: ipA, destination: ipB,
      checksum: .zero)
    XCTAssertEqual(word(unchecked, 6), 0)
  }

  func testTCPAndICMPChecksums() {
    for (source, destination) in [(ipA, ipB), (ip6A, ip6B)] {
      let segment = FrameBuilder.tcpSegment(
        sourcePort: 40000, destinationPort: 80, sequenceNumber: 0xDEAD_BEEF, flags: [.syn],
        payload: [7], source: source, destination: destination)
      XCTAssertEqual(segment.count, 21)
      XCTAssertEqual(segment[12], 0x50, "data offset 5 words")
      XCTAssertEqual(segment[13], 0x02)
      let tcpPseudo = InternetChecksum.pseudoHeaderSum(
        source: source, destination: destination, protocolNumber: 6, upperLayerLength: 21)
      XCTAssertTrue(InternetChecksum.isValid(segment, initial: tcpPseudo))

      let echo = FrameBuilder.icmpEcho(
        kind: .request, identifier: 0x1234, sequenceNumber: 9, payload: [1, 2, 3],
        source: source, destination: destination)
      XCTAssertEqual(echo[0], source.isIPv4 ? 8 : 128)
      let icmpPseudo =
        source.isIPv4
        ? 0
        : InternetChecksum.pseudoHeaderSum(
          source: source, destination: destination, protocolNumber: 58, upperLayerLength: 11)
      XCTAssertTrue(InternetChecksum.isValid(echo, initial: icmpPseudo))
    }
  }

  // MARK: VXLAN

  func testVXLANOverIPv4Layout() {
    let inner = FrameBuilder.icmpEchoFrame(
      link: link, source: ipA, destination: ipB, kind: .request, identifier: 1,
      sequenceNumber: 1)
    let underlay = FrameBuilder.VXLANUnderlay(
      link: .init(destination: MACAddress(rawValue: 0x0E), source: MACAddress(rawValue: 0x0F)),
      source: .v4(0x0A00_0001), destination: .v4(0x0A00_0002), sourcePort: 49152)
    let frame = FrameBuilder.vxlanFrame(inner: inner, vni: 0xABCDEF, underlay: underlay)
    XCTAssertEqual(frame.count, 14 + 20 + 8 + 8 + inner.count)
    XCTAssertEqual(word(frame, 12), 0x0800)
    XCTAssertEqual(Int(word(frame, 16)), frame.count - 14, "IPv4 total length")
    XCTAssertEqual(frame[23], 17)
    XCTAssertEqual(word(frame, 34), 49152)
    XCTAssertEqual(word(frame, 36), 4789)
    XCTAssertEqual(Int(word(frame, 38)), 8 + 8 + inner.count, "UDP length")
    XCTAssertEqual(word(frame, 40), 0, "UDP checksum zero over IPv4 by default")
    XCTAssertEqual(Array(frame[42..<50]), [0x08, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0])
    XCTAssertEqual(Array(frame[50...]), inner)
  }

  func testVXLANOverIPv6ComputesTheUDPChecksum() {
    let inner = FrameBuilder.arpRequestFrame(senderMAC: hostA, senderIP: ipA, targetIP: ipB)
    let underlay = FrameBuilder.VXLANUnderlay(
      link: link, source: ip6A, destination: ip6B, sourcePort: 50000, destinationPort: 8472)
    XCTAssertEqual(underlay.effectiveUDPChecksum, .computed)
    let frame = FrameBuilder.vxlanFrame(inner: inner, vni: 1, underlay: underlay)
    XCTAssertEqual(word(frame, 12), 0x86DD)
    let udp = Array(frame[54...])
    XCTAssertEqual(word(udp, 2), 8472)
    let pseudo = InternetChecksum.pseudoHeaderSum(
      source: ip6A, destination: ip6B, protocolNumber: 17, upperLayerLength: udp.count)
    XCTAssertTrue(InternetChecksum.isValid(udp, initial: pseudo))
  }

  func testVXLANHeaderCanCarryArbitraryFlags() {
    XCTAssertEqual(FrameBuilder.vxlanHeader(vni: 5, flags: 0), [0, 0, 0, 0, 0, 0, 5, 0])
  }
}
