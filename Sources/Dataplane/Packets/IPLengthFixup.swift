/// What joining or cutting packets changes in an IP header once the new length is known:
/// the length field, an IPv4 header's checksum, and the addresses' part of the L4
/// checksum's pseudo-header, which the caller then completes with the protocol and length.
/// Plain functions over memory the caller owns.
enum IPLengthFixup {
  /// Sets the IPv4 header at `ip` (`headerLength` bytes) to `totalLength` bytes and
  /// recomputes its header checksum; returns the sum of its source and destination
  /// addresses.
  @inline(__always)
  @discardableResult
  static func ipv4(
    _ ip: UnsafeMutableRawPointer, totalLength: Int, headerLength: Int = IPv4Layout.minimumHeaderLength
  ) -> UInt64 {
    ip.setBE16(IPv4Layout.totalLengthOffset, UInt16(truncatingIfNeeded: totalLength))
    ip.setBE16(IPv4Layout.checksumOffset, 0)
    ip.setBE16(IPv4Layout.checksumOffset, OnesComplement.finish(OnesComplement.sum(ip, count: headerLength)))
    return OnesComplement.sum(ip + IPv4Layout.sourceOffset, count: 8)
  }

  /// Sets the IPv6 header at `ip` to `payloadLength` bytes of payload; returns the sum of
  /// its source and destination addresses.
  @inline(__always)
  static func ipv6(_ ip: UnsafeMutableRawPointer, payloadLength: Int) -> UInt64 {
    ip.setBE16(IPv6Layout.payloadLengthOffset, UInt16(truncatingIfNeeded: payloadLength))
    return OnesComplement.sum(ip + IPv6Layout.sourceOffset, count: 32)
  }
}
