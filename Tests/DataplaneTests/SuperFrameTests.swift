import CPacket
import Foundation
import XCTest

@testable import Dataplane

/// Segmentation of TSO/USO super-frames (`SuperFrame`): every segment is compared byte
/// for byte with the frame `FrameBuilder` makes independently (its own checksum code), and
/// malformed `virtio_net_hdr` values are refused with a named reason.
final class SuperFrameTests: XCTestCase {
  let vm1 = MACAddress("02:00:00:00:01:01")!
  let vm2 = MACAddress("02:00:00:00:02:01")!
  let a4 = IPAddress("192.168.100.11")!
  let b4 = IPAddress("192.168.100.21")!
  let a6 = IPAddress("fd10::11")!
  let b6 = IPAddress("fd10::21")!

  /// Cuts `frame` as `header` says and returns the segments.
  func segments(_ frame: [UInt8], _ header: VirtioNetHeader) throws -> [[UInt8]] {
    try frame.withUnsafeBytes { bytes -> [[UInt8]] in
      var superFrame = try SuperFrame(frame: bytes.baseAddress!, length: bytes.count, header: header)
      var out: [[UInt8]] = []
      let buffer = UnsafeMutableRawPointer.allocate(byteCount: 70_000, alignment: 64)
      defer { buffer.deallocate() }
      while !superFrame.isFinished {
        let expected = superFrame.nextSegmentLength
        let length = superFrame.writeNext(to: buffer)
        XCTAssertEqual(length, expected)
        out.append(Array(UnsafeRawBufferPointer(start: buffer, count: length)))
      }
      XCTAssertEqual(out.count, superFrame.segmentCount)
      return out
    }
  }

  func payload(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) } }

  func tcpHeader(ipv6: Bool, mss: UInt16, ecn: Bool = false) -> VirtioNetHeader {
    VirtioNetHeader(
      flags: VirtioNetHeader.needsChecksum,
      gsoType: (ipv6 ? 4 : 1) | (ecn ? VirtioNetHeader.ecnBit : 0), headerLength: 66, gsoSize: mss,
      checksumStart: ipv6 ? 54 : 34, checksumOffset: 16)
  }

  func testTCPv4SegmentsMatchIndependentlyBuiltFrames() throws {
    let data = payload(3500)
    let link = FrameBuilder.EthernetHeaderFields(destination: vm2, source: vm1)
    let all: FrameBuilder.TCPFlags = [.ack, .psh, .fin]
    let cwr = FrameBuilder.TCPFlags(rawValue: 0x80)
    let superFrame = FrameBuilder.tcpFrame(
      link: link, source: a4, destination: b4, sourcePort: 40000, destinationPort: 5201,
      sequenceNumber: 0xFFFF_F000,
      acknowledgmentNumber: 77, flags: all.union(cwr), window: 512, payload: data,
      ipv4: .init(identification: 0xFFFE, dontFragment: true))
    let got = try segments(superFrame, tcpHeader(ipv6: false, mss: 1000, ecn: true))
    XCTAssertEqual(got.count, 4)
    for (index, segment) in got.enumerated() {
      let last = index == got.count - 1
      var flags: FrameBuilder.TCPFlags = last ? all : [.ack]
      if index == 0 { flags.formUnion(cwr) }
      let expected = FrameBuilder.tcpFrame(
        link: link, source: a4, destination: b4, sourcePort: 40000, destinationPort: 5201,
        // Sequence numbers wrap; identification too.
        sequenceNumber: 0xFFFF_F000 &+ UInt32(index * 1000), acknowledgmentNumber: 77, flags: flags,
        window: 512,
        payload: Array(data[(index * 1000)..<min(data.count, (index + 1) * 1000)]),
        ipv4: .init(identification: 0xFFFE &+ UInt16(index), dontFragment: true))
      XCTAssertEqual(segment, expected, "segment \(index)")
    }
  }

  func testTCPv6BehindAnInBandVLANTag() throws {
    let data = payload(2801)
    let link = FrameBuilder.EthernetHeaderFields(
      destination: vm2, source: vm1, vlan: .init(vlanID: 10))
    let superFrame = FrameBuilder.tcpFrame(
      link: link, source: a6, destination: b6, sourcePort: 1, destinationPort: 2, sequenceNumber: 5,
      flags: [.ack, .psh], payload: data)
    var header = tcpHeader(ipv6: true, mss: 1400)
    header.checksumStart = 58
    let got = try segments(superFrame, header)
    XCTAssertEqual(got.count, 3)
    for (index, segment) in got.enumerated() {
      let expected = FrameBuilder.tcpFrame(
        link: link, source: a6, destination: b6, sourcePort: 1, destinationPort: 2,
        sequenceNumber: 5 + UInt32(index * 1400), flags: index == 2 ? [.ack, .psh] : [.ack],
        payload: Array(data[(index * 1400)..<min(data.count, (index + 1) * 1400)]))
      XCTAssertEqual(segment, expected, "segment \(index)")
    }
  }

  func testUDPSegmentationMakesOneDatagramPerSegment() throws {
    for (source, destination) in [(a4, b4), (a6, b6)] {
      let data = payload(4000)
      let link = FrameBuilder.EthernetHeaderFields(destination: vm2, source: vm1)
      let superFrame = FrameBuilder.udpFrame(
        link: link, source: source, destination: destination, sourcePort: 9, destinationPort: 10,
        payload: data, ipv4: .init(identification: 9))
      let header = VirtioNetHeader(
        flags: VirtioNetHeader.needsChecksum, gsoType: 5, headerLength: 42, gsoSize: 1472,
        checksumStart: source.isIPv4 ? 34 : 54, checksumOffset: 6)
      let got = try segments(superFrame, header)
      XCTAssertEqual(got.count, 3)
      for (index, segment) in got.enumerated() {
        let expected = FrameBuilder.udpFrame(
          link: link, source: source, destination: destination, sourcePort: 9, destinationPort: 10,
          payload: Array(data[(index * 1472)..<min(data.count, (index + 1) * 1472)]),
          ipv4: .init(identification: 9 + UInt16(index)))
        XCTAssertEqual(segment, expected, "\(source) segment \(index)")
      }
    }
  }

  func testPayloadNoLargerThanOneSegmentIsOneFrameWithFinishedChecksums() throws {
    let link = FrameBuilder.EthernetHeaderFields(destination: vm2, source: vm1)
    let frame = FrameBuilder.tcpFrame(
      link: link, source: a4, destination: b4, sourcePort: 1, destinationPort: 2, sequenceNumber: 1,
      flags: [.ack], payload: payload(900))
    var broken = frame
    broken[50] ^= 0xFF  // the TCP checksum, as a VM leaves it (a partial sum)
    broken[24] ^= 0x5A  // the IPv4 header checksum: each segment's is the kernel's to set
    XCTAssertEqual(try segments(broken, tcpHeader(ipv6: false, mss: 1448)), [frame])
  }

  func testMalformedHeadersAreRefusedWithAReason() throws {
    let link = FrameBuilder.EthernetHeaderFields(destination: vm2, source: vm1)
    let tcp4 = FrameBuilder.tcpFrame(
      link: link, source: a4, destination: b4, sourcePort: 1, destinationPort: 2, sequenceNumber: 1,
      flags: [.ack], payload: payload(3000))
    let udp4 = FrameBuilder.udpFrame(
      link: link, source: a4, destination: b4, sourcePort: 1, destinationPort: 2, payload: payload(3000))
    func refusal(_ frame: [UInt8], _ header: VirtioNetHeader) -> SuperFrame.Failure? {
      frame.withUnsafeBytes { bytes -> SuperFrame.Failure? in
        do {
          _ = try SuperFrame(frame: bytes.baseAddress!, length: bytes.count, header: header)
          return nil
        } catch let failure as SuperFrame.Failure {
          return failure
        } catch {
          return nil
        }
      }
    }
    var header = tcpHeader(ipv6: false, mss: 1000)
    XCTAssertNil(refusal(tcp4, header))
    header.gsoSize = 0
    XCTAssertEqual(refusal(tcp4, header), .zeroSegmentSize)
    header = tcpHeader(ipv6: false, mss: 1000)
    header.headerLength = UInt16(tcp4.count + 1)
    XCTAssertEqual(refusal(tcp4, header), .headersPastFrame)
    header = tcpHeader(ipv6: false, mss: 1000)
    header.checksumStart = UInt16(tcp4.count - 1)
    XCTAssertEqual(refusal(tcp4, header), .headersPastFrame)
    header = tcpHeader(ipv6: false, mss: 1000)
    header.checksumOffset = 0xFFFF
    XCTAssertEqual(refusal(tcp4, header), .headersPastFrame)
    header = tcpHeader(ipv6: true, mss: 1000)
    XCTAssertEqual(refusal(tcp4, header), .protocolMismatch, "TCPv6 gso on an IPv4 frame")
    header = tcpHeader(ipv6: false, mss: 1000)
    XCTAssertEqual(refusal(udp4, header), .protocolMismatch, "TCP gso on a UDP datagram")
    for type: UInt8 in [3, 2, 6, 0x7F] {
      header.gsoType = type
      XCTAssertEqual(refusal(tcp4, header), .unsupportedType, "gso type \(type)")
    }
    header = tcpHeader(ipv6: false, mss: 1000)
    XCTAssertEqual(refusal(Array(tcp4.dropLast()), header), .lengthMismatch, "IPv4 length past the frame")
    XCTAssertEqual(refusal(Array(tcp4.prefix(40)), header), .headersPastFrame)
    var fragment = tcp4
    fragment[20] |= 0x20  // more fragments
    XCTAssertEqual(refusal(fragment, header), .fragment)
    var badOffset = tcp4
    badOffset[46] = 0xF0  // TCP data offset 60 bytes: still inside the frame, so accepted
    XCTAssertNil(refusal(badOffset, header))
    badOffset[46] = 0x10  // 4 bytes: below the minimum
    XCTAssertEqual(refusal(badOffset, header), .headersPastFrame)
  }

  /// Wireshark's dissectors agree: segments of TCP/IPv4, TCP/IPv6 and UDP super-frames
  /// decode with good IP, TCP and UDP checksums, contiguous sequence numbers and no
  /// malformed or error-level expert notes.
  func testTsharkDecodesSegmentsWithGoodChecksums() throws {
    _ = try ExternalTool.require("tshark")
    let link = FrameBuilder.EthernetHeaderFields(destination: vm2, source: vm1)
    var frames: [[UInt8]] = []
    frames += try segments(
      FrameBuilder.tcpFrame(
        link: link, source: a4, destination: b4, sourcePort: 40000, destinationPort: 5201,
        sequenceNumber: 1000,
        flags: [.ack, .psh], payload: payload(5000), ipv4: .init(dontFragment: true)),
      tcpHeader(ipv6: false, mss: 1448))
    frames += try segments(
      FrameBuilder.tcpFrame(
        link: link, source: a6, destination: b6, sourcePort: 40001, destinationPort: 5201, sequenceNumber: 7,
        flags: [.ack], payload: payload(4000)),
      tcpHeader(ipv6: true, mss: 1428))
    frames += try segments(
      FrameBuilder.udpFrame(
        link: link, source: a4, destination: b4, sourcePort: 9, destinationPort: 10, payload: payload(3000)),
      VirtioNetHeader(
        flags: VirtioNetHeader.needsChecksum, gsoType: 5, headerLength: 42, gsoSize: 1400, checksumStart: 34,
        checksumOffset: 6))
    let path = try makeScratchDirectory(for: self) + "/segments.pcap"
    let writer = try PcapWriter(path: path)
    for (index, frame) in frames.enumerated() {
      try writer.write(frame, timestampNanos: 1_000_000_000 * UInt64(index + 1))
    }
    try writer.close()
    let rows = try ExternalTool.tsharkFields(
      file: path,
      fields: [
        "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "tcp.seq_raw", "tcp.len",
        "_ws.malformed", "_ws.expert.severity",
      ], options: ExternalTool.checksumVerification)
    XCTAssertEqual(rows.count, frames.count)
    var nextSequence: [String: Int] = [:]
    for (index, row) in rows.enumerated() {
      XCTAssertEqual(row["_ws.malformed"], "", "frame \(index): \(row)")
      XCTAssertFalse(row["_ws.expert.severity"]?.contains("8388608") ?? false, "frame \(index): \(row)")
      for status in ["ip.checksum.status", "tcp.checksum.status", "udp.checksum.status"] {
        let value = row[status] ?? ""
        XCTAssertTrue(value == "" || value == "1", "frame \(index) \(status) = \(value) (1 is good)")
      }
      if let sequence = row["tcp.seq_raw"].flatMap(Int.init), let length = row["tcp.len"].flatMap(Int.init) {
        let flow = frames[index][12] == 0x86 ? "v6" : "v4"
        if let expected = nextSequence[flow] { XCTAssertEqual(sequence, expected, "frame \(index)") }
        nextSequence[flow] = sequence + length
      }
    }
    XCTAssertEqual(nextSequence["v4"], 1000 + 5000)
    XCTAssertEqual(nextSequence["v6"], 7 + 4000)
  }

  /// Random headers over random and real frames: refused or cut, never a crash, and
  /// every segment stays inside the bounds `nextSegmentLength` announced.
  func testRandomHeadersNeverCrash() throws {
    var random = SplitMix64(seed: 13)
    let link = FrameBuilder.EthernetHeaderFields(destination: vm2, source: vm1)
    let real = FrameBuilder.tcpFrame(
      link: link, source: a6, destination: b6, sourcePort: 1, destinationPort: 2, sequenceNumber: 1,
      flags: [.ack], payload: payload(5000))
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 70_000, alignment: 64)
    defer { buffer.deallocate() }
    var cut = 0
    for round in 0..<20_000 {
      var frame = real
      if round % 2 == 1 {
        frame = (0..<Int(random.next() % 3000)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
      } else {
        for _ in 0..<Int(random.next() % 4) {
          frame[Int(random.next() % UInt64(frame.count))] = UInt8(truncatingIfNeeded: random.next())
        }
      }
      let header = VirtioNetHeader(
        flags: UInt8(truncatingIfNeeded: random.next() % 4),
        gsoType: [4, 4, 4, 0x84, 1, 5, 3, 0xFF][Int(random.next() % 8)],
        headerLength: UInt16(truncatingIfNeeded: random.next() % 128),
        gsoSize: UInt16(truncatingIfNeeded: random.next() % 2000),
        checksumStart: UInt16(truncatingIfNeeded: random.next() % 200),
        checksumOffset: UInt16(truncatingIfNeeded: random.next() % 40))
      frame.withUnsafeBytes { bytes in
        guard let base = bytes.baseAddress,
          var superFrame = try? SuperFrame(frame: base, length: bytes.count, header: header)
        else { return }
        cut += 1
        var total = 0
        while !superFrame.isFinished && total < 10_000 {
          let expected = superFrame.nextSegmentLength
          XCTAssertLessThanOrEqual(expected, bytes.count)
          XCTAssertEqual(superFrame.writeNext(to: buffer), expected)
          total += 1
        }
        XCTAssertTrue(superFrame.isFinished)
      }
    }
    XCTAssertGreaterThan(cut, 2000, "some of the mutated frames are still valid super-frames")
  }
}

/// A super-frame sent through a real veth by a packet socket with `PACKET_VNET_HDR` (as a
/// VM's stack hands one to its veth) arrives at the access port as one GSO frame with its
/// `virtio_net_hdr`, and leaves the port as MTU-sized segments. (On AFPacketPortTests'
/// veth pair.)
extension AFPacketPortTests {
  func testPortCutsASuperFrameIntoSegmentsWithTheirVLANTag() throws {
    try checkPortCutsASuperFrame(deferringPayloads: false)
  }

  /// The same with the payloads left in the super-frame until the consumer (here
  /// `drain`, as the pipeline would) copies them into place.
  func testPortCutsASuperFrameIntoSegmentsWithDeferredPayloads() throws {
    try checkPortCutsASuperFrame(deferringPayloads: true)
  }

  func checkPortCutsASuperFrame(deferringPayloads: Bool) throws {
    try NetworkNamespace.run(ns) {
      var options = AFPacketPort.Options()
      options.deferSegmentPayloads = deferringPayloads
      let port = try AFPacketPort(interface: "p0", role: .access, options: options)
      XCTAssertTrue(port.hasVirtioNetHeader)
      let sender = try RawSender(interface: "p1")
      XCTAssertEqual(cp_setsockopt_int(sender.fd, Int32(CP_SOL_PACKET), Int32(CP_PACKET_VNET_HDR), 1), 0)
      let data = (0..<20_000).map { UInt8(truncatingIfNeeded: $0) }
      let source = IPAddress("10.0.0.1")!
      let destination = IPAddress("10.0.0.2")!
      for (round, vlan) in [nil, 10 as UInt16?].enumerated() {
        let link = FrameBuilder.EthernetHeaderFields(
          destination: MACAddress("02:00:00:00:00:0a")!, source: MACAddress("02:00:00:00:00:0b")!,
          vlan: vlan.map { .init(vlanID: $0) })
        let frame = FrameBuilder.tcpFrame(
          link: link, source: source, destination: destination, sourcePort: 7, destinationPort: 8,
          sequenceNumber: 100, flags: [.ack, .psh], payload: data, ipv4: .init(dontFragment: true))
        let l2 = vlan == nil ? 14 : 18
        var header = [UInt8](repeating: 0, count: VirtioNetHeader.length)
        header.withUnsafeMutableBytes {
          VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum, gsoType: 1, headerLength: UInt16(l2 + 40), gsoSize: 1448,
            checksumStart: UInt16(l2 + 20), checksumOffset: 16
          ).store(to: $0.baseAddress!)
        }
        sender.send(header + frame)
        var frames: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
        XCTAssertTrue(
          eventually {
            drain(port, into: &frames)
            return frames.count >= 14
          }, "got \(frames.count) frames")
        XCTAssertEqual(frames.count, 14)  // 20000 / 1448, rounded up
        // The receive path moves an in-band tag into tp_vlan_tci: segments carry it there.
        let tags = Set(frames.map(\.tag))
        XCTAssertEqual(tags, [vlan.map { FrameVector.vlanTagPresent | UInt32($0) } ?? 0])
        XCTAssertTrue(frames.allSatisfy { $0.bytes.count <= 1448 + 54 })
        XCTAssertEqual(
          frames.filter { $0.flags & FrameFlags.payloadDeferred != 0 }.count, deferringPayloads ? 14 : 0)
        XCTAssertEqual(Array(frames.map { $0.bytes[54...] }.joined()), data)
        for frame in frames {
          XCTAssertTrue(InternetChecksum.isValid(Array(frame.bytes[14..<34])), "IPv4 header checksum")
          let tcp = Array(frame.bytes[34...])
          let pseudo = InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, protocolNumber: 6, upperLayerLength: tcp.count)
          XCTAssertTrue(InternetChecksum.isValid(tcp, initial: pseudo), "TCP checksum")
        }
        let statistics = port.statistics
        XCTAssertEqual(statistics.superFrames, UInt64(round + 1))
        XCTAssertEqual(statistics.segments, UInt64(14 * (round + 1)))
        XCTAssertEqual(statistics.offloadDrops, 0)
      }
    }
  }
}
