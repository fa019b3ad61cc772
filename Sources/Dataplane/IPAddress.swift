#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// An IPv4 or IPv6 address as plain integers (network order folded into host integers,
/// first octet most significant), cheap to compare and to write into headers.
public enum IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
  case v4(UInt32)
  /// High and low 64 bits.
  case v6(UInt64, UInt64)

  /// Parses dotted-quad IPv4 or any RFC 4291 text form of IPv6; nil when malformed.
  public init?(_ text: String) {
    var v4 = in_addr()
    if text.withCString({ inet_pton(AF_INET, $0, &v4) }) == 1 {
      self = .v4(UInt32(bigEndian: v4.s_addr))
      return
    }
    var v6 = in6_addr()
    guard text.withCString({ inet_pton(AF_INET6, $0, &v6) }) == 1 else { return nil }
    self = withUnsafeBytes(of: &v6) { raw in
      .v6(
        UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
        UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }
  }

  /// Builds an address from 4 or 16 network-order bytes.
  public init?(bytes: UnsafeRawBufferPointer) {
    switch bytes.count {
    case 4: self = .v4(UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self)))
    case 16:
      self = .v6(
        UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
        UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    default: return nil
    }
  }

  public var isIPv4: Bool { if case .v4 = self { return true } else { return false } }

  /// The address in network byte order: 4 or 16 bytes.
  public var bytes: [UInt8] {
    switch self {
    case .v4(let a): return (0..<4).map { UInt8(truncatingIfNeeded: a >> (24 - 8 * $0)) }
    case .v6(let hi, let lo):
      return (0..<8).map { UInt8(truncatingIfNeeded: hi >> (56 - 8 * $0)) }
        + (0..<8).map { UInt8(truncatingIfNeeded: lo >> (56 - 8 * $0)) }
    }
  }

  public var description: String {
    var storage = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    var raw = bytes
    let family = isIPv4 ? AF_INET : AF_INET6
    _ = inet_ntop(family, &raw, &storage, socklen_t(storage.count))
    return String(cString: storage)
  }

  public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
    switch (lhs, rhs) {
    case (.v4(let a), .v4(let b)): return a < b
    case (.v4, .v6): return true
    case (.v6, .v4): return false
    case (.v6(let ah, let al), .v6(let bh, let bl)): return ah < bh || (ah == bh && al < bl)
    }
  }
}
