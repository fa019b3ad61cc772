/// The IP family of the underlay (the local VTEP's), fixed per batch: what the decap fast
/// path checks of the outer headers and where it finds the outer source address and the
/// VNI. The decap loop is generic over it, so that each family's loop has its offsets as
/// constants.
protocol UnderlayFamily {
  /// Bytes before the inner Ethernet header: 50 over IPv4, 70 over IPv6.
  static var outerLength: Int { get }

  /// The longest frame whose IP length field can describe it exactly (65535 + 14 over
  /// IPv4, 65535 + 54 over IPv6): the fast path compares 16-bit length fields with the
  /// frame length, which must not wrap.
  static var longestExactFrame: Int { get }

  /// Whether the outer headers are the common shape (`OuterHeaderPattern`), the IP and
  /// UDP lengths fill the frame exactly, and the checksums the family needs verify
  /// (unless the port says they were). The frame's length is one `fastPathTakes`.
  static func acceptsOuter(
    _ frame: UnsafeRawPointer, length: Int, flags: UInt8, _ pattern: OuterHeaderPattern
  ) -> Bool

  /// The outer source address as loaded (high and low 64 bits; 0 and 32 bits over IPv4).
  static func sourceAsLoaded(_ frame: UnsafeRawPointer) -> (UInt64, UInt64)

  /// `sourceAsLoaded` converted to the address in host order (`ForwardingState.vtep`).
  static func address(asLoaded: (UInt64, UInt64)) -> (high: UInt64, low: UInt64)
}

extension UnderlayFamily {
  /// Whether the fast path may take a frame of `length` bytes: an outer header and an
  /// inner Ethernet header at least, `longestExactFrame` at most (one unsigned compare).
  @inline(__always)
  static func fastPathTakes(length: Int) -> Bool {
    UInt(bitPattern: length &- (outerLength &+ 14)) <= UInt(longestExactFrame &- (outerLength &+ 14))
  }

  /// The VXLAN header's VNI as the lanes compare it: its three bytes in a little-endian
  /// 32-bit load (`DecapLane.vniField`).
  @inline(__always)
  static func vniField(_ frame: UnsafeRawPointer) -> UInt32 { frame.raw32(outerLength &- 4) & 0x00FF_FFFF }
}

enum IPv4Underlay: UnderlayFamily {
  @inline(__always) static var outerLength: Int { 50 }
  @inline(__always) static var longestExactFrame: Int { 0xFFFF &+ 14 }

  /// No UDP checksum (RFC 7348's recommendation over IPv4); the IPv4 header's checked.
  @inline(__always)
  static func acceptsOuter(
    _ frame: UnsafeRawPointer, length: Int, flags: UInt8, _ pattern: OuterHeaderPattern
  ) -> Bool {
    if !pattern.matchesIPv4(frame) { return false }
    // The IP datagram fills the frame exactly (no trailer) and the UDP datagram the IP
    // payload, compared as stored (big-endian).
    if frame.raw16(16) != UInt16(truncatingIfNeeded: length &- 14).bigEndian { return false }
    if frame.raw16(38) != UInt16(truncatingIfNeeded: length &- 34).bigEndian { return false }
    return flags & FrameFlags.checksumValid != 0 || Pipeline.ipv4HeaderChecksumIsValid20(frame + 14)
  }

  @inline(__always)
  static func sourceAsLoaded(_ frame: UnsafeRawPointer) -> (UInt64, UInt64) { (0, UInt64(frame.raw32(26))) }

  @inline(__always)
  static func address(asLoaded source: (UInt64, UInt64)) -> (high: UInt64, low: UInt64) {
    (0, UInt64(UInt32(truncatingIfNeeded: source.1).bigEndian))
  }
}

enum IPv6Underlay: UnderlayFamily {
  @inline(__always) static var outerLength: Int { 70 }
  @inline(__always) static var longestExactFrame: Int { 0xFFFF &+ 54 }

  /// A non-zero UDP checksum (mandatory over IPv6), verified unless the port says so.
  @inline(__always)
  static func acceptsOuter(
    _ frame: UnsafeRawPointer, length: Int, flags: UInt8, _ pattern: OuterHeaderPattern
  ) -> Bool {
    if !pattern.matchesIPv6(frame) { return false }
    // Payload length and UDP length both cover everything after the IPv6 header.
    let udpLength = UInt16(truncatingIfNeeded: length &- 54).bigEndian
    if frame.raw16(18) != udpLength || frame.raw16(58) != udpLength { return false }
    if frame.raw16(60) == 0 { return false }
    return flags & FrameFlags.checksumValid != 0 || udpChecksumVerifies(frame, udpLength: length &- 54)
  }

  /// The UDP checksum over the pseudo-header (both addresses, length, next header) and
  /// the datagram, in one pass: the addresses lie just before the UDP header. Out of
  /// line, a loop over the payload. `udpLength` is at most 0xFFFF (`fastPathTakes`).
  @inline(never)
  static func udpChecksumVerifies(_ frame: UnsafeRawPointer, udpLength: Int) -> Bool {
    let rest = Pipeline.udpPseudoHeaderRest(udpLength: udpLength)
    return OnesComplement.fold16(OnesComplement.nativeSum(frame + 22, count: 32 &+ udpLength, initial: rest))
      == 0xFFFF
  }

  @inline(__always)
  static func sourceAsLoaded(_ frame: UnsafeRawPointer) -> (UInt64, UInt64) {
    (frame.raw64(22), frame.raw64(30))
  }

  @inline(__always)
  static func address(asLoaded source: (UInt64, UInt64)) -> (high: UInt64, low: UInt64) {
    (UInt64(bigEndian: source.0), UInt64(bigEndian: source.1))
  }
}
