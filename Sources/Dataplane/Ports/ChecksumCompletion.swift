/// Finishes the TCP or UDP checksum of a frame the kernel handed over with
/// `TP_STATUS_CSUMNOTREADY`: a locally generated packet (a veth peer, a tap) whose
/// checksum was left for a NIC that will never see it. Forwarded unchanged it would carry
/// the partial pseudo-header sum and be dropped by the receiver.
///
/// Without PACKET_VNET_HDR the kernel does not say where the checksum starts, so the
/// headers are parsed: Ethernet, up to two in-band VLAN tags, IPv4 (not fragmented) or
/// IPv6 (hop-by-hop, routing and destination-option headers skipped), then TCP or UDP.
/// The field is recomputed from scratch, so it does not matter whether it held the
/// pseudo-header sum or anything else. Other frames are left untouched.
public enum ChecksumCompletion {
  /// Where a frame's TCP or UDP checksum is and what it covers.
  struct Location {
    /// Offsets from the frame start: the L4 header and the checksum field.
    var l4: Int
    var field: Int
    var segmentLength: Int
    var proto: UInt8
    /// One's-complement sum of the pseudo-header (addresses, protocol, length).
    var pseudo: UInt64
  }

  /// What a received frame's L4 checksum is, for ports that get no checksum metadata
  /// (AF_XDP): the kernel may hand over a locally generated frame whose checksum field
  /// holds only the folded pseudo-header sum (CHECKSUM_PARTIAL), left for a NIC.
  public enum State: Equatable {
    /// Not TCP or UDP over IPv4/IPv6, malformed, a fragment, or UDP without a checksum.
    case absent
    case valid
    /// The field holds the pseudo-header sum: finish it with `complete`.
    case partial
    /// Neither: corrupted, or a partial checksum of a kind this does not recognise.
    case invalid
  }

  /// Writes the L4 checksum in place. Returns false when the frame is not TCP/UDP over
  /// IPv4/IPv6 or is malformed or truncated (nothing written).
  @discardableResult
  public static func complete(frame: UnsafeMutableRawPointer, length: Int) -> Bool {
    guard let location = locate(UnsafeRawPointer(frame), length: length) else { return false }
    write(frame, location)
    return true
  }

  /// Classifies the frame's L4 checksum (one pass over the segment).
  public static func state(frame: UnsafeRawPointer, length: Int) -> State {
    guard let location = locate(frame, length: length) else { return .absent }
    return state(frame, location)
  }

  private static func state(_ frame: UnsafeRawPointer, _ location: Location) -> State {
    let field = frame.be16(location.field)
    if location.proto == 17 && field == 0 { return .absent }
    let header = location.pseudo &+ UInt64(location.proto) &+ UInt64(location.segmentLength)
    let sum = OnesComplement.sum(frame + location.l4, count: location.segmentLength, initial: header)
    if OnesComplement.fold16(sum) == 0xFFFF { return .valid }
    return UInt64(field) == OnesComplement.fold16(header) ? .partial : .invalid
  }

  /// Finishes a partial checksum in place; true when it did (see `State.partial`).
  @inline(__always)
  public static func completeIfPartial(frame: UnsafeMutableRawPointer, length: Int) -> Bool {
    guard let location = locate(UnsafeRawPointer(frame), length: length),
      isPartial(UnsafeRawPointer(frame), location)
    else { return false }
    write(frame, location)
    return true
  }

  /// Whether the frame's L4 checksum is `partial`: what `state` says, without its pass
  /// over the segment for the frames that matter, every frame a port receives.
  public static func isPartial(frame: UnsafeRawPointer, length: Int) -> Bool {
    guard let location = locate(frame, length: length) else { return false }
    return isPartial(frame, location)
  }

  /// A partial checksum field holds the folded pseudo-header sum, so a field that does
  /// not cannot be partial: no pass over the segment. One that does is partial unless the
  /// full checksum happens to verify as well (1 in 65536 of valid checksums), which only
  /// the pass can tell.
  @inline(__always)
  private static func isPartial(_ frame: UnsafeRawPointer, _ location: Location) -> Bool {
    let header = location.pseudo &+ UInt64(location.proto) &+ UInt64(location.segmentLength)
    guard UInt64(frame.be16(location.field)) == OnesComplement.fold16(header) else { return false }
    return state(frame, location) == .partial
  }

  private static func write(_ frame: UnsafeMutableRawPointer, _ location: Location) {
    frame.storeBytes(of: 0, toByteOffset: location.field, as: UInt16.self)
    let sum = OnesComplement.sum(
      UnsafeRawPointer(frame) + location.l4, count: location.segmentLength,
      initial: location.pseudo &+ UInt64(location.proto) &+ UInt64(location.segmentLength))
    var checksum = OnesComplement.finish(sum)
    // UDP sends 0 as "no checksum"; a computed 0 is written as all ones (RFC 768).
    if location.proto == 17 && checksum == 0 { checksum = 0xFFFF }
    frame.setBE16(location.field, checksum)
  }

  static func locate(_ bytes: UnsafeRawPointer, length: Int) -> Location? {
    guard length >= 14 else { return nil }
    var typeOffset = 12
    var etherType = bytes.be16(12)
    var tags = 0
    while (etherType == 0x8100 || etherType == 0x88A8) && tags < 2 {
      typeOffset &+= 4
      guard length >= typeOffset &+ 2 else { return nil }
      etherType = bytes.be16(typeOffset)
      tags &+= 1
    }
    let ip = typeOffset &+ 2
    var l4 = 0
    var end = 0
    var proto: UInt8 = 0
    var pseudo: UInt64 = 0
    if etherType == 0x0800 {
      guard length >= ip &+ 20, bytes.u8(ip) &>> 4 == 4 else { return nil }
      let headerLength = Int(bytes.u8(ip) & 0x0F) &<< 2
      let totalLength = Int(bytes.be16(ip &+ 2))
      end = ip &+ totalLength
      guard headerLength >= 20, totalLength >= headerLength, end <= length else { return nil }
      // A fragment's checksum covers the whole datagram, which we do not have.
      guard bytes.be16(ip &+ 6) & 0x3FFF == 0 else { return nil }
      proto = bytes.u8(ip &+ 9)
      l4 = ip &+ headerLength
      pseudo = OnesComplement.sum(bytes + (ip &+ 12), count: 8)
    } else if etherType == 0x86DD {
      guard length >= ip &+ 40, bytes.u8(ip) &>> 4 == 6 else { return nil }
      end = ip &+ 40 &+ Int(bytes.be16(ip &+ 4))
      guard end <= length else { return nil }
      proto = bytes.u8(ip &+ 6)
      l4 = ip &+ 40
      var headers = 0
      while proto == 0 || proto == 43 || proto == 60 {
        guard l4 &+ 8 <= end, headers < 8 else { return nil }
        let next = bytes.u8(l4)
        l4 &+= (Int(bytes.u8(l4 &+ 1)) &+ 1) &* 8
        proto = next
        headers &+= 1
      }
      pseudo = OnesComplement.sum(bytes + (ip &+ 8), count: 32)
    } else {
      return nil
    }
    guard l4 <= end else { return nil }
    let segmentLength = end &- l4
    switch proto {
    case 6:
      guard segmentLength >= 20 else { return nil }
      return Location(l4: l4, field: l4 &+ 16, segmentLength: segmentLength, proto: 6, pseudo: pseudo)
    case 17:
      guard segmentLength >= 8 else { return nil }
      return Location(l4: l4, field: l4 &+ 6, segmentLength: segmentLength, proto: 17, pseudo: pseudo)
    default:
      return nil
    }
  }
}
