import Foundation
import XCTest

@testable import Dataplane

/// Checksum completion (TP_STATUS_CSUMNOTREADY) on hand-made frames, offline.
final class AFPacketChecksumTests: XCTestCase {
  static func sum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt32 {
    var total = initial
    var padded = bytes
    if padded.count % 2 == 1 { padded.append(0) }
    for index in stride(from: 0, to: padded.count, by: 2) {
      total += UInt32(padded[index]) << 8 | UInt32(padded[index + 1])
    }
    while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
    return total
  }

  /// True when the segment's checksum verifies against its pseudo-header.
  static func verifies(source: [UInt8], destination: [UInt8], proto: UInt8, segment: [UInt8]) -> Bool {
    let pseudo = sum(source + destination, initial: UInt32(proto) + UInt32(segment.count))
    return sum(segment, initial: pseudo) == 0xFFFF
  }

  func complete(_ frame: [UInt8]) -> (Bool, [UInt8]) {
    var bytes = frame
    let ok = bytes.withUnsafeMutableBytes {
      ChecksumCompletion.complete(frame: $0.baseAddress!, length: $0.count)
    }
    return (ok, bytes)
  }

  let a = MACAddress("02:00:00:00:00:01")!
  let b = MACAddress("02:00:00:00:00:02")!

  func tcpSegment(payload: [UInt8], partial: UInt16) -> [UInt8] {
    var tcp: [UInt8] = [0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
    tcp[16] = UInt8(partial >> 8)
    tcp[17] = UInt8(partial & 0xFF)
    return tcp + payload
  }

  func testTCPOverIPv4WithPartialChecksum() {
    let source = IPAddress("192.0.2.1")!
    let destination = IPAddress("192.0.2.2")!
    let payload = Array("hello, checksum".utf8) + [0x01]  // odd length
    // CHECKSUM_PARTIAL leaves the folded pseudo-header sum in the field.
    let segmentLength = 20 + payload.count
    let partial = UInt16(Self.sum(source.bytes + destination.bytes, initial: 6 + UInt32(segmentLength)))
    let tcp = tcpSegment(payload: payload, partial: partial)
    var ip: [UInt8] =
      [0x45, 0, 0, UInt8(20 + tcp.count), 0, 1, 0x40, 0, 64, 6, 0, 0] + source.bytes + destination.bytes
    let ipChecksum = Frames.ipv4Checksum(ip)
    ip[10] = UInt8(ipChecksum >> 8)
    ip[11] = UInt8(ipChecksum & 0xFF)
    // Ethernet padding after the IP packet must not be summed.
    let frame = Frames.ethernet(
      destination: a, source: b, etherType: 0x0800, payload: ip + tcp + [0xEE, 0xEE])
    let (ok, done) = complete(frame)
    XCTAssertTrue(ok)
    let segment = Array(done[34..<(34 + tcp.count)])
    XCTAssertTrue(
      Self.verifies(source: source.bytes, destination: destination.bytes, proto: 6, segment: segment))
    XCTAssertEqual(Array(done[0..<34]), Array(frame[0..<34]), "headers untouched")
    XCTAssertEqual(Array(done[(34 + 18)...]), Array(frame[(34 + 18)...]), "payload untouched")
  }

  func testUDPOverIPv6WithHopByHopAndInBandVLAN() {
    let source = IPAddress("2001:db8::1")!
    let destination = IPAddress("2001:db8::2")!
    let payload: [UInt8] = Array(repeating: 0x5A, count: 33)
    var udp: [UInt8] = [0x13, 0x88, 0x13, 0x89, 0, UInt8(8 + payload.count), 0xAB, 0xCD] + payload
    let hopByHop: [UInt8] = [17, 0, 1, 4, 0, 0, 0, 0]  // next header UDP, PadN
    let payloadLength = hopByHop.count + udp.count
    let ip: [UInt8] = [0x60, 0, 0, 0, 0, UInt8(payloadLength), 0, 64] + source.bytes + destination.bytes
    let frame = Frames.ethernet(
      destination: a, source: b, etherType: 0x86DD, vlan: 7, payload: ip + hopByHop + udp)
    let (ok, done) = complete(frame)
    XCTAssertTrue(ok)
    let start = 18 + 40 + 8
    udp = Array(done[start..<(start + udp.count)])
    XCTAssertTrue(
      Self.verifies(source: source.bytes, destination: destination.bytes, proto: 17, segment: udp))
  }

  func testLeavesOtherFramesAlone() {
    let arp = Frames.ethernet(
      destination: a, source: b, etherType: 0x0806, payload: [UInt8](repeating: 1, count: 28))
    XCTAssertEqual(complete(arp).0, false)
    XCTAssertEqual(complete(arp).1, arp)
    // A fragment: its checksum covers bytes we do not have.
    var fragment: [UInt8] = [0x45, 0, 0, 40, 0, 1, 0x20, 0, 64, 17, 0, 0] + [10, 0, 0, 1, 10, 0, 0, 2]
    fragment += [UInt8](repeating: 0, count: 20)
    let frame = Frames.ethernet(destination: a, source: b, etherType: 0x0800, payload: fragment)
    XCTAssertEqual(complete(frame).0, false)
    XCTAssertEqual(complete(frame).1, frame)
    // Truncated: IP total length beyond the frame.
    var short = fragment
    short[6] = 0
    short[3] = 200
    XCTAssertEqual(
      complete(Frames.ethernet(destination: a, source: b, etherType: 0x0800, payload: short)).0, false)
  }
}
