/// Reads of the inner (customer) frame that encapsulation needs: the flow hash behind the
/// outer UDP source port, and the TOS byte for an inherited DSCP.
enum InnerFrame {
  /// Odd, with well-mixed high bits; both of `flowHash`'s paths multiply by it, so a
  /// flow hashes alike whichever path its frames take.
  static let flowHashMultiplier: UInt64 = 0xBF58_476D_1CE4_E5B9

  /// A hash of the inner flow for the outer UDP source port (RFC 7348 section 5): the
  /// IP addresses, protocol and ports when the inner frame is IPv4/IPv6, else the MACs
  /// and EtherType, so that one flow always takes one underlay path.
  @inline(__always)
  static func flowHash(macs: UnsafeRawPointer, rest: UnsafeRawPointer, restLength: Int) -> UInt64 {
    // The common case first: IPv4 without options carrying an unfragmented TCP or UDP
    // segment, recognised with two masked loads (EtherType and version/IHL; fragment bits
    // and protocol); the ports then sit at a fixed offset.
    if Pipeline.fastPathByteOrder && restLength >= 26 && rest.raw64(0) & 0xFF_FFFF == 0x45_0008 {
      let fragmentAndProtocol = rest.raw64(8) & 0xFF00_FF1F
      if fragmentAndProtocol == 0x1100_0000 || fragmentAndProtocol == 0x0600_0000 {
        return (rest.raw64(14) ^ fragmentAndProtocol &>> 24 ^ UInt64(rest.raw32(22)) &<< 24)
          &* flowHashMultiplier
      }
    }
    let etherType = rest.be16(0)
    var hash: UInt64
    if etherType == 0x0800 && restLength >= 22 {
      let ip = rest + 2
      let headerLength = Int(ip.u8(0) & 0x0F) &<< 2
      let proto = ip.u8(9)
      hash = ip.raw64(12) ^ UInt64(proto)
      if (proto == 6 || proto == 17) && ip.be16(6) & 0x1FFF == 0 && restLength >= 2 &+ headerLength &+ 4 {
        hash ^= UInt64(ip.raw32(headerLength)) &<< 24
      }
    } else if etherType == 0x86DD && restLength >= 42 {
      let ip = rest + 2
      let nextHeader = ip.u8(6)
      hash = ip.raw64(8) ^ ip.raw64(16) ^ ip.raw64(24) &* 31 ^ ip.raw64(32) &* 31 ^ UInt64(nextHeader)
      if (nextHeader == 6 || nextHeader == 17) && restLength >= 46 { hash ^= UInt64(ip.raw32(40)) &<< 24 }
    } else {
      hash = macs.raw64(0) ^ macs.raw64(4) &* 31 ^ UInt64(etherType)
    }
    // Multiplicative hashing: the high bits of the product depend on every input bit,
    // and only high bits are used (the source port from bits 32-63, the IPv6 flow label
    // from bits 44-63).
    return hash &* flowHashMultiplier
  }

  /// The inner IPv4 TOS / IPv6 traffic class byte, or 0.
  @inline(__always)
  static func tos(rest: UnsafeRawPointer, restLength: Int) -> UInt8 {
    let etherType = rest.be16(0)
    if etherType == 0x0800 && restLength >= 22 { return rest.u8(3) }
    if etherType == 0x86DD && restLength >= 42 { return UInt8(truncatingIfNeeded: rest.be16(2) &>> 4) }
    return 0
  }
}
