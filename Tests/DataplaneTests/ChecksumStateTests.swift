import XCTest

@testable import Dataplane

/// `ChecksumCompletion.state`: what an AF_XDP port, which gets no checksum metadata, makes
/// of a frame's L4 checksum, against checksums computed here independently (RFC 1071 sums
/// over the bytes, the pseudo-header written out).
final class ChecksumStateTests: XCTestCase {
  let source = IPAddress("192.168.5.1")!
  let destination = IPAddress("192.168.5.2")!

  /// The RFC 1071 sum of `bytes`, folded, not complemented.
  func fold(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index + 1 < bytes.count {
      sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
      index += 2
    }
    if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return UInt16(sum)
  }

  /// An Ethernet + IPv4 or IPv6 + TCP/UDP frame with `payload`; the L4 checksum field set
  /// by `checksum` from (pseudo-header sum, full checksum).
  func frame(
    ipv6: Bool = false, udp: Bool = false, payload: [UInt8], checksum: (UInt16, UInt16) -> UInt16
  ) -> [UInt8] {
    let proto: UInt8 = udp ? 17 : 6
    var l4: [UInt8] =
      udp
      ? [0xC0, 0x00, 0x12, 0xB5, UInt8((8 + payload.count) >> 8), UInt8((8 + payload.count) & 0xFF), 0, 0]
      : [0x1F, 0x90, 0xC0, 0x01, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
    l4 += payload
    let (src, dst) =
      ipv6 ? (IPAddress("fd00::1")!.bytes, IPAddress("fd00::2")!.bytes) : (source.bytes, destination.bytes)
    let pseudo = fold(src + dst + [0, proto, UInt8(l4.count >> 8), UInt8(l4.count & 0xFF)])
    let full = ~fold([UInt8(pseudo >> 8), UInt8(pseudo & 0xFF)] + l4)
    let value = checksum(pseudo, full)
    let field = udp ? 6 : 16
    l4[field] = UInt8(value >> 8)
    l4[field + 1] = UInt8(value & 0xFF)
    let ethernet: [UInt8] =
      [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1] + (ipv6 ? [0x86, 0xDD] : [0x08, 0x00])
    if ipv6 {
      return ethernet + [0x60, 0, 0, 0, UInt8(l4.count >> 8), UInt8(l4.count & 0xFF), proto, 64] + src + dst
        + l4
    }
    let total = 20 + l4.count
    var ip: [UInt8] =
      [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 1, 0x40, 0, 64, proto, 0, 0] + src + dst
    let headerChecksum = ~fold(ip)
    ip[10] = UInt8(headerChecksum >> 8)
    ip[11] = UInt8(headerChecksum & 0xFF)
    return ethernet + ip + l4
  }

  func state(_ bytes: [UInt8]) -> ChecksumCompletion.State {
    bytes.withUnsafeBytes { ChecksumCompletion.state(frame: $0.baseAddress!, length: bytes.count) }
  }

  func testClassifiesValidPartialInvalidAndAbsent() {
    for ipv6 in [false, true] {
      for udp in [false, true] {
        let payload = (0..<333).map { UInt8($0 * 7 & 0xFF) }
        let label = "\(ipv6 ? "IPv6" : "IPv4") \(udp ? "UDP" : "TCP")"
        XCTAssertEqual(state(frame(ipv6: ipv6, udp: udp, payload: payload) { $1 }), .valid, label)
        XCTAssertEqual(
          state(frame(ipv6: ipv6, udp: udp, payload: payload) { pseudo, _ in pseudo }), .partial, label)
        XCTAssertEqual(state(frame(ipv6: ipv6, udp: udp, payload: payload) { $1 ^ 0x0100 }), .invalid, label)
        if udp {
          XCTAssertEqual(state(frame(ipv6: ipv6, udp: true, payload: payload) { _, _ in 0 }), .absent, label)
        }
      }
    }
    XCTAssertEqual(state([UInt8](repeating: 0, count: 60)), .absent, "not IP")
  }

  func testCompletingAPartialChecksumGivesTheFullOne() {
    for ipv6 in [false, true] {
      for udp in [false, true] {
        let payload = (0..<1001).map { UInt8($0 * 13 & 0xFF) }
        let expected = frame(ipv6: ipv6, udp: udp, payload: payload) { $1 }
        var partial = frame(ipv6: ipv6, udp: udp, payload: payload) { pseudo, _ in pseudo }
        let completed = partial.withUnsafeMutableBytes {
          ChecksumCompletion.completeIfPartial(frame: $0.baseAddress!, length: $0.count)
        }
        XCTAssertTrue(completed)
        XCTAssertEqual(partial, expected, "\(ipv6) \(udp)")
        // A valid or corrupted checksum is left as it is.
        for original in [expected, frame(ipv6: ipv6, udp: udp, payload: payload) { $1 ^ 0x0001 }] {
          var copy = original
          let changed = copy.withUnsafeMutableBytes {
            ChecksumCompletion.completeIfPartial(frame: $0.baseAddress!, length: $0.count)
          }
          XCTAssertFalse(changed)
          XCTAssertEqual(copy, original)
        }
      }
    }
  }

  /// `isPartial` (no pass over the segment unless the field holds the pseudo-header sum)
  /// says what `state` says, including for a valid checksum that equals the pseudo-header
  /// sum, which only the pass tells apart from a partial one.
  func testIsPartialAgreesWithState() {
    func isPartial(_ bytes: [UInt8]) -> Bool {
      bytes.withUnsafeBytes { ChecksumCompletion.isPartial(frame: $0.baseAddress!, length: bytes.count) }
    }
    for ipv6 in [false, true] {
      for udp in [false, true] {
        let label = "\(ipv6 ? "IPv6" : "IPv4") \(udp ? "UDP" : "TCP")"
        let payload = (0..<257).map { UInt8($0 * 5 & 0xFF) }
        let cases: [(UInt16, UInt16) -> UInt16] = [
          { $1 }, { pseudo, _ in pseudo }, { $1 ^ 0x0100 }, { _, _ in 0 },
        ]
        for checksum in cases {
          let bytes = frame(ipv6: ipv6, udp: udp, payload: payload, checksum: checksum)
          XCTAssertEqual(isPartial(bytes), state(bytes) == .partial, label)
        }
        // The payload's first word chosen so that the full checksum equals the
        // pseudo-header sum: one more makes the checksum one less.
        var pseudo: UInt16 = 0
        var full: UInt16 = 0
        _ = frame(ipv6: ipv6, udp: udp, payload: [0, 0] + payload) {
          pseudo = $0; full = $1; return $1
        }
        let word = (UInt32(full) + 0xFFFF - UInt32(pseudo)) % 0xFFFF
        var coincidence = [UInt8(word >> 8), UInt8(word & 0xFF)] + payload
        var matched = false
        coincidence = frame(ipv6: ipv6, udp: udp, payload: coincidence) { p, f in
          matched = p == f
          return f
        }
        XCTAssertTrue(matched, "\(label): the test's own arithmetic")
        XCTAssertEqual(state(coincidence), .valid, label)
        XCTAssertFalse(isPartial(coincidence), label)
        let original = coincidence
        let changed = coincidence.withUnsafeMutableBytes {
          ChecksumCompletion.completeIfPartial(frame: $0.baseAddress!, length: $0.count)
        }
        XCTAssertFalse(changed, label)
        XCTAssertEqual(coincidence, original, label)
      }
    }
  }

  /// What the AF_XDP underlay port tells the pipeline about a received VXLAN frame.
  func testUnderlayFlagsForKernelBuiltVXLAN() {
    let inner = frame(payload: Array(repeating: 0x5A, count: 100)) { pseudo, _ in pseudo }
    let innerValid = frame(payload: Array(repeating: 0x5A, count: 100)) { $1 }
    func vxlan(_ inner: [UInt8], outerChecksum: (UInt16, UInt16) -> UInt16) -> [UInt8] {
      frame(udp: true, payload: [0x08, 0, 0, 0, 0, 0, 100, 0] + inner, checksum: outerChecksum)
    }
    func flags(_ bytes: [UInt8]) -> UInt8 {
      var copy = bytes
      return copy.withUnsafeMutableBytes {
        AFXDPPort.underlayChecksumFlags($0.baseAddress!, length: $0.count)
      }
    }
    // Outer checksum 0 (the IPv4 default), inner TCP left for a NIC: finish the inner.
    XCTAssertEqual(flags(vxlan(inner) { _, _ in 0 }), FrameFlags.checksumNotReady)
    XCTAssertEqual(flags(vxlan(innerValid) { _, _ in 0 }), 0)
    // Outer checksum itself partial.
    XCTAssertEqual(flags(vxlan(innerValid) { pseudo, _ in pseudo }), FrameFlags.checksumNotReady)
    // A valid outer checksum needs nothing; a corrupted one over a complete inner frame is
    // left for the pipeline to drop.
    XCTAssertEqual(flags(vxlan(innerValid) { $1 }), 0)
    XCTAssertEqual(flags(vxlan(innerValid) { $1 ^ 0x0010 }), 0)
  }

  /// The steering program's jumps all land inside the program, and the map load is where
  /// the loader patches it (the verifier, in AFXDPPortTests, checks the rest).
  func testSteeringProgramShape() {
    for match in [
      XDPSteeringProgram.Match.everything, .vxlan(vtep: source, udpPort: 4789),
      .vxlan(vtep: IPAddress("fd00::1")!, udpPort: 4789),
    ] {
      let (instructions, mapSlots) = XDPSteeringProgram(match: match).assemble()
      XCTAssertEqual(mapSlots.count, 1)
      XCTAssertEqual(instructions[mapSlots[0]] & 0xFF, 0x18, "BPF_LD | BPF_IMM | BPF_DW")
      XCTAssertEqual(instructions.last! & 0xFF, 0x95, "ends with exit")
      for (index, instruction) in instructions.enumerated()
      where instruction & 0x07 == 0x05 || instruction & 0x07 == 0x06 {
        let code = instruction & 0xFF
        guard code != 0x85 && code != 0x95 else { continue }  // call, exit
        let offset = Int(Int16(bitPattern: UInt16(truncatingIfNeeded: instruction >> 16)))
        XCTAssertTrue((0..<instructions.count).contains(index + 1 + offset), "\(match): jump at \(index)")
      }
    }
  }
}
