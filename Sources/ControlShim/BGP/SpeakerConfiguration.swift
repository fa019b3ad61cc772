import Dataplane

/// What to do with a peer's routes when its session goes down.
public enum StaleRoutePolicy: String, Sendable, Codable {
  /// RFC 4724 helper: keep them stale only if the peer announced graceful restart for
  /// L2VPN EVPN and the session ended without a NOTIFICATION.
  case gracefulRestartOnly
  /// Keep them stale on any session loss (dataplane partition resilience), e.g. for
  /// peers that cannot run graceful restart safely.
  case always
  /// Remove them at once.
  case never
}

/// Settings of one BGP neighbour.
public struct PeerConfiguration: Sendable, Codable, Equatable {
  /// Name used in status output and passed to the sink as `peer`.
  public var name: String
  public var address: String
  public var port: UInt16
  public var remoteAS: UInt32
  /// Passive peers are never connected to; we only accept their connections.
  public var passive: Bool
  /// TCP MD5 signature key (RFC 2385), up to 80 octets.
  public var password: String?
  /// Cease/1 when the peer makes us hold more routes than this.
  public var maxRoutes: Int?
  /// Overrides the speaker-wide hold time.
  public var holdTime: UInt16?
  /// Announce and use RFC 4684 route target constraint with this peer.
  public var routeTargetConstraint: Bool
  public var staleRoutePolicy: StaleRoutePolicy
  /// The VNIs whose routes (type 2 and type 3) this peer is sent: nil sends every VNI
  /// (or none, on a speaker whose `exportWithoutFilter` is false), a set only those.
  /// Changed at run time with `EVPNSpeaker.setExportVNIs(peer:_:)`. Import is not
  /// filtered: route targets decide which VNI imports a route.
  public var exportVNIs: Set<UInt32>?
  /// The export filter is also this peer's import filter: its routes are imported only into
  /// the VNIs `exportVNIs` allows, and with RT constraint only those VNIs' import route
  /// targets are announced to it (RFC 4684 memberships follow `setExportVNIs`). Set for the
  /// configured peers (route reflectors) of a site with `[peering]`, whose export filter is
  /// the extended networks, so that a network that is not extended neither leaves nor
  /// takes in routes through them.
  public var importOnlyExported: Bool
  /// Source address of the connections we open to the peer; nil lets the kernel choose.
  /// The peer identifies incoming connections by their source address.
  public var localAddress: String?

  public init(
    name: String? = nil, address: String, port: UInt16 = 179, remoteAS: UInt32, passive: Bool = false,
    password: String? = nil, maxRoutes: Int? = nil, holdTime: UInt16? = nil,
    routeTargetConstraint: Bool = false,
    staleRoutePolicy: StaleRoutePolicy = .gracefulRestartOnly,
    exportVNIs: Set<UInt32>? = nil, localAddress: String? = nil, importOnlyExported: Bool = false
  ) {
    self.name = name ?? "\(address):\(port)"
    self.address = address
    self.port = port
    self.remoteAS = remoteAS
    self.passive = passive
    self.password = password
    self.maxRoutes = maxRoutes
    self.holdTime = holdTime
    self.routeTargetConstraint = routeTargetConstraint
    self.staleRoutePolicy = staleRoutePolicy
    self.exportVNIs = exportVNIs
    self.localAddress = localAddress
    self.importOnlyExported = importOnlyExported
  }
}

/// Settings of one VNI (EVI). Unset values take the RFC 7432 / FRR style defaults.
public struct VNIConfiguration: Sendable, Codable, Equatable {
  public var vni: UInt32
  /// Default: type 1, routerID:index (index = position in the VNI list + 1).
  public var routeDistinguisher: RouteDistinguisher?
  /// Default: (ASN & 0xFFFF):VNI, type 0.
  public var importRouteTargets: [RouteTarget]?
  public var exportRouteTargets: [RouteTarget]?

  public init(
    vni: UInt32, routeDistinguisher: RouteDistinguisher? = nil, importRouteTargets: [RouteTarget]? = nil,
    exportRouteTargets: [RouteTarget]? = nil
  ) {
    self.vni = vni
    self.routeDistinguisher = routeDistinguisher
    self.importRouteTargets = importRouteTargets
    self.exportRouteTargets = exportRouteTargets
  }
}

/// Everything an `EVPNSpeaker` needs.
public struct SpeakerConfiguration: Sendable {
  public var asn: UInt32
  /// BGP identifier as an IPv4 address in host order.
  public var routerID: UInt32
  /// Our VXLAN tunnel endpoint: next hop of everything we advertise.
  public var vtep: IPAddress
  /// Where to accept connections; nil listens nowhere. Port 0 picks a free port
  /// (read it back with `EVPNSpeaker.listeningPort`).
  public var listenAddress: String?
  public var listenPort: UInt16
  public var holdTime: UInt16 = 90
  /// First connect-retry delay; doubles after each failure up to the maximum.
  public var connectRetryTime: Double = 1
  public var connectRetryMaximum: Double = 60
  /// Announce graceful restart (RFC 4724) for our families.
  public var announceGracefulRestart: Bool = true
  public var gracefulRestartTime: UInt16 = 120
  /// The F bit we announce for L2VPN EVPN. A userspace dataplane restarts with the
  /// process, so this is true only because the daemon keeps the locally learnt MACs and
  /// bindings (what peers forward to us for) in its restart record and restores them
  /// before the speaker starts; false when that record could not be used.
  public var forwardingStatePreserved: Bool = true
  /// This start is a restart within `gracefulRestartTime` of the last stop (RFC 4724
  /// section 4.1): OPENs carry the Restart State bit, End-of-RIB waits for
  /// `EVPNSpeaker.localStateRestored()`, and received routes reach the sink only once
  /// every peer sent End-of-RIB or `selectionDeferralTime` ran out.
  public var restarting: Bool = false
  /// RFC 4724's Selection_Deferral_Timer: how long a restarting speaker waits for its
  /// peers' End-of-RIB before installing what it has.
  public var selectionDeferralTime: Double = 60
  /// How long a dropped peer's routes are kept stale at most (the graceful-restart phase).
  public var staleTime: Double = 300
  /// Long-lived graceful restart (RFC 9494): announced for L2VPN EVPN with this stale time
  /// (seconds, at most 2^24 - 1) when above 0. After the graceful-restart phase, the routes
  /// of a lost peer that announced it too are kept as long-lived stale (least preferred,
  /// still forwarding) for the smaller of this and the peer's announced time. 0: off.
  public var longLivedStaleTime: Double = 0
  /// Duplicate MAC detection: this many moves within the window freeze the MAC.
  public var duplicateMACMaxMoves: Int = 5
  public var duplicateMACWindow: Double = 180
  /// How long a duplicate MAC stays frozen before it is released by itself (like FRR's
  /// `dup-addr-detection freeze <seconds>`); nil: until cleared (`freeze permanent`).
  public var duplicateMACFreezeTime: Double? = nil
  /// Size hint for the MAC table: reserving it up front avoids rehashing while a
  /// large table arrives (about a third of the import time at 100k routes).
  public var expectedMACRoutes: Int = 0
  /// What a peer whose `exportVNIs` is nil is sent: every VNI (true, the `[bgp]`
  /// behaviour) or nothing (false: sites without `[bgp]`, whose networks stay local
  /// unless a peer's `exportVNIs` names them).
  public var exportWithoutFilter: Bool = true
  public var vnis: [VNIConfiguration]
  public var peers: [PeerConfiguration]

  public init(
    asn: UInt32, routerID: UInt32, vtep: IPAddress, listenAddress: String? = nil, listenPort: UInt16 = 179,
    vnis: [VNIConfiguration], peers: [PeerConfiguration]
  ) {
    self.asn = asn
    self.routerID = routerID
    self.vtep = vtep
    self.listenAddress = listenAddress
    self.listenPort = listenPort
    self.vnis = vnis
    self.peers = peers
  }

  /// The RD, import and export RTs of each VNI after defaults.
  func resolvedVNIs() -> [ResolvedVNI] {
    vnis.enumerated().map { index, vni in
      let defaultTarget = RouteTarget.twoOctetAS(UInt16(truncatingIfNeeded: asn), vni.vni)
      return ResolvedVNI(
        vni: vni.vni,
        routeDistinguisher: vni.routeDistinguisher ?? .ipv4(routerID, UInt16(truncatingIfNeeded: index + 1)),
        importRouteTargets: vni.importRouteTargets ?? [defaultTarget],
        exportRouteTargets: vni.exportRouteTargets ?? [defaultTarget])
    }
  }
}

struct ResolvedVNI: Sendable, Equatable {
  let vni: UInt32
  let routeDistinguisher: RouteDistinguisher
  let importRouteTargets: [RouteTarget]
  let exportRouteTargets: [RouteTarget]
}
