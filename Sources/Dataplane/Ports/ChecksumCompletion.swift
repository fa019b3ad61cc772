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
  /// Writes the L4 checksum in place. Returns false when the frame is not TCP/UDP over
  /// IPv4/IPv6 or is malformed or truncated (nothing written).
  @discardableResult
  public static func complete(frame: UnsafeMutableRawPointer, length: Int) -> Bool {
    let bytes = UnsafeRawPointer(frame)
    guard length >= 14 else { return false }
    var typeOffset = 12
    var etherType = bytes.be16(12)
    var tags = 0
    while (etherType == 0x8100 || etherType == 0x88A8) && tags < 2 {
      typeOffset &+= 4
      guard length >= typeOffset &+ 2 else { return false }
      etherType = bytes.be16(typeOffset)
      tags &+= 1
    }
    let ip = typeOffset &+ 2
    var l4 = 0
    var end = 0
    var proto: UInt8 = 0
    var pseudo: UInt64 = 0
    if etherType == 0x0800 {
      guard length >= ip &+ 20, bytes.u8(ip) &>> 4 == 4 else { return false }
      let headerLength = Int(bytes.u8(ip) & 0x0F) &<< 2
      let totalLength = Int(bytes.be16(ip &+ 2))
      end = ip &+ totalLength
      guard headerLength >= 20, totalLength >= headerLength, end <= length else { return false }
      // A fragment's checksum covers the whole datagram, which we do not have.
      guard bytes.be16(ip &+ 6) & 0x3FFF == 0 else { return false }
      proto = bytes.u8(ip &+ 9)
      l4 = ip &+ headerLength
      pseudo = OnesComplement.sum(bytes + (ip &+ 12), count: 8)
    } else if etherType == 0x86DD {
      guard length >= ip &+ 40, bytes.u8(ip) &>> 4 == 6 else { return false }
      end = ip &+ 40 &+ Int(bytes.be16(ip &+ 4))
      guard end <= length else { return false }
      proto = bytes.u8(ip &+ 6)
      l4 = ip &+ 40
      var headers = 0
      while proto == 0 || proto == 43 || proto == 60 {
        guard l4 &+ 8 <= end, headers < 8 else { return false }
        let next = bytes.u8(l4)
        l4 &+= (Int(bytes.u8(l4 &+ 1)) &+ 1) &* 8
        proto = next
        headers &+= 1
      }
      pseudo = OnesComplement.sum(bytes + (ip &+ 8), count: 32)
    } else {
      return false
    }
    let segmentLength = end &- l4
    let field: Int
    switch proto {
    case 6:
      guard segmentLength >= 20 else { return false }
      field = l4 &+ 16
    case 17:
      guard segmentLength >= 8 else { return false }
      field = l4 &+ 6
    default:
      return false
    }
    frame.storeBytes(of: 0, toByteOffset: field, as: UInt16.self)
    let sum = OnesComplement.sum(
      bytes + l4, count: segmentLength, initial: pseudo &+ UInt64(proto) &+ UInt64(segmentLength))
    var checksum = OnesComplement.finish(sum)
    // UDP sends 0 as "no checksum"; a computed 0 is written as all ones (RFC 768).
    if proto == 17 && checksum == 0 { checksum = 0xFFFF }
    frame.setBE16(field, checksum)
    return true
  }
}
