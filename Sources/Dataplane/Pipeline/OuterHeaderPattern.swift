/// What the decap fast path requires of a frame's outer headers, as 16-byte masks and
/// the values expected under them, checked with a load, a mask and a compare per 16
/// bytes in vector registers, which the packet loop's scalar work does not compete for.
///
/// Over IPv4, bytes 12-43 (EtherType to the VXLAN reserved byte): untagged IPv4 without
/// options, not a fragment, UDP to the local address and VXLAN port with a zero
/// checksum, the VXLAN I flag. Over IPv6, bytes 12-27, 38-53 and 54-69: untagged IPv6
/// whose next header is UDP (no extension headers), to the local address and VXLAN
/// port, the VXLAN I flag (the checksum, mandatory there, is verified separately).
///
/// An immutable per-batch value.
struct OuterHeaderPattern {
  var masks: (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>)
  var expected: (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>)

  /// The pattern for a VTEP at `local` receiving on `udpPort`. (A masked compare cannot
  /// express "match nothing": with the fast paths off, batches skip the fast loop.)
  init(local: IPAddress, udpPort: UInt16) {
    var masks = [[UInt8]](repeating: [UInt8](repeating: 0, count: 16), count: 3)
    var expected = masks
    func require(_ vector: Int, _ index: Int, _ value: UInt8, mask: UInt8 = 0xFF) {
      masks[vector][index] = mask
      expected[vector][index] = value & mask
    }
    switch local {
    case .v4(let address):
      // Bytes 12-27: EtherType, version/IHL, TOS, total length, id, flags/fragment
      // offset, TTL, protocol, header checksum, source address (first half).
      require(0, 0, 0x08)
      require(0, 1, 0x00)
      require(0, 2, 0x45)
      require(0, 8, 0, mask: 0x3F)  // more-fragments and offset; DF may be set
      require(0, 9, 0)
      require(0, 11, 17)
      // Bytes 28-43: source address (second half), destination address, UDP ports,
      // length, checksum, VXLAN flags and the reserved byte after them.
      for index in 0..<4 { require(1, 2 + index, UInt8(truncatingIfNeeded: address >> (24 - 8 * index))) }
      require(1, 8, UInt8(udpPort >> 8))
      require(1, 9, UInt8(udpPort & 0xFF))
      require(1, 12, 0)
      require(1, 13, 0)
      require(1, 14, 0x08, mask: 0x08)
    case .v6:
      // Bytes 12-27: EtherType, version, traffic class, flow label, payload length,
      // next header, hop limit, source address (first 6 bytes).
      require(0, 0, 0x86)
      require(0, 1, 0xDD)
      require(0, 2, 0x60, mask: 0xF0)
      require(0, 8, 17)
      // Bytes 38-53: the destination address.
      for (index, byte) in local.bytes.enumerated() { require(1, index, byte) }
      // Bytes 54-69: UDP ports, length, checksum, VXLAN flags, reserved bytes, VNI.
      require(2, 2, UInt8(udpPort >> 8))
      require(2, 3, UInt8(udpPort & 0xFF))
      require(2, 8, 0x08, mask: 0x08)
    }
    func vector(_ bytes: [UInt8]) -> SIMD16<UInt8> { SIMD16(bytes) }
    self.masks = (vector(masks[0]), vector(masks[1]), vector(masks[2]))
    self.expected = (vector(expected[0]), vector(expected[1]), vector(expected[2]))
  }

  /// Whether bytes 12-43 match (the IPv4 layout).
  @inline(__always)
  func matchesIPv4(_ frame: UnsafeRawPointer) -> Bool {
    Self.isZero(
      ((frame.raw128(12) ^ expected.0) & masks.0) | ((frame.raw128(28) ^ expected.1) & masks.1))
  }

  /// Whether bytes 12-27, 38-53 and 54-69 match (the IPv6 layout).
  @inline(__always)
  func matchesIPv6(_ frame: UnsafeRawPointer) -> Bool {
    Self.isZero(
      ((frame.raw128(12) ^ expected.0) & masks.0) | ((frame.raw128(38) ^ expected.1) & masks.1)
        | ((frame.raw128(54) ^ expected.2) & masks.2))
  }

  /// Tested as two words: `all(.==)` on byte lanes compiles to a generic reduction here,
  /// not a `pmovmskb`.
  @inline(__always)
  static func isZero(_ difference: SIMD16<UInt8>) -> Bool {
    let words = unsafeBitCast(difference, to: SIMD2<UInt64>.self)
    return words[0] | words[1] == 0
  }
}
