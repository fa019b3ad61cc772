import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Whether the kernel takes a UDP GSO frame (`virtio_net_hdr` gso type UDP_L4) from a
/// packet socket, asked once before the underlay relies on it. The underlay's transmit
/// ring cannot say: with `PACKET_LOSS` (which keeps one bad slot from stopping the ring)
/// the kernel skips a frame it refuses without an error. So a two-datagram GSO frame is
/// sent with `send()` on a throwaway packet socket bound to the loopback device, which
/// fails with EINVAL where the kernel does not know the type. Nothing reaches the
/// network: the frame is addressed to a MAC that is not loopback's (00:00:00:00:00:00),
/// so IPv4 drops it as for another host before looking at it.
enum UDPSegmentationProbe {
  /// Loopback's name in every network namespace.
  static let loopback = "lo"
  /// A locally administered unicast MAC that is not the loopback device's.
  static let otherHost: [UInt8] = [0x02, 0, 0, 0, 0, 0x01]
  static let payloadPerDatagram = 8

  /// nil when the kernel accepted the frame (or the probe could not ask: loopback down
  /// or missing, no privilege; the ring then finds out the quiet way), else why not.
  static func refusal() -> String? {
    let fd = cp_packet_socket()
    if fd < 0 { return nil }
    defer { Syscall.close(fd) }
    guard let index = try? Syscall.interfaceIndex(loopback),
      cp_setsockopt_int(fd, Int32(CP_SOL_PACKET), Int32(CP_PACKET_VNET_HDR), 1) >= 0
    else { return nil }
    // Protocol 0: the socket sends but never receives.
    guard cp_packet_bind(fd, index, 0) >= 0 else { return nil }
    let frame = probeFrame()
    let sent = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
    if sent >= 0 { return nil }
    let error = errno
    return error == EINVAL ? "the kernel refuses UDP_L4 GSO frames from packet sockets (EINVAL)" : nil
  }

  /// The `virtio_net_hdr`, then Ethernet, IPv4 (127.0.0.1 to itself, DF) and UDP
  /// (discard port) headers with two datagrams' payload, as `UnderlaySegmenter` builds
  /// such a frame.
  static func probeFrame() -> [UInt8] {
    let transport = EthernetLayout.headerLength + IPv4Layout.minimumHeaderLength
    let length = transport + UDPLayout.headerLength + 2 * payloadPerDatagram
    var frame = [UInt8](repeating: 0, count: VirtioNetHeader.length + length)
    frame.withUnsafeMutableBytes { raw in
      let bytes = raw.baseAddress! + VirtioNetHeader.length
      for (offset, byte) in otherHost.enumerated() { bytes.setU8(offset, byte) }
      bytes.setU8(6, 0x02)
      bytes.setBE16(EthernetLayout.etherTypeOffset, EtherType.ipv4)
      let ip = bytes + EthernetLayout.headerLength
      ip.setU8(0, IPv4Layout.versionWithoutOptions)
      ip.setBE16(IPv4Layout.fragmentOffset, IPv4Layout.dontFragment)
      ip.setU8(IPv4Layout.ttlOffset, 1)
      ip.setU8(IPv4Layout.protocolOffset, IPProtocol.udp)
      ip.setBE32(IPv4Layout.sourceOffset, 0x7F00_0001)
      ip.setBE32(IPv4Layout.destinationOffset, 0x7F00_0001)
      let udp = bytes + transport
      udp.setBE16(0, 9)
      udp.setBE16(2, 9)
      UDPSegmentationFrame.finish(
        frame: bytes, length: length, transportOffset: transport, isIPv6: false,
        segmentSize: payloadPerDatagram
      ).store(to: raw.baseAddress!)
    }
    return frame
  }
}
