/// An 8-octet Route Distinguisher (RFC 4364 section 4.2), kept as its wire value so
/// it packs into RIB entries; the typed view and text form are computed.
public struct RouteDistinguisher: Hashable, Sendable, Codable, CustomStringConvertible {
  public let rawValue: UInt64

  public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// Type 0: 2-octet AS, 4-octet number.
  public static func twoOctetAS(_ asn: UInt16, _ number: UInt32) -> Self {
    Self(rawValue: UInt64(asn) << 32 | UInt64(number))
  }
  /// Type 1: IPv4 address (host order integer), 2-octet number. RFC 7432 recommends it.
  public static func ipv4(_ address: UInt32, _ number: UInt16) -> Self {
    Self(rawValue: 1 << 48 | UInt64(address) << 16 | UInt64(number))
  }
  /// Type 2: 4-octet AS, 2-octet number.
  public static func fourOctetAS(_ asn: UInt32, _ number: UInt16) -> Self {
    Self(rawValue: 2 << 48 | UInt64(asn) << 16 | UInt64(number))
  }

  public var type: UInt16 { UInt16(truncatingIfNeeded: rawValue >> 48) }

  /// `AS:n` for types 0 and 2, `a.b.c.d:n` for type 1; `type:hex` otherwise. Type 2
  /// is written `ASL:n` only when the AS would also fit type 0, to stay unambiguous.
  public var description: String {
    switch type {
    case 0: return "\(UInt16(truncatingIfNeeded: rawValue >> 32)):\(UInt32(truncatingIfNeeded: rawValue))"
    case 1:
      let address = UInt32(truncatingIfNeeded: rawValue >> 16)
      return "\(dottedQuad(address)):\(UInt16(truncatingIfNeeded: rawValue))"
    case 2:
      let asn = UInt32(truncatingIfNeeded: rawValue >> 16)
      let suffix = asn <= 0xFFFF ? "L" : ""
      return "\(asn)\(suffix):\(UInt16(truncatingIfNeeded: rawValue))"
    default:
      return "\(type):" + String(rawValue & 0xFFFF_FFFF_FFFF, radix: 16)
    }
  }

  /// Parses the text forms `description` writes: `65000:100`, `10.0.0.1:5`, `4200000000:7`,
  /// `65000L:7`. A number too large for type 0's AS picks type 2.
  public init?(_ text: String) {
    guard let colon = text.lastIndex(of: ":") else { return nil }
    let left = String(text[..<colon])
    guard let number = UInt32(text[text.index(after: colon)...]) else { return nil }
    if left.contains(".") {
      guard let address = parseDottedQuad(left), number <= 0xFFFF else { return nil }
      self = .ipv4(address, UInt16(number))
    } else if left.hasSuffix("L") || left.hasSuffix("l") {
      guard let asn = UInt32(left.dropLast()), number <= 0xFFFF else { return nil }
      self = .fourOctetAS(asn, UInt16(number))
    } else if let asn = UInt32(left) {
      if asn <= 0xFFFF {
        self = .twoOctetAS(UInt16(asn), number)
      } else {
        guard number <= 0xFFFF else { return nil }
        self = .fourOctetAS(asn, UInt16(number))
      }
    } else {
      return nil
    }
  }

  public init(from decoder: Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    guard let value = RouteDistinguisher(text) else {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: "bad RD \(text)"))
    }
    self = value
  }

  public func encode(to encoder: Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}

func dottedQuad(_ address: UInt32) -> String {
  "\(address >> 24).\(address >> 16 & 0xFF).\(address >> 8 & 0xFF).\(address & 0xFF)"
}

func parseDottedQuad(_ text: String) -> UInt32? {
  let parts = text.split(separator: ".", omittingEmptySubsequences: false)
  guard parts.count == 4 else { return nil }
  var value: UInt32 = 0
  for part in parts {
    guard !part.isEmpty, part.count <= 3, let octet = UInt8(part) else { return nil }
    value = value << 8 | UInt32(octet)
  }
  return value
}
