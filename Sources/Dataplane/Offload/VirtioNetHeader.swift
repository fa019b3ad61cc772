/// The `virtio_net_hdr` that `PACKET_VNET_HDR` puts in front of every frame a packet
/// socket receives, and expects in front of every frame it sends: how the sender's stack
/// left the frame for "hardware" (a segmentation to do, a checksum to finish).
///
/// Ten bytes in host byte order (a packet socket speaks the legacy, native-endian
/// layout): flags, gso type, header length, gso size, checksum start, checksum offset.
/// Offsets are from the first byte of the Ethernet header as the ring holds it (a VLAN
/// tag the kernel stripped into `tp_vlan_tci` is not counted).
public struct VirtioNetHeader: Equatable, Sendable {
  public static let length = 10
  /// Where `gsoType` is: the one byte a receive loop reads for every frame.
  public static let gsoTypeOffset = 1

  public var flags: UInt8
  public var gsoType: UInt8
  /// The sender's hint of the header bytes; not trusted (the segmenter parses them).
  public var headerLength: UInt16
  /// Payload bytes per segment (the MSS for TCP).
  public var gsoSize: UInt16
  public var checksumStart: UInt16
  public var checksumOffset: UInt16

  /// `flags`: the L4 checksum is left to finish from `checksumStart`.
  public static let needsChecksum: UInt8 = 1
  /// `flags`: the checksums were verified.
  public static let dataValid: UInt8 = 2

  /// `gsoType` values (without the ECN bit).
  public enum SegmentationType: UInt8, Sendable {
    case none = 0
    case tcpIPv4 = 1
    /// IPv4 fragmentation of UDP (UFO): deprecated, no Linux stack sends it on a veth.
    case udpFragmentation = 3
    case tcpIPv6 = 4
    /// UDP segmentation (USO): one datagram per segment.
    case udp = 5
  }
  /// `gsoType` bit: the sender set ECN CWR; only the first segment carries it.
  public static let ecnBit: UInt8 = 0x80

  public init(
    flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
    checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0
  ) {
    self.flags = flags
    self.gsoType = gsoType
    self.headerLength = headerLength
    self.gsoSize = gsoSize
    self.checksumStart = checksumStart
    self.checksumOffset = checksumOffset
  }

  /// Reads the header the kernel wrote at `pointer` (any alignment).
  @inline(__always)
  public init(at pointer: UnsafeRawPointer) {
    flags = pointer.load(fromByteOffset: 0, as: UInt8.self)
    gsoType = pointer.load(fromByteOffset: Self.gsoTypeOffset, as: UInt8.self)
    headerLength = UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
    gsoSize = UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
    checksumStart = UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
    checksumOffset = UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
  }

  /// Writes the header at `pointer` (tests, and frames handed to a packet socket).
  public func store(to pointer: UnsafeMutableRawPointer) {
    pointer.storeBytes(of: flags, toByteOffset: 0, as: UInt8.self)
    pointer.storeBytes(of: gsoType, toByteOffset: Self.gsoTypeOffset, as: UInt8.self)
    pointer.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
    pointer.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
    pointer.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
    pointer.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
  }

  /// Bytes of a frame with nothing left to do that a packet socket's transmit ring is
  /// asked to copy into its socket buffer (`headerLength`, which `tpacket_snd` copies
  /// linearly; the rest of the frame it attaches as the ring's pages, marked zero-copy).
  /// A veth (an access port, or the underlay in a lab) must copy such pages before
  /// forwarding (`skb_copy_ubufs`: a page allocated and freed per frame), so a small
  /// frame (a TCP ACK, ARP, 64-byte traffic) is copied whole at once instead. Not larger
  /// ones: a receiving stack merges page fragments of MTU-sized TCP segments into its
  /// queue without copying, but not a copied head, and `Bench tcp` measured 2048 here
  /// at more CPU per Gbit than the pages.
  static let linearCopyLimit = 256

  /// Writes the header of a frame of `frameLength` bytes with nothing left to do at
  /// `pointer`: no segmentation, no checksum, and `headerLength` asking the kernel to copy
  /// the frame (up to `linearCopyLimit`) into the socket buffer.
  @inline(__always)
  static func plain(at pointer: UnsafeMutableRawPointer, frameLength: Int) {
    let copied = UInt64(truncatingIfNeeded: min(frameLength, linearCopyLimit))
    // flags, gso type (0), header length (bytes 2-3), gso size and checksum start (0).
    pointer.storeBytes(of: (copied &<< 16).littleEndian, toByteOffset: 0, as: UInt64.self)
    pointer.storeBytes(of: 0, toByteOffset: 8, as: UInt16.self)
  }

  /// The segmentation asked for, or nil for a type this switch does not know.
  /// Writes the header of a frame of `frameLength` bytes whose L4 checksum is left
  /// unfinished (CHECKSUM_PARTIAL: the field at `checksumStart + checksumOffset` holds
  /// the pseudo-header sum), for the receiving stack to trust as it trusts a local
  /// sender's: `NEEDS_CSUM`, no segmentation, the linear part as `plain` has it (which
  /// always holds the L4 header of a frame the switch forwards).
  @inline(__always)
  static func partialChecksum(
    at pointer: UnsafeMutableRawPointer, frameLength: Int, checksumStart: Int, checksumOffset: Int
  ) {
    VirtioNetHeader(
      flags: needsChecksum,
      headerLength: UInt16(
        truncatingIfNeeded: max(min(frameLength, linearCopyLimit), checksumStart &+ checksumOffset &+ 2)),
      checksumStart: UInt16(truncatingIfNeeded: checksumStart),
      checksumOffset: UInt16(truncatingIfNeeded: checksumOffset)
    ).store(to: pointer)
  }

  public var segmentation: SegmentationType? { SegmentationType(rawValue: gsoType & ~Self.ecnBit) }
}
