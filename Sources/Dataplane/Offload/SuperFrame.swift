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

  /// Where the payload of the next segment `writeNext` writes is, in the super-frame.
  @inline(__always) public var nextPayload: UnsafeRawPointer { frame + (payloadOffset &+ offset) }

  /// The length of the next segment `writeNext` writes.
  @inline(__always) public var nextSegmentLength: Int {
    payloadOffset &+ min(segmentSize, length &- payloadOffset &- offset)
  }

  /// Writes the next segment at `output` (room for `nextSegmentLength` bytes) and
  /// returns its length.
  ///
  /// Its checksums are summed over the super-frame's bytes, with the difference of every
  /// field the segment changes added, not over the segment just written: a load of bytes
  /// just stored in smaller pieces (the fields) or by a string copy waits until those
  /// stores reach the cache (no store forwarding), and the sums over the segment stalled
  /// that way on every header word (`perf`: most of the summing's samples).
  public mutating func writeNext(to output: UnsafeMutableRawPointer) -> Int {
    writeNext(to: output, deferringPayload: false).length
  }

  /// `writeNext` without the payload: the segment's headers, its L4 checksum field left
  /// for whoever copies the payload (`DeferredPayload`), from `nextPayload` (read
  /// before the call). Returns the segment's length and the L4 checksum's sum without
  /// the payload (folded, `OnesComplement.nativeSum`'s order).
  public mutating func writeNextHeaders(to output: UnsafeMutableRawPointer) -> (
    length: Int, partialSum: UInt16
  ) {
    let written = writeNext(to: output, deferringPayload: true)
    return (written.length, UInt16(truncatingIfNeeded: OnesComplement.fold16(written.sum)))
  }

  /// Where the L4 checksum field of every segment is, from the frame's start.
  public var checksumFieldOffset: Int {
    transportOffset &+ (isTCP ? TCPLayout.checksumOffset : UDPLayout.checksumOffset)
  }

  @inline(__always)
  private mutating func writeNext(to output: UnsafeMutableRawPointer, deferringPayload: Bool) -> (
    length: Int, sum: UInt64
  ) {
    let payloadBytes = min(segmentSize, length &- payloadOffset &- offset)
    let segmentLength = payloadOffset &+ payloadBytes
    let last = payloadOffset &+ offset &+ payloadBytes >= length
    let payload = frame + (payloadOffset &+ offset)
    output.copyMemory(from: frame, byteCount: payloadOffset)
    if !deferringPayload { (output + payloadOffset).copyMemory(from: payload, byteCount: payloadBytes) }

    let ip = output + networkOffset
    let sourceIP = frame + networkOffset
    let l4Length = segmentLength &- transportOffset
    // The L4 checksum's sum, in `OnesComplement.nativeSum`'s order: pseudo-header first.
    var sum: UInt64
    if isIPv6 {
      ip.setBE16(
        IPv6Layout.payloadLengthOffset, UInt16(truncatingIfNeeded: segmentLength &- networkOffset &- 40))
      sum = OnesComplement.nativeSum(sourceIP + IPv6Layout.sourceOffset, count: 32)
    } else {
      let headerLength = Int(sourceIP.u8(0) & 0x0F) &<< 2
      let totalLength = UInt16(truncatingIfNeeded: segmentLength &- networkOffset)
      let identification = sourceIP.be16(IPv4Layout.identificationOffset) &+ UInt16(truncatingIfNeeded: index)
      ip.setBE16(IPv4Layout.totalLengthOffset, totalLength)
      ip.setBE16(IPv4Layout.identificationOffset, identification)
      var header = OnesComplement.nativeSum(sourceIP, count: headerLength)
      header &+= Self.replacing(sourceIP.raw16(IPv4Layout.totalLengthOffset), with: totalLength.bigEndian)
      header &+= Self.replacing(
        sourceIP.raw16(IPv4Layout.identificationOffset), with: identification.bigEndian)
      header &+= Self.replacing(sourceIP.raw16(IPv4Layout.checksumOffset), with: 0)
      ip.setRaw16(IPv4Layout.checksumOffset, ~UInt16(truncatingIfNeeded: OnesComplement.fold16(header)))
      sum = OnesComplement.nativeSum(sourceIP + IPv4Layout.sourceOffset, count: 8)
    }
    let l4 = output + transportOffset
    let sourceL4 = frame + transportOffset
    let proto = isTCP ? IPProtocol.tcp : IPProtocol.udp
    sum &+=
      OnesComplement.nativeOrder(UInt16(proto))
      &+ OnesComplement.nativeOrder(UInt16(truncatingIfNeeded: l4Length))
    // The L4 header (an even length: the payload's words keep their places), the payload.
    sum = OnesComplement.nativeSum(sourceL4, count: payloadOffset &- transportOffset, initial: sum)
    if !deferringPayload { sum = OnesComplement.nativeSum(payload, count: payloadBytes, initial: sum) }
    let checksumField: Int
    if isTCP {
      let sequence = sourceL4.be32(TCPLayout.sequenceOffset) &+ UInt32(truncatingIfNeeded: offset)
      l4.setBE32(TCPLayout.sequenceOffset, sequence)
      sum &+= UInt64(sequence.bigEndian) &+ (0xFFFF_FFFF &- UInt64(sourceL4.raw32(TCPLayout.sequenceOffset)))
      var flags = sourceL4.u8(TCPLayout.flagsOffset)
      if !last { flags &= ~(TCPLayout.fin | TCPLayout.psh) }
      if index > 0 { flags &= ~TCPLayout.cwr }
      l4.setU8(TCPLayout.flagsOffset, flags)
      // The flags' 16-bit word: the data offset byte before them, as it is.
      let flagsWord = TCPLayout.flagsOffset & ~1
      var word = sourceL4.raw16(flagsWord)
      withUnsafeMutableBytes(of: &word) { $0[TCPLayout.flagsOffset &- flagsWord] = flags }
      sum &+= Self.replacing(sourceL4.raw16(flagsWord), with: word)
      checksumField = TCPLayout.checksumOffset
    } else {
      let datagramLength = UInt16(truncatingIfNeeded: l4Length)
      l4.setBE16(UDPLayout.lengthOffset, datagramLength)
      sum &+= Self.replacing(sourceL4.raw16(UDPLayout.lengthOffset), with: datagramLength.bigEndian)
      checksumField = UDPLayout.checksumOffset
    }
    // Whatever the super-frame's checksum field held (a partial sum) counts as 0.
    sum &+= Self.replacing(sourceL4.raw16(checksumField), with: 0)
    offset &+= payloadBytes
    index &+= 1
    if deferringPayload { return (segmentLength, sum) }
    l4.setRaw16(checksumField, Self.checksumField(sum: sum, isTCP: isTCP))
    return (segmentLength, sum)
  }

  /// The L4 checksum field (native order, `setRaw16`) for the whole sum: its
  /// complemented fold; UDP sends 0 as "no checksum", so a computed 0 goes out as all
  /// ones (RFC 768).
  @inline(__always)
  public static func checksumField(sum: UInt64, isTCP: Bool) -> UInt16 {
    let checksum = ~UInt16(truncatingIfNeeded: OnesComplement.fold16(sum))
    return !isTCP && checksum == 0 ? 0xFFFF : checksum
  }

  /// What to add to a one's-complement sum (native order, as `OnesComplement.nativeSum`
  /// keeps it) of words that included `old` for it to include `new` instead: `new` plus
  /// the complement of `old` (`-old` modulo 0xFFFF).
  @inline(__always)
  static func replacing(_ old: UInt16, with new: UInt16) -> UInt64 {
    UInt64(new) &+ UInt64(~old)
  }
}
