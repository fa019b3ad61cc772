/// The outer Ethernet + IP + UDP + VXLAN header for one remote VTEP, computed once
/// (VPP's "rewrite"), so that encapsulation is a copy plus a few patched fields:
/// lengths, the IPv4 header checksum, the UDP source port, the VNI and, when inherited,
/// the DSCP. 50 bytes over IPv4, 70 over IPv6.
struct OuterHeaderTemplate {
  static let ipv4Length = 50
  static let ipv6Length = 70

  var bytes: [UInt8]
  /// One's-complement sum of the IPv4 header with total length, checksum (and TOS when
  /// inherited) zero; for IPv6 the pseudo-header sum of both addresses and next header.
  /// Folded to 16 bits, so that adding a frame's length (and TOS) needs one fold only.
  var checksumBase: UInt32

  init(
    underlayMAC: MACAddress, nextHopMAC: MACAddress, source: IPAddress, destination: IPAddress,
    udpPort: UInt16, ttl: UInt8, dscp: SiteConfig.DSCP
  ) {
    var tos: UInt8 = 0
    if case .fixed(let value) = dscp { tos = value << 2 }
    var header = nextHopMAC.octets + underlayMAC.octets
    switch (source, destination) {
    case (.v4, .v4):
      header += [0x08, 0x00]
      var ip: [UInt8] = [0x45, tos, 0, 0, 0, 0, 0x40, 0, ttl, 17, 0, 0]
      ip += source.bytes + destination.bytes
      header += ip
      var sum: UInt32 = 0
      for index in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[index]) << 8 | UInt32(ip[index + 1]) }
      checksumBase = OnesComplement.fold32(sum)
    default:
      header += [0x86, 0xDD]
      header += [0x60 | tos >> 4, (tos & 0x0F) << 4, 0, 0, 0, 0, 17, ttl]
      header += source.bytes + destination.bytes
      var sum: UInt32 = 17
      let addresses = source.bytes + destination.bytes
      for index in stride(from: 0, to: addresses.count, by: 2) {
        sum += UInt32(addresses[index]) << 8 | UInt32(addresses[index + 1])
      }
      checksumBase = OnesComplement.fold32(sum)
    }
    header += [0, 0, UInt8(udpPort >> 8), UInt8(udpPort & 0xFF), 0, 0, 0, 0]
    header += [0x08, 0, 0, 0, 0, 0, 0, 0]
    bytes = header
  }
}
