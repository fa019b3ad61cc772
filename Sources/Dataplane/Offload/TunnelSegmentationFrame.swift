/// A VXLAN-encapsulated TCP super-frame as a tap device takes it with UDP-tunnel GSO
/// (Linux 6.17 on: `TUN_F_UDP_TUNNEL_GSO`, the 24-byte `virtio_net_hdr_v1_hash_tunnel`):
/// one outer Ethernet, IPv4 or IPv6 and UDP header, the VXLAN header, the inner frame's
/// headers once and the whole inner payload after them. The kernel cuts it into
/// wire-sized datagrams itself (`skb_udp_tunnel_segment`, then the inner TCP
/// segmentation), each with its own outer and inner lengths, IPv4 identifications and
/// sequence numbers, and leaves the inner TCP checksum for the device
/// (CHECKSUM_PARTIAL), as the Linux vxlan device does with a VM's super-frame. Where
/// the outer UDP checksum is wanted (always over IPv6), the kernel sums it per datagram
/// too (`VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`, `TUN_F_UDP_TUNNEL_GSO_CSUM`). The switch
/// never touches the payload of a GSO frame.
///
/// Plain functions over memory the caller owns: no state, thread-safe as far as that
/// memory is.
public enum TunnelSegmentationFrame {
  /// Bytes of the header the tap is configured for (`TUNSETVNETHDRSZ`): the
  /// `virtio_net_hdr_v1` (12), hash value and report (8), then the two tunnel offsets.
  public static let headerLength = 24
  /// Offsets of the tunnel fields in it: the outer UDP header's and the inner network
  /// header's offsets from the frame's start.
  static let outerTransportField = 20
  static let innerNetworkField = 22

  /// gso type bits: a UDP tunnel over IPv4 or IPv6 around the inner TCP type.
  public static let tunnelOverIPv4: UInt8 = 0x20
  public static let tunnelOverIPv6: UInt8 = 0x40

  /// `virtio_net_hdr` flag: the kernel sums every datagram's outer UDP checksum
  /// (`SKB_GSO_UDP_TUNNEL_CSUM`), from the pseudo-header sum the field holds.
  public static let outerChecksumFlag: UInt8 = 0x08

  /// TUNSETOFFLOAD bits (linux/if_tun.h): checksums, TSO, GSO over UDP tunnels, with
  /// outer UDP checksums too.
  public static let tapOffloads: UInt32 = 0x01 | 0x02 | 0x04 | 0x80 | 0x100

  /// Where the headers of a run are, from the outer Ethernet header.
  public struct Layout: Equatable, Sendable {
    /// The outer UDP header (after an outer IPv4 header without options: 34; IPv6: 54).
    public var outerTransport: Int
    public var outerIsIPv6: Bool
    /// Whether datagrams carry an outer UDP checksum (the underlay's `udpChecksums`).
    public var outerChecksum: Bool
    /// The inner IP header and the inner TCP header.
    public var innerNetwork: Int
    public var innerTransport: Int
    public var innerIsIPv6: Bool
    /// Every header, outer and inner: where the payload starts.
    public var headerLength: Int

    public init(
      outerTransport: Int, outerIsIPv6: Bool = false, outerChecksum: Bool = false, innerNetwork: Int,
      innerTransport: Int, innerIsIPv6: Bool, headerLength: Int
    ) {
      self.outerTransport = outerTransport
      self.outerIsIPv6 = outerIsIPv6
      self.outerChecksum = outerChecksum
      self.innerNetwork = innerNetwork
      self.innerTransport = innerTransport
      self.innerIsIPv6 = innerIsIPv6
      self.headerLength = headerLength
    }
  }

  /// Sets the lengths and checksums of the headers at `headers` (`layout.headerLength`
  /// bytes: the first segment's, as the pipeline encapsulated it) for a frame of
  /// `payloadLength` payload bytes after them (at `payload`), and writes the tap's header
  /// at `header`: outer IPv4 total length and header checksum or IPv6 payload length, UDP
  /// length and checksum (0 without outer checksums: the kernel's segmentation copies it
  /// to every datagram; else the pseudo-header sum, which it completes per datagram),
  /// inner IP length (and IPv4 header checksum), the inner TCP flags `finalFlags` added (a
  /// segment's PSH and FIN belong on the last datagram, where the kernel's segmentation
  /// leaves them), and the inner TCP checksum's pseudo-header sum for the whole frame
  /// (CHECKSUM_PARTIAL convention). With `segments` at 1 the frame is not a GSO frame:
  /// only its inner checksum is left to finish, or, with outer checksums (one checksum
  /// is all a frame can leave unfinished), both are summed here.
  public static func finish(
    headers: UnsafeMutableRawPointer, layout: Layout, payload: UnsafeRawPointer, payloadLength: Int,
    segmentSize: Int, segments: Int, finalFlags: UInt8, header: UnsafeMutableRawPointer
  ) {
    let total = layout.headerLength &+ payloadLength
    let outerIP = headers + EthernetLayout.headerLength
    let outerPseudo =
      layout.outerIsIPv6
      ? IPLengthFixup.ipv6(outerIP, payloadLength: total &- layout.outerTransport)
      : IPLengthFixup.ipv4(outerIP, totalLength: total &- EthernetLayout.headerLength)
    let udp = headers + layout.outerTransport
    let udpLength = total &- layout.outerTransport
    udp.setBE16(UDPLayout.lengthOffset, UInt16(truncatingIfNeeded: udpLength))
    udp.setBE16(UDPLayout.checksumOffset, 0)

    let innerIP = headers + layout.innerNetwork
    let tcpLength = total &- layout.innerTransport
    let pseudo =
      layout.innerIsIPv6
      ? IPLengthFixup.ipv6(innerIP, payloadLength: tcpLength)
      : IPLengthFixup.ipv4(
        innerIP, totalLength: total &- layout.innerNetwork,
        headerLength: layout.innerTransport &- layout.innerNetwork)
    let tcp = headers + layout.innerTransport
    tcp.storeBytes(
      of: tcp.load(fromByteOffset: TCPLayout.flagsOffset, as: UInt8.self) | finalFlags,
      toByteOffset: TCPLayout.flagsOffset, as: UInt8.self)
    let innerPseudo = pseudo &+ UInt64(IPProtocol.tcp) &+ UInt64(tcpLength)
    let outerPseudoSum = outerPseudo &+ UInt64(IPProtocol.udp) &+ UInt64(udpLength)
    header.initializeMemory(as: UInt8.self, repeating: 0, count: headerLength)
    let isGSO = segments > 1
    if !isGSO && layout.outerChecksum {
      finishBothChecksums(
        headers: headers, layout: layout, payload: payload, payloadLength: payloadLength,
        innerPseudo: innerPseudo, outerPseudo: outerPseudoSum)
      return
    }
    tcp.setBE16(TCPLayout.checksumOffset, UInt16(truncatingIfNeeded: OnesComplement.fold16(innerPseudo)))
    if layout.outerChecksum {
      udp.setBE16(UDPLayout.checksumOffset, UInt16(truncatingIfNeeded: OnesComplement.fold16(outerPseudoSum)))
    }
    let innerType = (layout.innerIsIPv6 ? VirtioNetHeader.SegmentationType.tcpIPv6 : .tcpIPv4).rawValue
    let tunnelType = layout.outerIsIPv6 ? tunnelOverIPv6 : tunnelOverIPv4
    VirtioNetHeader(
      flags: VirtioNetHeader.needsChecksum | (isGSO && layout.outerChecksum ? outerChecksumFlag : 0),
      gsoType: isGSO ? innerType | tunnelType : 0,
      headerLength: UInt16(truncatingIfNeeded: layout.headerLength),
      gsoSize: isGSO ? UInt16(truncatingIfNeeded: segmentSize) : 0,
      checksumStart: UInt16(truncatingIfNeeded: layout.innerTransport),
      checksumOffset: UInt16(truncatingIfNeeded: TCPLayout.checksumOffset)
    ).store(to: header)
    if isGSO {
      header.storeBytes(
        of: UInt16(truncatingIfNeeded: layout.outerTransport).littleEndian, toByteOffset: outerTransportField,
        as: UInt16.self)
      header.storeBytes(
        of: UInt16(truncatingIfNeeded: layout.innerNetwork).littleEndian, toByteOffset: innerNetworkField,
        as: UInt16.self)
    }
  }

  /// A frame of one segment with an outer UDP checksum: the inner TCP checksum summed
  /// over its header and the payload (read once), then the outer one over the headers
  /// from the UDP header on plus that segment's sum; the tap's header says nothing is
  /// left to do (zeroed by the caller).
  static func finishBothChecksums(
    headers: UnsafeMutableRawPointer, layout: Layout, payload: UnsafeRawPointer, payloadLength: Int,
    innerPseudo: UInt64, outerPseudo: UInt64
  ) {
    let tcp = headers + layout.innerTransport
    let tcpHeaderLength = layout.headerLength &- layout.innerTransport
    tcp.setBE16(TCPLayout.checksumOffset, 0)
    let segmentSum = OnesComplement.sum(
      payload, count: payloadLength, initial: OnesComplement.sum(tcp, count: tcpHeaderLength))
    let innerChecksum = OnesComplement.finish(segmentSum &+ innerPseudo)
    tcp.setBE16(TCPLayout.checksumOffset, innerChecksum)
    // Headers and payload are even-length pieces: their sums add up as one.
    let outerSum =
      OnesComplement.sum(
        headers + layout.outerTransport, count: layout.innerTransport &- layout.outerTransport)
      &+ segmentSum &+ UInt64(innerChecksum) &+ outerPseudo
    let udp = headers + layout.outerTransport
    udp.setBE16(UDPLayout.checksumOffset, SuperFrame.checksumField(sum: outerSum, isTCP: false))
  }
}
