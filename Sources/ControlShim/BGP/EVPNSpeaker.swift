import Dataplane
import NIOCore
import NIOPosix
import Synchronization

/// A BGP-4 speaker for L2VPN EVPN with VXLAN (RFC 7432, RFC 8365): sessions to the
/// configured peers and to peers added at run time (`addPeer`, `removePeer`, each with
/// an export filter), the EVPN RIB, import into an `EVPNRouteSink` and export of local
/// MACs and flood-list membership.
///
/// Threading: all state lives on one event loop. Public methods may be called from any
/// thread; they queue their work on that loop in call order. The sink is called on the
/// loop thread.
// @unchecked: mutable state is touched on its event loop only (public methods hop onto
// it); what other threads read is behind mutexes (`frozenMACs`, status snapshots).
public final class EVPNSpeaker: @unchecked Sendable {
  public let configuration: SpeakerConfiguration
  let eventLoop: EventLoop
  private let ownedGroup: MultiThreadedEventLoopGroup?
  let rib: EVPNRIB
  /// The configured peers, then those added at run time (`addPeer`); removal takes
  /// them out. `configuration.peers` stays the list the speaker was created with.
  var peers: [BGPPeer] = []
  /// Names by peer index, for the RIB (which names a route's peer to the sink).
  let peerNames: PeerNames
  /// Set by `start()`: peers added from then on start at once.
  var isStarted = false
  // Replaced as a whole by `updateVNIs` (on the event loop).
  var vniSettings: [UInt32: ResolvedVNI]
  var vniByImportTarget: [RouteTarget: [UInt32]]
  var importTargets: [RouteTarget]
  var serverChannel: Channel?
  private var observers: [@Sendable (SpeakerEvent) -> Void] = []
  /// VNIs whose type-3 route we advertise.
  var advertisedMulticastVNIs: Set<UInt32> = []
  let localVTEPID: UInt32
  private var boundPort: UInt16?
  /// Set by `shutdown()`: the dataplane keeps what it was told (we announce the F bit),
  /// so closing our own sessions does not remove routes from the sink.
  var isShuttingDown = false
  /// IPs the dataplane bound to each local MAC (from local ARP), advertised as MAC/IP
  /// routes while the MAC's own local route wins and the MAC is not frozen.
  var localBindings: [DuplicateMACDetector.Key: Set<IPAddress>] = [:]
  /// The frozen MACs, readable from any thread (`show fdb`, `show arp`).
  let frozenMACs = Mutex<Set<DuplicateMAC>>([])
  /// The restarting-speaker side of graceful restart (`EVPNSpeaker+Restart.swift`).
  var restart: RestartProgress
  /// Between the RIB and the sink while a restart defers route installation.
  let deferredSink: DeferredRouteSink?

  /// - Parameters:
  ///   - sink: receives remote MACs and flood members; nil for a speaker that only exports.
  ///   - eventLoopGroup: where to run; by default the speaker owns a one-thread group.
  public init(
    configuration: SpeakerConfiguration, sink: EVPNRouteSink?, eventLoopGroup: EventLoopGroup? = nil
  ) {
    self.configuration = configuration
    if let eventLoopGroup {
      ownedGroup = nil
      eventLoop = eventLoopGroup.next()
    } else {
      let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
      ownedGroup = group
      eventLoop = group.next()
    }
    (vniSettings, vniByImportTarget, importTargets) = Self.importTables(configuration.resolvedVNIs())
    let peerNames = PeerNames()
    peerNames[0] = "local"
    for (index, peer) in configuration.peers.enumerated() { peerNames[UInt16(index + 1)] = peer.name }
    self.peerNames = peerNames
    let startInstant = NIODeadline.now()
    restart = RestartProgress(restarting: configuration.restarting)
    let loop = eventLoop
    deferredSink =
      configuration.restarting ? sink.map { DeferredRouteSink(target: $0, eventLoop: loop) } : nil
    rib = EVPNRIB(
      sink: deferredSink ?? sink, maxMoves: configuration.duplicateMACMaxMoves,
      moveWindow: configuration.duplicateMACWindow,
      peerName: { index in peerNames[index] ?? "peer\(index)" },
      clock: { Double((NIODeadline.now() - startInstant).nanoseconds) / 1e9 })
    localVTEPID = rib.vtepID(configuration.vtep)
    rib.onFreeze = { [unowned self] key, moves in self.macFroze(key, moves: moves) }
    rib.onConflict = { [unowned self] change in self.conflictChanged(change) }
    if configuration.expectedMACRoutes > 0 { rib.reserveCapacity(configuration.expectedMACRoutes) }
    peers = configuration.peers.enumerated().map { index, peer in
      BGPPeer(configuration: peer, index: UInt16(index + 1), speaker: self)
    }
  }

  /// Settings by VNI, VNIs by import RT, and every import RT.
  static func importTables(
    _ resolved: [ResolvedVNI]
  ) -> ([UInt32: ResolvedVNI], [RouteTarget: [UInt32]], [RouteTarget]) {
    let settings = Dictionary(resolved.map { ($0.vni, $0) }, uniquingKeysWith: { first, _ in first })
    var byTarget: [RouteTarget: [UInt32]] = [:]
    for vni in resolved {
      for target in vni.importRouteTargets { byTarget[target, default: []].append(vni.vni) }
    }
    let targets = Array(Set(resolved.flatMap(\.importRouteTargets))).sorted { $0.rawValue < $1.rawValue }
    return (settings, byTarget.mapValues { $0.sorted() }, targets)
  }

  // MARK: lifecycle

  /// Opens the listener (if configured) and starts every peer (those added before
  /// `start` too). The listener gets the TCP MD5 key of every peer that has one.
  public func start() async throws {
    if let address = configuration.listenAddress {
      let bootstrap = ServerBootstrap(group: eventLoop)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { [weak self] channel in
          guard let self else { return channel.eventLoop.makeSucceededVoidFuture() }
          return self.acceptIncoming(channel)
        }
      let channel = try await bootstrap.bind(host: address, port: Int(configuration.listenPort)).get()
      // Peers added from now on key the listener themselves (`addPeer`).
      let keyed = try await eventLoop.submit { () -> [PeerConfiguration] in
        self.serverChannel = channel
        self.boundPort = channel.localAddress?.port.map { UInt16($0) }
        return self.peers.map(\.configuration).filter { $0.password != nil }
      }.get()
      for peer in keyed {
        try await TCPMD5.configure(channel, peerAddress: peer.address, password: peer.password!).get()
      }
    }
    try await eventLoop.submit {
      self.isStarted = true
      self.beginRestart()
      for peer in self.peers where !self.isShuttingDown { peer.start() }
    }.get()
  }

  /// Sends Cease/administrative shutdown to every peer and closes the listener. The
  /// sink is not told to remove anything: forwarding state outlives the control plane.
  /// With `forRestart` (a daemon stopping to start again, an upgrade) the sessions are
  /// closed without a NOTIFICATION when graceful restart is announced: RFC 4724 helpers
  /// keep our routes only then (no RFC 8538 N bit here).
  public func shutdown(forRestart: Bool = false) async {
    let closed: EventLoopFuture<Void> = eventLoop.flatSubmit {
      self.isShuttingDown = true
      let silently = forRestart && self.configuration.announceGracefulRestart
      for peer in self.peers { peer.stop(notification: silently ? nil : .administrativeShutdown) }
      let server = self.serverChannel
      self.serverChannel = nil
      return server?.close() ?? self.eventLoop.makeSucceededVoidFuture()
    }
    try? await closed.get()
    // Let the NOTIFICATIONs drain before the loop goes away.
    try? await eventLoop.scheduleTask(in: .milliseconds(50)) {}.futureResult.get()
    try? await ownedGroup?.shutdownGracefully()
  }

  /// The port the listener is bound to (useful with `listenPort` 0).
  public var listeningPort: UInt16? {
    get async { try? await eventLoop.submit { self.boundPort }.get() }
  }

  /// Observers get every `SpeakerEvent` on the event-loop thread.
  public func addObserver(_ observer: @escaping @Sendable (SpeakerEvent) -> Void) {
    eventLoop.execute { self.observers.append(observer) }
  }

  func emit(_ event: SpeakerEvent) {
    for observer in observers { observer(event) }
  }

  /// Waits until every call queued before this one has run.
  public func sync() async {
    try? await eventLoop.submit {}.get()
  }

  // MARK: operations on peers

  /// Drops a peer's TCP connection without a NOTIFICATION (link failure simulation;
  /// graceful restart keeps its routes). The peer reconnects by itself.
  public func dropConnection(peer name: String) {
    eventLoop.execute { self.peer(named: name)?.dropConnection() }
  }

  /// Resets a session with Cease/administrative reset.
  public func resetPeer(_ name: String) {
    eventLoop.execute {
      self.peer(named: name)?.established?.sendNotificationAndClose(
        .administrativeReset, reason: "administrative reset")
    }
  }

  /// Asks a peer to resend its EVPN routes (RFC 2918).
  public func requestRouteRefresh(peer name: String) {
    eventLoop.execute {
      self.peer(named: name)?.established?.send(.routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN)))
    }
  }

  func peer(named name: String) -> BGPPeer? { peers.first { $0.configuration.name == name } }

  /// Names of the RIB's peer indexes (0: local); confined to the event loop.
  // @unchecked: read and written on the speaker's event loop only.
  final class PeerNames: @unchecked Sendable {
    private var names: [UInt16: String] = [:]
    subscript(index: UInt16) -> String? {
      get { names[index] }
      set { names[index] = newValue }
    }
  }

  // MARK: status

  public func status() async -> SpeakerStatus {
    (try? await eventLoop.submit { self.makeStatus() }.get())
      ?? SpeakerStatus(
        asn: configuration.asn, routerID: dottedQuad(configuration.routerID), listeningPort: nil,
        localMACRoutes: 0,
        remoteMACRoutes: 0, frozenMACs: 0, peers: [], duplicateMACs: [])
  }

  func makeStatus() -> SpeakerStatus {
    var local = 0
    var remote = 0
    for set in rib.macRoutes.values {
      if set.localIndex != nil { local += 1 }
      remote += set.count - (set.localIndex == nil ? 0 : 1)
    }
    return SpeakerStatus(
      asn: configuration.asn, routerID: dottedQuad(configuration.routerID), listeningPort: boundPort,
      localMACRoutes: local, remoteMACRoutes: remote, frozenMACs: rib.detector.frozen.count,
      peers: peers.map { $0.status(rib: rib) }, duplicateMACs: duplicateMACStatus(),
      gracefulRestart: restartStatus())
  }

  /// The status without `async`, for callers on plain threads (the control socket).
  /// Must not be called on the speaker's event loop.
  public func statusBlocking() -> SpeakerStatus? {
    try? eventLoop.submit { self.makeStatus() }.wait()
  }

  /// Bytes the type-2 table takes (hash buckets + overflow arrays), for benchmarks.
  /// Must not be called on the speaker's event loop.
  public func macTableBytesBlocking() -> Int {
    (try? eventLoop.submit { self.rib.macTableBytes }.wait()) ?? 0
  }

  /// The flood list the RIB holds for `vni` (what the sink was told).
  public func floodMembers(vni: UInt32) async -> [IPAddress] {
    (try? await eventLoop.submit { self.rib.floodMembers(vni: vni) }.get()) ?? []
  }

  /// The remote VTEP currently chosen for a MAC, nil when none or local.
  public func remoteVTEP(vni: UInt32, mac: MACAddress, ip: IPAddress? = nil) async -> IPAddress? {
    try? await eventLoop.submit { () -> IPAddress? in
      guard let best = self.rib.best(for: MACRouteKey(vni: vni, mac: mac.rawValue, ip: ip)), !best.isLocal
      else { return nil }
      return self.rib.vtep(best.vtepID)
    }.get()
  }

  // MARK: incoming connections

  private func acceptIncoming(_ channel: Channel) -> EventLoopFuture<Void> {
    let remote = channel.remoteAddress?.ipAddress ?? "?"
    let candidates = peers.filter { candidate in
      IPAddress(candidate.configuration.address).map { $0 == IPAddress(remote) } ?? false
    }
    guard !candidates.isEmpty else {
      // RFC 4271 section 8: connections from unconfigured addresses are refused.
      return channel.close()
    }
    let connection = BGPConnection(
      channel: channel, outbound: false, remoteAddress: remote, speaker: self,
      peer: candidates.count == 1 ? candidates[0] : nil)
    if candidates.count == 1 {
      guard !candidates[0].isStopped else { return channel.close() }
      candidates[0].adoptIncoming(connection)
    }
    return channel.pipeline.addHandler(BGPChannelHandler(connection: connection))
  }

  /// Picks the peer for an incoming connection whose address several peers share,
  /// by the AS in its OPEN.
  func peerForIncoming(address: String, open: OpenMessage) -> BGPPeer? {
    let matching = peers.filter {
      !$0.isStopped && IPAddress($0.configuration.address) == IPAddress(address)
        && $0.configuration.remoteAS == open.asn
    }
    return matching.first { $0.established == nil } ?? matching.first
  }
}
