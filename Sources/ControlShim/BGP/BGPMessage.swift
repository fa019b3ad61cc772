/// RFC 4271 OPEN.
public struct OpenMessage: Hashable, Sendable {
  public static let asTrans: UInt16 = 23456
  public var version: UInt8 = 4
  /// The 2-octet field: the real AS, or AS_TRANS when it does not fit.
  public var myAS: UInt16
  public var holdTime: UInt16
  public var bgpIdentifier: UInt32
  public var capabilities: [BGPCapability]

  public init(
    version: UInt8 = 4, myAS: UInt16, holdTime: UInt16, bgpIdentifier: UInt32, capabilities: [BGPCapability]
  ) {
    self.version = version
    self.myAS = myAS
    self.holdTime = holdTime
    self.bgpIdentifier = bgpIdentifier
    self.capabilities = capabilities
  }

  /// Builds an OPEN for `asn`, putting AS_TRANS in the 2-octet field when needed and
  /// always announcing the 4-octet AS capability.
  public init(asn: UInt32, holdTime: UInt16, bgpIdentifier: UInt32, capabilities: [BGPCapability]) {
    self.init(
      myAS: asn <= 0xFFFF ? UInt16(asn) : Self.asTrans, holdTime: holdTime, bgpIdentifier: bgpIdentifier,
      capabilities: capabilities.contains { if case .fourOctetAS = $0 { return true } else { return false } }
        ? capabilities : capabilities + [.fourOctetAS(asn)])
  }

  /// The sender's AS: the 4-octet capability when present, else the 2-octet field.
  public var asn: UInt32 {
    for capability in capabilities { if case .fourOctetAS(let asn) = capability { return asn } }
    return UInt32(myAS)
  }

  public var families: Set<AddressFamily> {
    Set(
      capabilities.compactMap {
        if case .multiprotocol(let family) = $0 { return family } else { return nil }
      })
  }

  public var longLivedGracefulRestart: LongLivedGracefulRestartCapability? {
    for capability in capabilities {
      if case .longLivedGracefulRestart(let value) = capability { return value }
    }
    return nil
  }

  public var gracefulRestart: GracefulRestartCapability? {
    for capability in capabilities { if case .gracefulRestart(let value) = capability { return value } }
    return nil
  }

  public var supportsFourOctetAS: Bool {
    capabilities.contains { if case .fourOctetAS = $0 { return true } else { return false } }
  }

  public var supportsRouteRefresh: Bool { capabilities.contains(.routeRefresh) }
}

/// RFC 4271 UPDATE. IPv4 unicast withdrawn routes and NLRI are kept raw: this speaker
/// only uses the multiprotocol attributes.
public struct UpdateMessage: Hashable, Sendable {
  public var withdrawnRoutes: [UInt8]
  public var attributes: PathAttributes
  public var nlri: [UInt8]

  public init(
    withdrawnRoutes: [UInt8] = [], attributes: PathAttributes = PathAttributes(), nlri: [UInt8] = []
  ) {
    self.withdrawnRoutes = withdrawnRoutes
    self.attributes = attributes
    self.nlri = nlri
  }

  /// RFC 4724 section 2: IPv4 unicast EoR is an empty UPDATE; other families an UPDATE
  /// whose only attribute is an empty MP_UNREACH_NLRI.
  public static func endOfRIB(_ family: AddressFamily) -> UpdateMessage {
    var attributes = PathAttributes()
    if family != .ipv4Unicast {
      attributes.mpUnreach =
        switch family {
        case .l2vpnEVPN: .evpn([])
        case .routeTargetConstraint: .routeTargetMembership([])
        default: .raw(family: family, bytes: [])
        }
    }
    return UpdateMessage(attributes: attributes)
  }

  /// The family this UPDATE closes, when it is an End-of-RIB marker.
  public var endOfRIBFamily: AddressFamily? {
    guard withdrawnRoutes.isEmpty, nlri.isEmpty else { return nil }
    var bare = attributes
    guard let unreach = bare.mpUnreach else { return bare == PathAttributes() ? .ipv4Unicast : nil }
    bare.mpUnreach = nil
    return unreach.isEmpty && bare == PathAttributes() ? unreach.family : nil
  }
}

/// RFC 4271 NOTIFICATION.
public struct NotificationMessage: Hashable, Sendable, Codable, CustomStringConvertible {
  public var code: UInt8
  public var subcode: UInt8
  public var data: [UInt8]

  public init(code: UInt8, subcode: UInt8, data: [UInt8] = []) {
    self.code = code
    self.subcode = subcode
    self.data = data
  }

  public init(_ error: BGPWireError) {
    let (code, subcode) = error.notificationCode
    self.init(code: code, subcode: subcode, data: error.data)
  }

  public static let holdTimerExpired = NotificationMessage(code: 4, subcode: 0)
  public static let finiteStateMachineError = NotificationMessage(code: 5, subcode: 0)
  /// RFC 4486 Cease subcodes.
  public static let maximumPrefixesReached = NotificationMessage(code: 6, subcode: 1)
  public static let administrativeShutdown = NotificationMessage(code: 6, subcode: 2)
  public static let peerDeconfigured = NotificationMessage(code: 6, subcode: 3)
  public static let administrativeReset = NotificationMessage(code: 6, subcode: 4)
  public static let connectionRejected = NotificationMessage(code: 6, subcode: 5)
  public static let connectionCollisionResolution = NotificationMessage(code: 6, subcode: 7)
  /// RFC 8538 section 3: Cease / Hard Reset; the NOTIFICATION it stands for leads its data.
  public static let hardResetSubcode: UInt8 = 9
  static let ceaseCode: UInt8 = 6

  public var isHardReset: Bool { code == Self.ceaseCode && subcode == Self.hardResetSubcode }

  /// This NOTIFICATION as a Hard Reset: its code and subcode, then its data, as the data.
  public var asHardReset: NotificationMessage {
    NotificationMessage(code: Self.ceaseCode, subcode: Self.hardResetSubcode, data: [code, subcode] + data)
  }

  /// With the N bit on both sides, these end a session for good and are sent as a Hard
  /// Reset (RFC 8538 section 5: maximum prefixes, administrative shutdown, peer
  /// de-configured, and administrative reset, which that section leaves to the
  /// implementation: an operator's reset is meant to clear state). Every other
  /// NOTIFICATION (hold timer expiry, errors, collisions) leaves graceful restart in force.
  public var endsGracefulRestart: Bool {
    code == Self.ceaseCode && (1...4).contains(subcode)
  }

  /// Cease / Connection Collision Resolution, whatever data it carries.
  public var isConnectionCollisionResolution: Bool {
    code == Self.connectionCollisionResolution.code && subcode == Self.connectionCollisionResolution.subcode
  }

  public var description: String {
    if isHardReset, data.count >= 2 {
      let inner = NotificationMessage(code: data[0], subcode: data[1], data: Array(data.dropFirst(2)))
      return "NOTIFICATION \(code)/\(subcode) (Hard Reset: \(inner))"
    }
    return "NOTIFICATION \(code)/\(subcode)" + (data.isEmpty ? "" : " data \(data.hexString)")
  }
}

/// RFC 2918 ROUTE-REFRESH, with the RFC 7313 message subtype in the former reserved octet.
public struct RouteRefreshMessage: Hashable, Sendable {
  /// RFC 7313: 0 is a normal route refresh request, 1 and 2 mark the beginning and end of
  /// an enhanced route refresh; other values are reserved.
  public static let normalRequest: UInt8 = 0
  public var family: AddressFamily
  public var subtype: UInt8

  public init(family: AddressFamily, subtype: UInt8 = RouteRefreshMessage.normalRequest) {
    self.family = family
    self.subtype = subtype
  }
}

/// A BGP message (RFC 4271 section 4).
public enum BGPMessage: Hashable, Sendable {
  case open(OpenMessage)
  case update(UpdateMessage)
  case notification(NotificationMessage)
  case keepalive
  case routeRefresh(RouteRefreshMessage)

  public static let headerLength = 19
  public static let maximumLength = 4096

  enum TypeCode {
    static let open: UInt8 = 1, update: UInt8 = 2, notification: UInt8 = 3, keepalive: UInt8 = 4,
      routeRefresh: UInt8 = 5
  }

  var typeCode: UInt8 {
    switch self {
    case .open: return TypeCode.open
    case .update: return TypeCode.update
    case .notification: return TypeCode.notification
    case .keepalive: return TypeCode.keepalive
    case .routeRefresh: return TypeCode.routeRefresh
    }
  }
}
