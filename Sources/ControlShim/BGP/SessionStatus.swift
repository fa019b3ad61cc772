/// RFC 4271 section 8 session states.
public enum SessionState: String, Sendable, Codable {
  case idle = "Idle", connect = "Connect", active = "Active"
  case openSent = "OpenSent", openConfirm = "OpenConfirm", established = "Established"
}

/// One peer's session, for `vxswitch show bgp --json`.
public struct PeerStatus: Sendable, Codable, Equatable {
  public var name: String
  public var address: String
  public var port: UInt16
  public var remoteAS: UInt32
  public var remoteRouterID: String?
  public var isInternal: Bool
  public var state: SessionState
  /// Seconds since the session reached Established; nil when it is not.
  public var uptime: Double?
  public var negotiatedHoldTime: UInt16?
  public var negotiatedFamilies: [String]
  public var fourOctetAS: Bool
  public var routeRefresh: Bool
  /// The peer announced graceful restart for L2VPN EVPN.
  public var peerGracefulRestart: Bool
  public var routeTargetConstraint: Bool
  /// EVPN NLRI received in reachability (cumulative).
  public var routesReceived: Int
  /// Routes of this peer currently held in the RIB (type 2 + type 3).
  public var routesAccepted: Int
  /// NLRI ignored because no local VNI imports their route target (cumulative).
  public var routesIgnored: Int
  /// Routes kept stale since the last session loss.
  public var routesStale: Int
  /// EVPN NLRI we sent in reachability (cumulative).
  public var routesAdvertised: Int
  public var establishedTransitions: Int
  public var lastError: String?
  public var md5: Bool
}

/// The whole speaker, for `vxswitch show bgp --json`.
public struct SpeakerStatus: Sendable, Codable, Equatable {
  public var asn: UInt32
  public var routerID: String
  public var listeningPort: UInt16?
  public var localMACRoutes: Int
  public var remoteMACRoutes: Int
  public var frozenMACs: Int
  public var peers: [PeerStatus]
}

/// Events for observers (tests, logs).
public enum SpeakerEvent: Sendable, Equatable {
  case established(peer: String)
  case sessionDown(peer: String, reason: String)
  case notificationSent(peer: String, NotificationMessage)
  case notificationReceived(peer: String, NotificationMessage)
  case endOfRIB(peer: String, family: AddressFamily)
  case updateProcessed(peer: String)
  case staleRoutesSwept(peer: String)
}
