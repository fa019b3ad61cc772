/// What the decap fast path requires of bytes 12-43 of a frame (EtherType to the VXLAN
/// reserved byte), as two 16-byte masks and the values expected under them: untagged
/// IPv4 without options, not a fragment, UDP to the local address and VXLAN port with a
/// zero checksum, the VXLAN I flag. Checked with two loads, two masks and two compares
/// in vector registers, which the packet loop's scalar work does not compete for.
///
/// An immutable per-batch value.
struct OuterHeaderPattern {
  let lowMask: SIMD16<UInt8>
  let lowExpected: SIMD16<UInt8>
  let highMask: SIMD16<UInt8>
  let highExpected: SIMD16<UInt8>

  /// The pattern for an IPv4 VTEP at `local` (host order) receiving on `udpPort`; with
  /// `enabled` false (or no IPv4 VTEP) one that no frame matches.
  init(local: UInt32, udpPort: UInt16, enabled: Bool) {
    // Bytes 12-27: EtherType, version/IHL, TOS, total length, id, flags/fragment offset,
    // TTL, protocol, header checksum, source address (first half).
    var lowMask = SIMD16<UInt8>(repeating: 0)
    var lowExpected = SIMD16<UInt8>(repeating: 0)
    lowMask[0] = 0xFF
    lowExpected[0] = 0x08
    lowMask[1] = 0xFF
    lowExpected[1] = 0x00
    lowMask[2] = 0xFF
    lowExpected[2] = 0x45
    lowMask[8] = 0x3F  // more-fragments and offset; DF may be set
    lowMask[9] = 0xFF
    lowMask[11] = 0xFF
    lowExpected[11] = 17
    // Bytes 28-43: source address (second half), destination address, UDP ports,
    // length, checksum, VXLAN flags and the reserved byte after them.
    var highMask = SIMD16<UInt8>(repeating: 0)
    var highExpected = SIMD16<UInt8>(repeating: 0)
    for index in 0..<4 {
      highMask[2 + index] = 0xFF
      highExpected[2 + index] = UInt8(truncatingIfNeeded: local >> (24 - 8 * index))
    }
    highMask[8] = 0xFF
    highExpected[8] = UInt8(udpPort >> 8)
    highMask[9] = 0xFF
    highExpected[9] = UInt8(udpPort & 0xFF)
    highMask[12] = 0xFF
    highMask[13] = 0xFF
    highMask[14] = 0x08
    highExpected[14] = 0x08
    if !enabled {
      // Nothing masked to zero equals one.
      lowMask[3] = 0
      lowExpected[3] = 1
    }
    self.lowMask = lowMask
    self.lowExpected = lowExpected
    self.highMask = highMask
    self.highExpected = highExpected
  }

  @inline(__always)
  func matches(_ frame: UnsafeRawPointer) -> Bool {
    // Differences under the masks, folded into one vector and tested as two words
    // (`all(.==)` on byte lanes compiles to a generic reduction here, not a `pmovmskb`).
    let difference =
      ((frame.raw128(12) ^ lowExpected) & lowMask) | ((frame.raw128(28) ^ highExpected) & highMask)
    let words = unsafeBitCast(difference, to: SIMD2<UInt64>.self)
    return words[0] | words[1] == 0
  }
}
