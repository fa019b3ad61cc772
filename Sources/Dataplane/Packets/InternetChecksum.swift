/// The Internet checksum of RFC 1071, used by IPv4 headers, ICMP, UDP and TCP.
///
/// The checksum is the ones'-complement of the ones'-complement sum of the data taken as
/// big-endian 16-bit words (an odd trailing byte is padded with a zero byte on the right).
/// Two operations are exposed separately because protocols combine them differently:
///
/// - `sum` is the folded ones'-complement sum, NOT complemented. Sums chain: pass the
///   result as `initial` for the next piece, e.g. a pseudo-header then the segment. Chaining
///   is only exact when every piece except the last has an even length.
/// - `checksum` is `~sum`, the value written into a header's checksum field (with the field
///   itself zero while summing).
///
/// Verification: the `sum` over data that includes a correct checksum field is `0xFFFF`
/// (`isValid`). UDP is special: a computed checksum of `0x0000` is transmitted as `0xFFFF`
/// (RFC 768), because `0x0000` on the wire means "no checksum" over IPv4.
public enum InternetChecksum {
  /// Folded ones'-complement sum of `bytes` added to `initial` (not complemented).
  public static func sum(_ bytes: UnsafeRawBufferPointer, initial: UInt16 = 0) -> UInt16 {
    // A 64-bit accumulator cannot overflow before 2^48 words, far beyond any frame.
    var accumulator = UInt64(initial)
    var index = 0
    let count = bytes.count
    while index + 1 < count {
      accumulator += UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
      index += 2
    }
    if index < count { accumulator += UInt64(bytes[index]) << 8 }
    while accumulator > 0xFFFF { accumulator = (accumulator & 0xFFFF) + (accumulator >> 16) }
    return UInt16(accumulator)
  }

  /// Folded ones'-complement sum of `bytes` added to `initial` (not complemented).
  public static func sum(_ bytes: [UInt8], initial: UInt16 = 0) -> UInt16 {
    bytes.withUnsafeBytes { sum($0, initial: initial) }
  }

  /// The value to store in a checksum field: `~sum(bytes, initial:)`.
  public static func checksum(_ bytes: [UInt8], initial: UInt16 = 0) -> UInt16 {
    ~sum(bytes, initial: initial)
  }

  /// True when `bytes` (checksum field included) sums to `0xFFFF`, i.e. the checksum holds.
  public static func isValid(_ bytes: [UInt8], initial: UInt16 = 0) -> Bool {
    sum(bytes, initial: initial) == 0xFFFF
  }

  /// Sum of the TCP/UDP/ICMPv6 pseudo-header: RFC 768/793 for IPv4 (addresses, zero,
  /// protocol, length) and RFC 8200 §8.1 for IPv6 (addresses, 32-bit length, zeros, next
  /// header). Both addresses must be of the same family.
  public static func pseudoHeaderSum(
    source: IPAddress, destination: IPAddress, protocolNumber: UInt8, upperLayerLength: Int
  ) -> UInt16 {
    precondition(source.isIPv4 == destination.isIPv4, "pseudo-header mixes IPv4 and IPv6")
    var header: [UInt8] = []
    header.append(source)
    header.append(destination)
    if source.isIPv4 {
      header.append(0)
      header.append(protocolNumber)
      header.appendBigEndian(UInt16(truncatingIfNeeded: upperLayerLength))
    } else {
      header.appendBigEndian(UInt32(truncatingIfNeeded: upperLayerLength))
      header.append(contentsOf: [0, 0, 0, protocolNumber])
    }
    return sum(header)
  }
}
