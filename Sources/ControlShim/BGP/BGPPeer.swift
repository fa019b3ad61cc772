import NIOCore
import NIOPosix

/// One configured neighbour: the session-level RFC 4271 FSM (Idle, Connect, Active and
/// the states of its connections), connect retry with exponential backoff, collision
/// resolution, and what happens to its routes when the session goes. Confined to the
/// speaker's event loop.
// @unchecked: confined to the speaker's event loop (start, stop and every connection
// callback run there; `start` and `stop` check it).
final class BGPPeer: @unchecked Sendable {
  /// Only `exportVNIs` changes after creation (`EVPNSpeaker.setExportVNIs`).
  private(set) var configuration: PeerConfiguration
  /// Index used in RIB paths (0 is reserved for local routes).
  let index: UInt16
  unowned let speaker: EVPNSpeaker

  private(set) var connections: [BGPConnection] = []
  private(set) var established: BGPConnection?
  private var connecting = false
  private var retryTask: Scheduled<Void>?
  private var staleTask: Scheduled<Void>?
  private var retryDelay: Double
  private var stopped = true
  var isStopped: Bool { stopped }
  /// Set when the peer is removed from a running speaker: its late callbacks (a
  /// connection closing, a connect completing) must not touch the RIB, whose index it
  /// held may be reused.
  private(set) var isRemoved = false

  // Status
  private(set) var establishedAt: NIODeadline?
  private(set) var establishedTransitions = 0
  var routesReceived = 0
  var routesIgnored = 0
  var routesAdvertised = 0
  var lastError: String?
  /// OPEN of the current (or last) established session.
  private(set) var remoteOpen: OpenMessage?
  private(set) var negotiatedFamilies: Set<AddressFamily> = []
  /// RFC 4684 memberships the peer announced; nil until it sends any (or RTC is off).
  var routeTargetMemberships: Set<RouteTargetMembership> = []
  /// True after the peer's RTC End-of-RIB (RFC 4684 section 6: wait before sending VPN routes).
  var routeTargetConstraintSynced = false
  /// The RFC 4684 memberships (our import RTs) announced to the peer on this session.
  var announcedMemberships: Set<RouteTarget> = []
  /// Which phase the routes kept from a lost session are in (none: no stale routes).
  private(set) var stalePhase: StalePhase = .none
  var hasStaleRoutes: Bool { stalePhase != .none }
  /// The peer sent routes marked LLGR_STALE (status then counts long-lived stale routes
  /// also outside a stale phase).
  var receivedLongLivedStale = false
  /// Set before a Cease that must not leave stale routes behind (max routes exceeded).
  var purgeRoutesOnLoss = false
  /// Our EVPN End-of-RIB waits for the restored local state (`EVPNSpeaker+Restart`).
  var endOfRIBHeld = false
  /// When the session whose routes are kept stale was lost: the graceful-restart phase
  /// lasts `staleTime` from then, whatever the peer's restart time shortened it to.
  private var lostAt: NIODeadline?

  init(configuration: PeerConfiguration, index: UInt16, speaker: EVPNSpeaker) {
    self.configuration = configuration
    self.index = index
    self.speaker = speaker
    self.retryDelay = speaker.configuration.connectRetryTime
  }

  var eventLoop: EventLoop { speaker.eventLoop }
  var isInternal: Bool { configuration.remoteAS == speaker.configuration.asn }
  var configuredHoldTime: UInt16 { configuration.holdTime ?? speaker.configuration.holdTime }
  var usesRouteTargetConstraint: Bool { negotiatedFamilies.contains(.routeTargetConstraint) }
  var supportsEVPN: Bool { negotiatedFamilies.contains(.l2vpnEVPN) }

  /// Whether this peer is sent the routes of `vni` (its export filter).
  func exports(_ vni: UInt32) -> Bool {
    configuration.exportVNIs?.contains(vni) ?? speaker.configuration.exportWithoutFilter
  }

  /// Whether routes of this peer may be imported into `vni` (its export filter, when
  /// `importOnlyExported`; any VNI otherwise).
  func imports(into vni: UInt32) -> Bool { !configuration.importOnlyExported || exports(vni) }

  func setExportVNIs(_ vnis: Set<UInt32>?) { configuration.exportVNIs = vnis }

  /// Stops the peer for good (`EVPNSpeaker.removePeer`): Cease on every connection,
  /// its routes dropped at once whatever its stale-route policy.
  func remove(notification: NotificationMessage) {
    purgeRoutesOnLoss = true
    stop(notification: notification)
    purgeRoutesOnLoss = false
    stopStaleTimer()
    isRemoved = true
  }

  var state: SessionState {
    if established != nil { return .established }
    if connections.contains(where: { $0.state == .openConfirm }) { return .openConfirm }
    if connections.contains(where: { $0.state == .openSent }) { return .openSent }
    if connecting { return .connect }
    if stopped { return .idle }
    return .active
  }

  // MARK: start and stop

  func start() {
    eventLoop.preconditionInEventLoop()
    stopped = false
    retryDelay = speaker.configuration.connectRetryTime
    if !configuration.passive { connect() }
  }

  /// Without `notification` the connections just close (a restarting daemon, whose
  /// helpers keep its routes only if no NOTIFICATION came).
  func stop(notification: NotificationMessage? = .administrativeShutdown) {
    eventLoop.preconditionInEventLoop()
    stopped = true
    retryTask?.cancel()
    retryTask = nil
    staleTask?.cancel()
    for connection in connections {
      if let notification {
        connection.sendNotificationAndClose(notification, reason: "administrative stop")
      } else {
        connection.close(reason: "stopped for a restart")
      }
    }
  }

  /// Drops the TCP connection without a NOTIFICATION, as a link failure would; used
  /// by tests and by operators to exercise graceful restart.
  func dropConnection() {
    for connection in connections { connection.close(reason: "connection dropped locally") }
  }

  private func connect() {
    // One attempt at a time, and none while a connection (maybe incoming) is alive.
    guard !stopped, !connecting, established == nil, connections.isEmpty else { return }
    connecting = true
    let speaker = self.speaker
    let configuration = self.configuration
    var bootstrap = ClientBootstrap(group: eventLoop)
      .connectTimeout(.seconds(10))
      .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { [weak self] channel in
        guard let self else { return channel.eventLoop.makeSucceededVoidFuture() }
        // Stopped (or removed) while the connect was being set up.
        guard !self.stopped else { return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        let connection = BGPConnection(
          channel: channel, outbound: true, remoteAddress: configuration.address, speaker: speaker, peer: self
        )
        self.connections.append(connection)
        let md5: EventLoopFuture<Void> =
          configuration.password.map {
            TCPMD5.configure(channel, peerAddress: configuration.address, password: $0)
          }
          ?? channel.eventLoop.makeSucceededVoidFuture()
        return md5.flatMap { channel.pipeline.addHandler(BGPChannelHandler(connection: connection)) }
      }
    if let local = configuration.localAddress {
      do {
        bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: local, port: 0))
      } catch {
        lastError = "local address \(local): \(error)"
      }
    }
    bootstrap.connect(host: configuration.address, port: Int(configuration.port)).whenComplete {
      [weak self] result in
      guard let self else { return }
      self.connecting = false
      if case .failure(let error) = result {
        self.connections.removeAll { $0.channel.isActive == false && $0.outbound && $0.state == .connected }
        self.lastError = "connect: \(error)"
        self.scheduleRetry()
      }
    }
  }

  /// Exponential backoff between attempts, reset once a session is established.
  private func scheduleRetry() {
    guard !stopped, !configuration.passive, established == nil, retryTask == nil, !connecting else { return }
    let delay = retryDelay
    retryDelay = min(retryDelay * 2, speaker.configuration.connectRetryMaximum)
    retryTask = eventLoop.scheduleTask(in: .milliseconds(Int64(delay * 1000))) { [weak self] in
      self?.retryTask = nil
      self?.connect()
    }
  }

  // MARK: connections

  func adoptIncoming(_ connection: BGPConnection) {
    if !connections.contains(where: { $0 === connection }) { connections.append(connection) }
  }

  func makeOpen() -> OpenMessage {
    let settings = speaker.configuration
    var families: [AddressFamily] = [.l2vpnEVPN]
    if configuration.routeTargetConstraint { families.append(.routeTargetConstraint) }
    var capabilities: [BGPCapability] = families.map { .multiprotocol($0) }
    capabilities.append(.routeRefresh)
    if settings.announceGracefulRestart {
      capabilities.append(
        .gracefulRestart(
          GracefulRestartCapability(
            restarting: speaker.restart.restartState, notification: true,
            restartTime: settings.gracefulRestartTime,
            families: families.map {
              .init(family: $0, forwardingPreserved: settings.forwardingStatePreserved)
            })))
    }
    if settings.longLivedStaleTime > 0 {
      // RFC 9494 section 3, next to the GR capability: EVPN only (RTC memberships are
      // not kept across a session loss).
      let seconds = UInt32(min(settings.longLivedStaleTime.rounded(.up), Double(0xFF_FFFF)))
      capabilities.append(
        .longLivedGracefulRestart(
          LongLivedGracefulRestartCapability(families: [
            .init(
              family: .l2vpnEVPN, forwardingPreserved: settings.forwardingStatePreserved, staleTime: seconds)
          ])))
    }
    return OpenMessage(
      asn: settings.asn, holdTime: configuredHoldTime, bgpIdentifier: settings.routerID,
      capabilities: capabilities)
  }

  /// RFC 4271 section 6.2 checks that need the configuration.
  func validate(_ open: OpenMessage) -> BGPWireError? {
    if open.asn != configuration.remoteAS { return BGPWireError(.badPeerAS(open.asn)) }
    if open.bgpIdentifier == speaker.configuration.routerID && isInternal {
      return BGPWireError(.badBGPIdentifier(open.bgpIdentifier))
    }
    if open.holdTime != 0 && open.holdTime < 3 { return BGPWireError(.unacceptableHoldTime(open.holdTime)) }
    return nil
  }

  /// RFC 4271 section 6.8: with two connections, the one opened by the speaker with
  /// the higher BGP identifier survives. Returns false when `connection` lost.
  func resolveCollision(_ connection: BGPConnection, remoteIdentifier: UInt32) -> Bool {
    if established != nil {
      connection.sendNotificationAndClose(
        .connectionCollisionResolution, reason: "collision with established session")
      return false
    }
    let keepOutbound = speaker.configuration.routerID > remoteIdentifier
    for other in connections where other !== connection && other.state != .closed {
      // The other connection is still racing: one of the two goes.
      if other.outbound == keepOutbound && connection.outbound != keepOutbound {
        connection.sendNotificationAndClose(.connectionCollisionResolution, reason: "collision resolution")
        return false
      }
      other.sendNotificationAndClose(.connectionCollisionResolution, reason: "collision resolution")
    }
    return true
  }

  func connectionEstablished(_ connection: BGPConnection) {
    guard !stopped else {
      connection.sendNotificationAndClose(.administrativeShutdown, reason: "peer stopped")
      return
    }
    retryTask?.cancel()
    retryTask = nil
    retryDelay = speaker.configuration.connectRetryTime
    established = connection
    establishedAt = .now()
    establishedTransitions += 1
    lastError = nil
    remoteOpen = connection.remoteOpen
    var ours: Set<AddressFamily> = [.l2vpnEVPN]
    if configuration.routeTargetConstraint { ours.insert(.routeTargetConstraint) }
    negotiatedFamilies = ours.intersection(connection.remoteOpen?.families ?? [])
    routeTargetMemberships = []
    announcedMemberships = []
    endOfRIBHeld = false
    // A peer whose export filter alone decides what it is sent need not be waited for
    // (gobgpd, for one, sends no RTC End-of-RIB without graceful restart).
    routeTargetConstraintSynced = !usesRouteTargetConstraint || configuration.importOnlyExported
    speaker.emit(.established(peer: configuration.name))
    if hasStaleRoutes { peerReturned() }
    speaker.sessionEstablished(self)
    // RFC 4724 section 4.1: a restarting speaker does not wait for peers that send no
    // End-of-RIB, or that are restarting themselves.
    if !peerPromisesEndOfRIB || remoteOpen?.gracefulRestart?.restarting == true {
      speaker.peerSynchronised(self)
    }
  }

  /// The session is back while routes of the last one are kept (RFC 4724 section 4.2):
  /// the restart timer stops; if the peer restarted (R bit) without keeping forwarding
  /// state for EVPN (F bit clear, or EVPN left out) its stale routes go at once, else they
  /// stay until its End-of-RIB, bounded by what is left of `staleTime`.
  private func peerReturned() {
    if let capability = remoteOpen?.gracefulRestart, capability.restarting {
      let preserved = capability.families.first { $0.family == .l2vpnEVPN }?.forwardingPreserved ?? false
      let stale = speaker.rib.staleCount(peer: index)
      speaker.emit(
        .peerRestarted(peer: configuration.name, forwardingPreserved: preserved, staleRoutes: stale))
      guard preserved else {
        speaker.sweepStaleRoutes(of: self)
        return
      }
    }
    guard stalePhase == .gracefulRestart, let lostAt else { return }
    let elapsed = Double((NIODeadline.now() - lostAt).nanoseconds) / 1e9
    scheduleGracefulRestartPhaseEnd(after: speaker.configuration.staleTime - elapsed)
  }

  func connectionClosed(
    _ connection: BGPConnection, wasEstablished: Bool, reason: String, notification: NotificationMessage?
  ) {
    connections.removeAll { $0 === connection }
    guard !isRemoved else { return }
    guard !wasEstablished else {
      established = nil
      establishedAt = nil
      lastError = reason
      speaker.emit(.sessionDown(peer: configuration.name, reason: reason))
      speaker.sessionLost(
        self,
        gracefully: keepsRoutesStale(
          after: notification, notificationSupport: connection.negotiatedNotificationSupport))
      scheduleRetry()
      return
    }
    // Losing a collision race (RFC 4271 section 6.8) is how two connections become one,
    // not a session error.
    if notification?.isConnectionCollisionResolution != true { lastError = reason }
    if connections.isEmpty { scheduleRetry() }
  }

  /// Whether this peer's routes survive the loss of its session as stale routes.
  /// `notification` is the NOTIFICATION sent or received that ended the session, if any;
  /// `notificationSupport`, whether both sides announced the N bit (RFC 8538).
  private func keepsRoutesStale(after notification: NotificationMessage?, notificationSupport: Bool) -> Bool {
    if purgeRoutesOnLoss {
      purgeRoutesOnLoss = false
      return false
    }
    // A Hard Reset (RFC 8538) asks for the routes to go, whatever the policy.
    if notification?.isHardReset == true { return false }
    switch configuration.staleRoutePolicy {
    case .never: return false
    case .always: return true
    case .gracefulRestartOnly:
      // RFC 4724: only if the peer announced GR (or RFC 9494 LLGR) for EVPN, and not
      // after a NOTIFICATION unless both sides announced the N bit (RFC 8538).
      let survivesNotification = notification == nil || notificationSupport
      return survivesNotification && (peerGracefulRestartForEVPN || longLivedStaleTime != nil)
    }
  }

  private var peerGracefulRestartForEVPN: Bool {
    remoteOpen?.gracefulRestart?.families.contains { $0.family == .l2vpnEVPN } ?? false
  }

  /// The long-lived stale time the peer announced for EVPN (RFC 9494), if above 0.
  var peerLongLivedStaleTime: UInt32? {
    remoteOpen?.longLivedGracefulRestart?.staleTime(for: .l2vpnEVPN).flatMap { $0 > 0 ? $0 : nil }
  }

  /// How long this peer's routes stay long-lived stale after the graceful-restart phase:
  /// the smaller of the peer's announced time and ours (RFC 9494 section 4.2 lets the
  /// helper keep them for less); nil when either side has LLGR off.
  var longLivedStaleTime: Double? {
    let local = speaker.configuration.longLivedStaleTime
    guard local > 0, let announced = peerLongLivedStaleTime else { return nil }
    return min(local, Double(announced))
  }

  /// The graceful-restart phase while the session is down: the restart time the peer
  /// announced (RFC 4724 section 4.2) when below our stale time, the stale time for a
  /// peer without graceful restart whose routes its policy keeps, and none for a peer that
  /// announced LLGR but not GR and whose routes are kept by the GR-only policy (RFC 9494
  /// section 4.2: a restart time of 0 goes straight to the long-lived phase).
  private var gracefulRestartPhaseTime: Double {
    let staleTime = speaker.configuration.staleTime
    guard peerGracefulRestartForEVPN, let announced = remoteOpen?.gracefulRestart?.restartTime else {
      return configuration.staleRoutePolicy == .gracefulRestartOnly ? 0 : staleTime
    }
    return min(Double(announced), staleTime)
  }

  /// Starts (again) the graceful-restart phase of the routes just marked stale; when it
  /// ends they go, or enter the long-lived phase (RFC 9494) when both sides have LLGR.
  func startStaleTimer() {
    stalePhase = .gracefulRestart
    lostAt = .now()
    scheduleGracefulRestartPhaseEnd(after: gracefulRestartPhaseTime)
  }

  private func scheduleGracefulRestartPhaseEnd(after seconds: Double) {
    staleTask?.cancel()
    staleTask = schedule(after: seconds) { [weak self] in
      guard let self else { return }
      self.staleTask = nil
      guard let longLived = self.longLivedStaleTime else {
        self.speaker.sweepStaleRoutes(of: self)
        return
      }
      self.stalePhase = .longLived
      self.speaker.enterLongLivedStale(of: self)
      self.staleTask = self.schedule(after: longLived) { [weak self] in
        guard let self else { return }
        self.speaker.sweepStaleRoutes(of: self)
      }
    }
  }

  private func schedule(after seconds: Double, _ body: @escaping @Sendable () -> Void) -> Scheduled<Void> {
    eventLoop.scheduleTask(in: .milliseconds(Int64(max(0, seconds) * 1000)), body)
  }

  func stopStaleTimer() {
    staleTask?.cancel()
    staleTask = nil
    stalePhase = .none
    lostAt = nil
  }

  // MARK: messages on the established session

  func received(_ decoded: DecodedMessage, on connection: BGPConnection) {
    guard connection === established else { return }
    speaker.processUpdate(decoded, from: self)
  }

  /// A peer without graceful restart never sends End-of-RIB, so stale routes kept by
  /// `StaleRoutePolicy.always` are swept at its first periodic KEEPALIVE instead:
  /// speakers send their initial table right after Established, ahead of it in the
  /// TCP stream (true of GoBGP, FRR and BIRD). The stale timer remains the bound.
  func receivedKeepalive(on connection: BGPConnection) {
    guard connection === established, hasStaleRoutes, !peerPromisesEndOfRIB else { return }
    speaker.sweepStaleRoutes(of: self)
  }

  /// The peer announced graceful restart for EVPN, so it sends End-of-RIB after its table.
  var peerPromisesEndOfRIB: Bool { peerGracefulRestartForEVPN || peerLongLivedStaleTime != nil }

  func receivedRouteRefresh(_ refresh: RouteRefreshMessage, on connection: BGPConnection) {
    // RFC 7313: only subtype 0 asks for the routes. Beginning/End-of-RIB-Refresh markers
    // (1, 2) belong to enhanced route refresh, which this speaker does not advertise, and
    // reserved subtypes MUST be ignored.
    guard connection === established, refresh.family == .l2vpnEVPN,
      refresh.subtype == RouteRefreshMessage.normalRequest
    else { return }
    speaker.sendAllRoutes(to: self)
  }

  func status(rib: EVPNRIB) -> PeerStatus {
    let open = established?.remoteOpen ?? remoteOpen
    return PeerStatus(
      name: configuration.name, address: configuration.address, port: configuration.port,
      remoteAS: configuration.remoteAS, remoteRouterID: open.map { dottedQuad($0.bgpIdentifier) },
      isInternal: isInternal, state: state,
      uptime: establishedAt.map { Double((NIODeadline.now() - $0).nanoseconds) / 1e9 },
      negotiatedHoldTime: established?.negotiatedHoldTime,
      negotiatedFamilies: negotiatedFamilies.map(\.description).sorted(),
      fourOctetAS: open?.supportsFourOctetAS ?? false, routeRefresh: open?.supportsRouteRefresh ?? false,
      peerGracefulRestart: open?.gracefulRestart?.families.contains { $0.family == .l2vpnEVPN } ?? false,
      peerLongLivedStaleTime: open?.longLivedGracefulRestart?.staleTime(for: .l2vpnEVPN),
      peerRestartTime: open?.gracefulRestart?.restartTime,
      peerRestarted: open?.gracefulRestart?.restarting ?? false,
      routeTargetConstraint: usesRouteTargetConstraint,
      routesReceived: routesReceived, routesAccepted: rib.routeCount(peer: index),
      routesIgnored: routesIgnored,
      routesStale: hasStaleRoutes ? rib.staleCount(peer: index) : 0,
      routesLongLivedStale: hasStaleRoutes || receivedLongLivedStale
        ? rib.longLivedStaleCount(peer: index) : 0,
      stalePhase: hasStaleRoutes ? stalePhase : nil, routesAdvertised: routesAdvertised,
      establishedTransitions: establishedTransitions, lastError: lastError,
      md5: configuration.password != nil,
      exportVNIs: configuration.exportVNIs.map { $0.sorted() })
  }
}
