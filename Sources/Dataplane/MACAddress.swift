/// A 48-bit Ethernet address held in the low 48 bits of a `UInt64`, first octet most
/// significant, so that it packs into FDB keys and compares with one instruction.
public struct MACAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
  public let rawValue: UInt64

  public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

  public init(_ octets: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) {
    var value = UInt64(octets.0) << 40 | UInt64(octets.1) << 32 | UInt64(octets.2) << 24
    value |= UInt64(octets.3) << 16 | UInt64(octets.4) << 8 | UInt64(octets.5)
    self.rawValue = value
  }

  /// Parses `aa:bb:cc:dd:ee:ff` (also with `-` separators); nil when malformed.
  public init?(_ text: String) {
    let parts = text.split(omittingEmptySubsequences: false) { $0 == ":" || $0 == "-" }
    guard parts.count == 6 else { return nil }
    var value: UInt64 = 0
    for part in parts {
      guard (1...2).contains(part.count), let octet = UInt8(part, radix: 16) else { return nil }
      value = value << 8 | UInt64(octet)
    }
    self.rawValue = value
  }

  public static let broadcast = MACAddress(rawValue: 0xFFFF_FFFF_FFFF)
  public static let zero = MACAddress(rawValue: 0)

  /// Group bit (I/G) of the first octet: broadcast and multicast addresses.
  @inlinable public var isMulticast: Bool { rawValue & 0x0100_0000_0000 != 0 }

  public var octets: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: rawValue >> (40 - 8 * $0)) } }

  public var description: String {
    octets.map { byte in
      let hex = String(byte, radix: 16)
      return hex.count == 1 ? "0" + hex : hex
    }.joined(separator: ":")
  }

  public static func < (lhs: MACAddress, rhs: MACAddress) -> Bool { lhs.rawValue < rhs.rawValue }
}
