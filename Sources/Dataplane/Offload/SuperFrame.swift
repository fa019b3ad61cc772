/// A TSO/USO super-frame a VM's stack left for "hardware" to cut up (a `virtio_net_hdr`
/// with a gso type), parsed once and cut into wire-sized frames one at a time, as the
/// Linux software GSO would: every segment gets a copy of the headers with its own
/// lengths, IPv4 identification, TCP sequence number and flags (FIN and PSH on the last
/// segment only, CWR on the first only), and complete IPv4 header and L4 checksums, so
/// a segment is a frame like any other from there on.
///
/// The frame bytes are read where the port holds them (ring memory) and must stay
/// valid until `isFinished`; the segmenter writes only into the memory it is given.
/// A value owned by one port on one thread.
public struct SuperFrame {
  /// Why a super-frame is refused: each is counted as a drop at the port, never sent.
  public enum Failure: Error, Equatable, Sendable {
    /// A gso type this switch does not segment (UFO, tunnel types, unknown values).
    case unsupportedType
    /// gso size 0.
    case zeroSegmentSize
    /// Not IPv4/IPv6 carrying the protocol the gso type names.
    case protocolMismatch
    /// Headers (or the checksum field the header points at) past the end of the frame.
    case headersPastFrame
    /// The IP length field disagrees with the frame's length.
    case lengthMismatch
    /// An IPv4 fragment cannot be segmented.
    case fragment
  }

  public let frame: UnsafeRawPointer
  public let length: Int
  /// Offsets of the IP header, the TCP/UDP header, and the first payload byte.
  public let networkOffset: Int
  public let transportOffset: Int
  public let payloadOffset: Int
  public let isIPv6: Bool
  public let isTCP: Bool
  /// Payload bytes per segment.
  public let segmentSize: Int
  /// Payload bytes already written out, and segments written.
  public private(set) var offset = 0
  public private(set) var index = 0

  /// Parses `frame` (starting at the Ethernet header, `length` bytes) as `header` describes it.
  public init(frame: UnsafeRawPointer, length: Int, header: VirtioNetHeader) throws(Failure) {
    guard let type = header.segmentation, type == .tcpIPv4 || type == .tcpIPv6 || type == .udp else {
      throw .unsupportedType
    }
    guard header.gsoSize > 0 else { throw .zeroSegmentSize }
    if header.flags & VirtioNetHeader.needsChecksum != 0 {
      guard Int(header.checksumStart) &+ Int(header.checksumOffset) &+ 2 <= length else {
        throw .headersPastFrame
      }
    }
    guard Int(header.headerLength) <= length, length >= EthernetLayout.headerLength else {
      throw .headersPastFrame
    }
    var etherTypeOffset = EthernetLayout.etherTypeOffset
    var etherType = frame.be16(etherTypeOffset)
    var tags = 0
    while (etherType == EtherType.vlan || etherType == EtherType.qinq) && tags < 2 {
      etherTypeOffset &+= 4
      guard length >= etherTypeOffset &+ 2 else { throw .headersPastFrame }
      etherType = frame.be16(etherTypeOffset)
      tags &+= 1
    }
    let network = etherTypeOffset &+ 2
    var transport = 0
    var proto: UInt8 = 0
    switch etherType {
    case EtherType.ipv4:
      guard type != .tcpIPv6 else { throw .protocolMismatch }
      guard length >= network &+ IPv4Layout.minimumHeaderLength else { throw .headersPastFrame }
      guard frame.u8(network) &>> 4 == 4 else { throw .protocolMismatch }
      let headerLength = Int(frame.u8(network) & 0x0F) &<< 2
      guard headerLength >= IPv4Layout.minimumHeaderLength, length >= network &+ headerLength else {
        throw .headersPastFrame
      }
      let totalLength = Int(frame.be16(network &+ IPv4Layout.totalLengthOffset))
      guard totalLength == 0 || network &+ totalLength == length else { throw .lengthMismatch }
      guard frame.be16(network &+ IPv4Layout.fragmentOffset) & IPv4Layout.fragmentMask == 0 else {
        throw .fragment
      }
      proto = frame.u8(network &+ IPv4Layout.protocolOffset)
      transport = network &+ headerLength
      isIPv6 = false
    case EtherType.ipv6:
      guard type != .tcpIPv4 else { throw .protocolMismatch }
      guard length >= network &+ IPv6Layout.headerLength else { throw .headersPastFrame }
      guard frame.u8(network) &>> 4 == 6 else { throw .protocolMismatch }
      let payloadLength = Int(frame.be16(network &+ IPv6Layout.payloadLengthOffset))
      guard payloadLength == 0 || network &+ IPv6Layout.headerLength &+ payloadLength == length else {
        throw .lengthMismatch
      }
      proto = frame.u8(network &+ IPv6Layout.nextHeaderOffset)
      transport = network &+ IPv6Layout.headerLength
      var extensions = 0
      while IPv6Layout.isSkippableExtension(proto) {
        guard transport &+ 8 <= length, extensions < 8 else { throw .headersPastFrame }
        let next = frame.u8(transport)
        transport &+= (Int(frame.u8(transport &+ 1)) &+ 1) &* 8
        proto = next
        extensions &+= 1
      }
      isIPv6 = true
    default:
      throw .protocolMismatch
    }
    let tcp = type != .udp
    guard proto == (tcp ? IPProtocol.tcp : IPProtocol.udp) else { throw .protocolMismatch }
    let payload: Int
    if tcp {
      guard length >= transport &+ TCPLayout.minimumHeaderLength else { throw .headersPastFrame }
      payload = transport &+ Int(frame.u8(transport &+ TCPLayout.dataOffsetOffset) &>> 4) &* 4
      guard payload >= transport &+ TCPLayout.minimumHeaderLength, payload <= length else {
        throw .headersPastFrame
      }
    } else {
      payload = transport &+ UDPLayout.headerLength
      guard payload <= length else { throw .headersPastFrame }
    }
    self.frame = frame
    self.length = length
    networkOffset = network
    transportOffset = transport
    payloadOffset = payload
    isTCP = tcp
    segmentSize = Int(header.gsoSize)
  }

  /// Whether every segment has been written.
  @inline(__always) public var isFinished: Bool { index > 0 && payloadOffset &+ offset >= length }

  /// How many segments the whole frame makes.
  public var segmentCount: Int {
    let payload = length &- payloadOffset
    return payload == 0 ? 1 : (payload &+ segmentSize &- 1) / segmentSize
  }

  /// The length of the next segment `writeNext` writes.
  @inline(__always) public var nextSegmentLength: Int {
    payloadOffset &+ min(segmentSize, length &- payloadOffset &- offset)
  }

  /// Writes the next segment at `output` (room for `nextSegmentLength` bytes) and
  /// returns its length.
  public mutating func writeNext(to output: UnsafeMutableRawPointer) -> Int {
    let payloadBytes = min(segmentSize, length &- payloadOffset &- offset)
    let segmentLength = payloadOffset &+ payloadBytes
    let last = payloadOffset &+ offset &+ payloadBytes >= length
    output.copyMemory(from: frame, byteCount: payloadOffset)
    (output + payloadOffset).copyMemory(from: frame + (payloadOffset &+ offset), byteCount: payloadBytes)

    let ip = output + networkOffset
    let l4Length = segmentLength &- transportOffset
    let pseudo: UInt64
    if isIPv6 {
      ip.setBE16(
        IPv6Layout.payloadLengthOffset, UInt16(truncatingIfNeeded: segmentLength &- networkOffset &- 40))
      pseudo = OnesComplement.sum(ip + IPv6Layout.sourceOffset, count: 32)
    } else {
      let headerLength = Int(UnsafeRawPointer(ip).u8(0) & 0x0F) &<< 2
      ip.setBE16(IPv4Layout.totalLengthOffset, UInt16(truncatingIfNeeded: segmentLength &- networkOffset))
      let identification = frame.be16(networkOffset &+ IPv4Layout.identificationOffset)
      ip.setBE16(IPv4Layout.identificationOffset, identification &+ UInt16(truncatingIfNeeded: index))
      ip.setBE16(IPv4Layout.checksumOffset, 0)
      ip.setBE16(
        IPv4Layout.checksumOffset, OnesComplement.finish(OnesComplement.sum(ip, count: headerLength)))
      pseudo = OnesComplement.sum(ip + IPv4Layout.sourceOffset, count: 8)
    }
    let l4 = output + transportOffset
    let checksumField: Int
    if isTCP {
      let sequence = frame.be32(transportOffset &+ TCPLayout.sequenceOffset)
      l4.setBE32(TCPLayout.sequenceOffset, sequence &+ UInt32(truncatingIfNeeded: offset))
      var flags = UnsafeRawPointer(l4).u8(TCPLayout.flagsOffset)
      if !last { flags &= ~(TCPLayout.fin | TCPLayout.psh) }
      if index > 0 { flags &= ~TCPLayout.cwr }
      l4.setU8(TCPLayout.flagsOffset, flags)
      checksumField = TCPLayout.checksumOffset
    } else {
      l4.setBE16(UDPLayout.lengthOffset, UInt16(truncatingIfNeeded: l4Length))
      checksumField = UDPLayout.checksumOffset
    }
    l4.setBE16(checksumField, 0)
    let proto = UInt64(isTCP ? IPProtocol.tcp : IPProtocol.udp)
    var checksum = OnesComplement.finish(
      OnesComplement.sum(l4, count: l4Length, initial: pseudo &+ proto &+ UInt64(l4Length)))
    // UDP sends 0 as "no checksum": a computed 0 goes out as all ones (RFC 768).
    if !isTCP && checksum == 0 { checksum = 0xFFFF }
    l4.setBE16(checksumField, checksum)
    offset &+= payloadBytes
    index &+= 1
    return segmentLength
  }
}
