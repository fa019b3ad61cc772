/// An AFI/SAFI pair (RFC 4760).
public struct AddressFamily: Hashable, Sendable, Codable, CustomStringConvertible {
  public let afi: UInt16
  public let safi: UInt8

  public init(afi: UInt16, safi: UInt8) {
    self.afi = afi
    self.safi = safi
  }

  public static let ipv4Unicast = AddressFamily(afi: 1, safi: 1)
  /// L2VPN EVPN (RFC 7432).
  public static let l2vpnEVPN = AddressFamily(afi: 25, safi: 70)
  /// Route Target Constraint (RFC 4684).
  public static let routeTargetConstraint = AddressFamily(afi: 1, safi: 132)

  public var description: String {
    switch self {
    case .ipv4Unicast: return "ipv4-unicast"
    case .l2vpnEVPN: return "l2vpn-evpn"
    case .routeTargetConstraint: return "rtc"
    default: return "afi\(afi)/safi\(safi)"
    }
  }
}
