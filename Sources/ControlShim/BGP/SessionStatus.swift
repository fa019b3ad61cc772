import Dataplane

/// RFC 4271 section 8 session states.
public enum SessionState: String, Sendable, Codable {
  case idle = "Idle", connect = "Connect", active = "Active"
  case openSent = "OpenSent", openConfirm = "OpenConfirm", established = "Established"
}

/// Where a lost session's kept routes are: RFC 4724 graceful restart, then RFC 9494
/// long-lived graceful restart (least preferred, marked LLGR_STALE).
public enum StalePhase: String, Sendable, Codable {
  case none
  case gracefulRestart = "graceful_restart"
  case longLived = "long_lived"
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
  /// The long-lived stale time (seconds) the peer announced for L2VPN EVPN (RFC 9494);
  /// nil: it announced no long-lived graceful restart.
  public var peerLongLivedStaleTime: UInt32? = nil
  /// The restart time (seconds) in the peer's graceful-restart capability; nil: none.
  public var peerRestartTime: UInt16? = nil
  /// The peer's last OPEN had the Restart State (R) bit: it had restarted (RFC 4724);
  /// nil in older documents.
  public var peerRestarted: Bool? = nil
  public var routeTargetConstraint: Bool
  /// EVPN NLRI received in reachability (cumulative).
  public var routesReceived: Int
  /// Routes of this peer currently held in the RIB (type 2 + type 3).
  public var routesAccepted: Int
  /// NLRI ignored because no local VNI imports their route target (cumulative).
  public var routesIgnored: Int
  /// Routes kept stale since the last session loss.
  public var routesStale: Int
  /// Of this peer's routes, those that are long-lived stale (RFC 9494: after the
  /// graceful-restart phase, or received with LLGR_STALE); nil in older documents.
  public var routesLongLivedStale: Int? = nil
  /// The phase of the kept routes (graceful_restart, then long_lived); nil: none kept.
  public var stalePhase: StalePhase? = nil
  /// EVPN NLRI we sent in reachability (cumulative).
  public var routesAdvertised: Int
  public var establishedTransitions: Int
  public var lastError: String?
  public var md5: Bool
  /// The peer's export filter (`PeerConfiguration.exportVNIs`), sorted; nil: none.
  public var exportVNIs: [UInt32]? = nil

  /// Snake case spelled out, so that `show bgp --json` reads well and decodes with a
  /// plain `JSONDecoder` (automatic conversion would give `router_i_d`-style keys).
  enum CodingKeys: String, CodingKey {
    case name, address, port, state, uptime, md5
    case remoteAS = "remote_as", remoteRouterID = "remote_router_id", isInternal = "is_internal"
    case negotiatedHoldTime = "negotiated_hold_time", negotiatedFamilies = "negotiated_families"
    case fourOctetAS = "four_octet_as", routeRefresh = "route_refresh", peerGracefulRestart =
      "peer_graceful_restart"
    case routeTargetConstraint = "route_target_constraint", routesReceived = "routes_received"
    case routesAccepted = "routes_accepted", routesIgnored = "routes_ignored", routesStale = "routes_stale"
    case peerLongLivedStaleTime = "peer_long_lived_stale_time", routesLongLivedStale = "routes_llgr_stale"
    case peerRestartTime = "peer_restart_time", peerRestarted = "peer_restarted"
    case stalePhase = "stale_phase"
    case routesAdvertised = "routes_advertised", establishedTransitions = "established_transitions"
    case lastError = "last_error", exportVNIs = "export_vnis"
  }
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
  /// The MACs counted in `frozenMACs`, sorted by VNI then MAC.
  public var duplicateMACs: [DuplicateMACStatus]
  /// Our side of graceful restart; nil in older documents.
  public var gracefulRestart: GracefulRestartStatus? = nil

  enum CodingKeys: String, CodingKey {
    case asn, peers
    case gracefulRestart = "graceful_restart"
    case routerID = "router_id", listeningPort = "listening_port", localMACRoutes = "local_mac_routes"
    case remoteMACRoutes = "remote_mac_routes", frozenMACs = "frozen_macs", duplicateMACs = "duplicate_macs"
  }
}

/// The restarting-speaker side of graceful restart (RFC 4724 section 4.1), in
/// `show bgp --json`.
public struct GracefulRestartStatus: Sendable, Codable, Equatable {
  /// This start was a restart (within the restart time of the last stop).
  public var restarted: Bool
  /// Our OPENs carry the Restart State (R) bit now: until the restart is over.
  public var restartState: Bool
  /// The F bit we announce for L2VPN EVPN.
  public var forwardingStatePreserved: Bool
  /// The restored local MACs and bindings were re-advertised; End-of-RIB goes after them.
  public var localStateRestored: Bool
  /// Received routes are not installed yet: waiting for the peers' End-of-RIB or the
  /// selection deferral timer.
  public var selectionDeferral: Bool
  /// The restart time we announce, seconds.
  public var restartTime: UInt16

  enum CodingKeys: String, CodingKey {
    case restarted
    case restartState = "restart_state", forwardingStatePreserved = "forwarding_state_preserved"
    case localStateRestored = "local_state_restored", selectionDeferral = "selection_deferral"
    case restartTime = "restart_time"
  }
}

/// A MAC frozen by duplicate detection (RFC 7432 section 15.1), in `show bgp --json`.
public struct DuplicateMACStatus: Sendable, Codable, Equatable {
  public var vni: UInt32
  public var mac: String
  /// Moves counted within the detection window when it was frozen.
  public var moves: Int
  /// Seconds since it was frozen.
  public var frozenFor: Double
  /// Seconds until the freeze time releases it; nil: frozen until cleared.
  public var releaseIn: Double?

  enum CodingKeys: String, CodingKey {
    case vni, mac, moves
    case frozenFor = "frozen_for", releaseIn = "release_in"
  }
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
  /// The graceful-restart phase of a lost peer's routes ended and they are now long-lived
  /// stale (RFC 9494): least preferred, still forwarding; those with NO_LLGR were removed.
  case longLivedStale(peer: String, routes: Int)
  /// This speaker restarted (RFC 4724 section 4.1): Restart State announced, received
  /// routes held for at most `selectionDeferral` seconds.
  case restarting(selectionDeferral: Double)
  /// Held routes went to the sink (`changes` of them).
  case selectionDeferralEnded(reason: SelectionDeferralEnd, changes: Int)
  /// Local state re-advertised and deferral over: OPENs no longer carry the R bit.
  case restartFinished
  /// A peer came back with the Restart State bit; without the F bit for EVPN its
  /// `staleRoutes` were removed at once, with it they wait for its End-of-RIB.
  case peerRestarted(peer: String, forwardingPreserved: Bool, staleRoutes: Int)
  /// A peer was added to or removed from the running speaker.
  case peerAdded(peer: String)
  case peerRemoved(peer: String)
  /// Duplicate-MAC detection froze a MAC: our routes for it were withdrawn.
  case macFrozen(vni: UInt32, mac: MACAddress, moves: Int)
  /// A freeze was lifted (`reason`: "cleared" or "freeze time elapsed").
  case macUnfrozen(vni: UInt32, mac: MACAddress, reason: String)
  /// An address conflict started (see `ConflictRule`).
  case conflictStarted(AddressConflict)
  /// It ended (`reason`: which claim went).
  case conflictCleared(AddressConflict, reason: String)
}
