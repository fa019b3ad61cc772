/// VXLAN encapsulation (RFC 7348): outer Ethernet + IPv4/IPv6 + UDP + 8-byte VXLAN header
/// + the inner Ethernet frame (without FCS).
extension FrameBuilder {
  /// The "I" flag: the VNI field is valid (RFC 7348 §5). All other flag bits are reserved.
  public static let vxlanFlagVNIValid: UInt8 = 0x08

  /// Everything outside the inner frame of a VXLAN packet.
  public struct VXLANUnderlay: Hashable, Sendable {
    public var link: EthernetHeaderFields
    public var source: IPAddress
    public var destination: IPAddress
    /// Usually a hash of the inner flow, for ECMP entropy (RFC 7348 §5).
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    /// nil follows RFC 7348 practice: zero over IPv4, computed over IPv6 (RFC 8200 requires
    /// it unless the tunnel endpoint opts into RFC 6935 zero checksums).
    public var udpChecksum: UDPChecksum?
    public var ipv4: IPv4HeaderFields
    public var ipv6: IPv6HeaderFields
    public var padToMinimum: Bool

    public init(
      link: EthernetHeaderFields, source: IPAddress, destination: IPAddress,
      sourcePort: UInt16, destinationPort: UInt16 = FrameBuilder.vxlanPort,
      udpChecksum: UDPChecksum? = nil, ipv4: IPv4HeaderFields = IPv4HeaderFields(),
      ipv6: IPv6HeaderFields = IPv6HeaderFields(), padToMinimum: Bool = false
    ) {
      self.link = link
      self.source = source
      self.destination = destination
      self.sourcePort = sourcePort
      self.destinationPort = destinationPort
      self.udpChecksum = udpChecksum
      self.ipv4 = ipv4
      self.ipv6 = ipv6
      self.padToMinimum = padToMinimum
    }

    /// The checksum mode actually used for this underlay.
    public var effectiveUDPChecksum: UDPChecksum {
      udpChecksum ?? (source.isIPv4 ? .zero : .computed)
    }
  }

  /// The 8-byte VXLAN header: flags, 24 reserved bits, 24-bit VNI, 8 reserved bits.
  /// `flags` other than `vxlanFlagVNIValid` exist to craft malformed headers.
  public static func vxlanHeader(vni: UInt32, flags: UInt8 = vxlanFlagVNIValid) -> [UInt8] {
    precondition(vni <= 0xFF_FFFF, "VNI \(vni) does not fit in 24 bits")
    var header: [UInt8] = [flags, 0, 0, 0]
    header.appendBigEndian(vni << 8)
    return header
  }

  /// `innerFrame` (an Ethernet frame without FCS) encapsulated in VXLAN with `vni`.
  public static func vxlanFrame(
    inner innerFrame: [UInt8], vni: UInt32, underlay: VXLANUnderlay
  ) -> [UInt8] {
    udpFrame(
      link: underlay.link, source: underlay.source, destination: underlay.destination,
      sourcePort: underlay.sourcePort, destinationPort: underlay.destinationPort,
      payload: vxlanHeader(vni: vni) + innerFrame, checksum: underlay.effectiveUDPChecksum,
      ipv4: underlay.ipv4, ipv6: underlay.ipv6, padToMinimum: underlay.padToMinimum)
  }
}
