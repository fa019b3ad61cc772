/// A VXLAN-encapsulated TCP super-frame as a tap device takes it with UDP-tunnel GSO
/// (Linux 6.17 on: `TUN_F_UDP_TUNNEL_GSO`, the 24-byte `virtio_net_hdr_v1_hash_tunnel`):
/// one outer Ethernet, IPv4 and UDP header, the VXLAN header, the inner frame's headers
/// once and the whole inner payload after them. The kernel cuts it into wire-sized
/// datagrams itself (`skb_udp_tunnel_segment`, then the inner TCP segmentation), each
/// with its own outer and inner lengths, IPv4 identifications and sequence numbers, and
/// leaves the inner TCP checksum for the device (CHECKSUM_PARTIAL), as the Linux vxlan
/// device does with a VM's super-frame. The switch never touches the payload.
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

  /// TUNSETOFFLOAD bits (linux/if_tun.h): checksums, TSO, and GSO over UDP tunnels.
  public static let tapOffloads: UInt32 = 0x01 | 0x02 | 0x04 | 0x80

  /// Where the headers of a run are, from the outer Ethernet header.
  public struct Layout: Equatable, Sendable {
    /// The outer UDP header (after an outer IPv4 header without options: 34).
    public var outerTransport: Int
    /// The inner IP header and the inner TCP header.
    public var innerNetwork: Int
    public var innerTransport: Int
    public var innerIsIPv6: Bool
    /// Every header, outer and inner: where the payload starts.
    public var headerLength: Int

    public init(
      outerTransport: Int, innerNetwork: Int, innerTransport: Int, innerIsIPv6: Bool, headerLength: Int
    ) {
      self.outerTransport = outerTransport
      self.innerNetwork = innerNetwork
      self.innerTransport = innerTransport
      self.innerIsIPv6 = innerIsIPv6
      self.headerLength = headerLength
    }
  }

  /// Sets the lengths and checksums of the headers at `headers` (`layout.headerLength`
  /// bytes: the first segment's, as the pipeline encapsulated it) for a frame of
  /// `payloadLength` payload bytes after them, and writes the tap's header at `header`:
  /// outer IPv4 total length and header checksum, UDP length (the UDP checksum 0: the
  /// kernel's segmentation copies it to every datagram), inner IP length (and IPv4 header
  /// checksum), the inner TCP flags `finalFlags` added (a segment's PSH and FIN belong on
  /// the last datagram, where the kernel's segmentation leaves them), and the inner TCP
  /// checksum's pseudo-header sum for the whole frame (CHECKSUM_PARTIAL convention). With
  /// `segments` at 1 the frame is not a GSO frame, only a checksum left to finish.
  public static func finish(
    headers: UnsafeMutableRawPointer, layout: Layout, payloadLength: Int, segmentSize: Int, segments: Int,
    finalFlags: UInt8, header: UnsafeMutableRawPointer
  ) {
    let total = layout.headerLength &+ payloadLength
    IPLengthFixup.ipv4(
      headers + EthernetLayout.headerLength, totalLength: total &- EthernetLayout.headerLength)
    let udp = headers + layout.outerTransport
    udp.setBE16(UDPLayout.lengthOffset, UInt16(truncatingIfNeeded: total &- layout.outerTransport))
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
    tcp.setBE16(
      TCPLayout.checksumOffset,
      UInt16(truncatingIfNeeded: OnesComplement.fold16(pseudo &+ UInt64(IPProtocol.tcp) &+ UInt64(tcpLength)))
    )

    header.initializeMemory(as: UInt8.self, repeating: 0, count: headerLength)
    let isGSO = segments > 1
    let innerType = (layout.innerIsIPv6 ? VirtioNetHeader.SegmentationType.tcpIPv6 : .tcpIPv4).rawValue
    VirtioNetHeader(
      flags: VirtioNetHeader.needsChecksum,
      gsoType: isGSO ? innerType | tunnelOverIPv4 : 0,
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
}
