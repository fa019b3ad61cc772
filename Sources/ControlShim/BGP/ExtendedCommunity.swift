/// An 8-octet extended community (RFC 4360) kept as its wire value; the EVPN/VXLAN
/// kinds used here have typed constructors and a typed view.
public struct ExtendedCommunity: Hashable, Sendable, CustomStringConvertible {
  public let rawValue: UInt64

  public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// The forms we interpret; anything else stays `.other` and is carried unchanged.
  public enum Kind: Equatable, Sendable {
    case routeTarget(RouteTarget)
    /// RFC 9012 encapsulation; tunnel type 8 is VXLAN.
    case encapsulation(tunnelType: UInt16)
    /// RFC 7432 section 7.7.
    case macMobility(sticky: Bool, sequence: UInt32)
    /// RFC 7432 section 7.8.
    case defaultGateway
    case other
  }

  public static let vxlanTunnelType: UInt16 = 8

  public static func encapsulation(tunnelType: UInt16) -> Self {
    Self(rawValue: 0x030C << 48 | UInt64(tunnelType))
  }
  public static let vxlanEncapsulation = encapsulation(tunnelType: vxlanTunnelType)
  public static func macMobility(sticky: Bool, sequence: UInt32) -> Self {
    Self(rawValue: 0x0600 << 48 | (sticky ? 1 << 40 : 0) | UInt64(sequence))
  }
  public static let defaultGateway = Self(rawValue: 0x030D << 48)
  public static func routeTarget(_ target: RouteTarget) -> Self { Self(rawValue: target.rawValue) }

  public var kind: Kind {
    let typeAndSubtype = UInt16(truncatingIfNeeded: rawValue >> 48)
    switch typeAndSubtype {
    case 0x0002, 0x0102, 0x0202: return .routeTarget(RouteTarget(rawValue: rawValue))
    case 0x030C: return .encapsulation(tunnelType: UInt16(truncatingIfNeeded: rawValue))
    case 0x0600:
      return .macMobility(sticky: rawValue >> 40 & 1 == 1, sequence: UInt32(truncatingIfNeeded: rawValue))
    case 0x030D: return .defaultGateway
    default: return .other
    }
  }

  public var description: String {
    switch kind {
    case .routeTarget(let target): return "RT:\(target)"
    case .encapsulation(let type): return "encap:\(type == 8 ? "vxlan" : String(type))"
    case .macMobility(let sticky, let sequence): return "mac-mobility:\(sequence)\(sticky ? " sticky" : "")"
    case .defaultGateway: return "default-gateway"
    case .other: return "ext:" + String(rawValue, radix: 16)
    }
  }
}

/// A route target extended community (types 0x00, 0x01, 0x02 with subtype 0x02), stored
/// as the whole 8-octet community.
public struct RouteTarget: Hashable, Sendable, Codable, CustomStringConvertible {
  public let rawValue: UInt64

  public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// Type 0: 2-octet AS : 4-octet number; FRR's automatic RT is (AS & 0xFFFF):VNI.
  public static func twoOctetAS(_ asn: UInt16, _ number: UInt32) -> Self {
    Self(rawValue: 0x0002 << 48 | UInt64(asn) << 32 | UInt64(number))
  }
  public static func ipv4(_ address: UInt32, _ number: UInt16) -> Self {
    Self(rawValue: 0x0102 << 48 | UInt64(address) << 16 | UInt64(number))
  }
  public static func fourOctetAS(_ asn: UInt32, _ number: UInt16) -> Self {
    Self(rawValue: 0x0202 << 48 | UInt64(asn) << 16 | UInt64(number))
  }

  public var isRouteTarget: Bool {
    [0x0002, 0x0102, 0x0202].contains(UInt16(truncatingIfNeeded: rawValue >> 48))
  }

  public var description: String {
    switch UInt16(truncatingIfNeeded: rawValue >> 48) {
    case 0x0002:
      return "\(UInt16(truncatingIfNeeded: rawValue >> 32)):\(UInt32(truncatingIfNeeded: rawValue))"
    case 0x0102:
      return
        "\(dottedQuad(UInt32(truncatingIfNeeded: rawValue >> 16))):\(UInt16(truncatingIfNeeded: rawValue))"
    case 0x0202:
      let asn = UInt32(truncatingIfNeeded: rawValue >> 16)
      return "\(asn)\(asn <= 0xFFFF ? "L" : ""):\(UInt16(truncatingIfNeeded: rawValue))"
    default: return String(rawValue, radix: 16)
    }
  }

  /// Same text forms as `RouteDistinguisher`.
  public init?(_ text: String) {
    guard let distinguisher = RouteDistinguisher(text) else { return nil }
    let value = distinguisher.rawValue & 0xFFFF_FFFF_FFFF
    self.init(rawValue: UInt64(distinguisher.type) << 56 | 0x02 << 48 | value)
  }

  public init(from decoder: Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    guard let value = RouteTarget(text) else {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: "bad RT \(text)"))
    }
    self = value
  }

  public func encode(to encoder: Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}
