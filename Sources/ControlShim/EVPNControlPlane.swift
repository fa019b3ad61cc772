import Dataplane
import Dispatch
import Foundation
import NIOCore
import Synchronization

/// BGP EVPN for one switching instance: an `EVPNSpeaker` configured from the site's
/// `[bgp]` (or, for a site without `[bgp]`, from `PeeringDefaults`), importing into the
/// `SwitchCore` (through `SwitchCoreRouteSink`) and exporting the core's locally learnt
/// MACs and bridge domains.
///
/// - Peers: those of `[bgp]`, plus peers added and removed at run time (`addPeer`,
///   `removePeer`, `updatePeer`: inter-site sessions brought up on demand), each with
///   an export filter (`PeerConfiguration.exportVNIs`, `setExportVNIs`).
/// - Import: best type-2 routes -> FDB entries of origin control behind the route's next
///   hop; withdrawals remove them; type-3 routes with ingress replication -> flood lists.
/// - Export: `SwitchCore.observeLocalMACs` -> `advertiseMAC` on `.learned` (the speaker
///   picks the MAC-mobility sequence: the highest one seen from peers + 1 when the MAC
///   was remote, RFC 7432 section 15) and `withdrawMAC` on `.removed`;
///   `SwitchCore.observeLocalARP` -> `bindLocalIP` / `unbindLocalIP`: IPv4 bindings learnt
///   from local ARP go out as MAC/IP routes next to their MAC's route; a type-3 route for
///   every bridge domain.
/// - Duplicate MACs (RFC 7432 section 15.1): a MAC frozen by the speaker is logged, its
///   routes withdrawn; `DELETE /v1/duplicate-macs` (or `dup_mac_freeze`)
///   releases it.
/// - Failure isolation: the dataplane never waits for the control plane. A session that
///   goes down leaves its routes installed as stale for `stale_time`; `shutdown()`
///   leaves the FDB as it is.
///
/// Threading: every method may be called from any thread except the speaker's loop.
// @unchecked: its own state is immutable after init or behind mutexes; it calls the
// core and the speaker, each thread-safe by its own contract.
public final class EVPNControlPlane: @unchecked Sendable {
  public struct Options: Sendable {
    /// Where the listener binds; default: the wildcard address of the VTEP's family.
    public var listenAddress: String?
    /// First reconnect delay (doubles up to `connectRetryMaximum`).
    public var connectRetryTime: Double = 1
    public var connectRetryMaximum: Double = 30
    /// Size hint for the speaker's and the sink's tables.
    public var expectedRoutes: Int = 0
    /// Session events and warnings.
    public var log: @Sendable (String) -> Void = { _ in }
    /// Session and duplicate-MAC events with their keys (peer, vni, mac, reason) apart, for
    /// structured logs; nil sends them to `log` as text.
    public var event: (@Sendable (String, [String: String]) -> Void)? = nil
    /// This start is a graceful restart (`SpeakerConfiguration.restarting`): the daemon
    /// found its restart record within the restart time and restored the local MACs.
    public var restarting = false
    /// The F bit (`SpeakerConfiguration.forwardingStatePreserved`).
    public var forwardingStatePreserved = true
    public var selectionDeferralTime: Double = 60
    public init() {}
  }

  /// The speaker of a site without `[bgp]` (one that extends networks to other sites,
  /// `[peering]`): no configured peers, peers added at run time, and no VNI exported to
  /// a peer unless its `exportVNIs` names it. Route distinguishers and route targets
  /// per bridge domain as with `[bgp]` (`rd`, `import_rt`, `export_rt`; defaults
  /// `router_id:N` and `(asn & 0xFFFF):VNI`, so 64512:VNI).
  public struct PeeringDefaults: Sendable, Equatable {
    /// The first private AS number (RFC 6996); every such site is in it, so the
    /// sessions between sites are iBGP and the default route targets agree.
    public static let defaultASN: UInt32 = 64512
    public var asn: UInt32 = Self.defaultASN
    /// BGP identifier; nil: the VTEP address when IPv4, else a hash of it
    /// (`routerID(forVTEP:)`).
    public var routerID: UInt32? = nil
    /// TCP port listened on (on `Options.listenAddress`, default the wildcard address
    /// of the VTEP's family); 0 picks a free port (`EVPNControlPlane.listeningPort`).
    public var listenPort: UInt16 = 179
    /// How long a lost session's routes stay installed when the peer's stale-route
    /// policy keeps them (the `[bgp]` `stale_time`).
    public var staleTime: Int = 300
    /// The long-lived phase after it (RFC 9494, the `[bgp]` `long_lived_stale_time`).
    public var longLivedStaleTime: Int = SiteConfig.defaultLongLivedStaleTime
    /// The restart time announced (the `[bgp]` `restart_time`).
    public var restartTime: Int = SiteConfig.defaultRestartTime
    /// Hold time offered on the sessions with members (`[peering] hold_time`).
    public var holdTime: UInt16 = 90
    public init() {}

    /// The VTEP address when IPv4; for IPv6, its 16 bytes hashed into 32 bits (FNV-1a,
    /// so the same on every run; never 0, which is not a valid BGP identifier).
    public static func routerID(forVTEP vtep: IPAddress) -> UInt32 {
      if case .v4(let address) = vtep { return address }
      var hash: UInt32 = 0x811C_9DC5
      for byte in vtep.bytes {
        hash ^= UInt32(byte)
        hash = hash &* 0x0100_0193
      }
      return hash == 0 ? 1 : hash
    }

    /// The `[bgp]` section these defaults stand for at a site.
    func bgp(vtep: IPAddress) -> SiteConfig.BGP {
      var bgp = SiteConfig.BGP(asn: asn, routerID: .v4(routerID ?? Self.routerID(forVTEP: vtep)))
      bgp.listenPort = listenPort
      bgp.staleTime = staleTime
      bgp.longLivedStaleTime = longLivedStaleTime
      bgp.restartTime = restartTime
      return bgp
    }
  }

  public let core: SwitchCore
  public let sink: SwitchCoreRouteSink
  public let options: Options

  private struct State {
    var speaker: EVPNSpeaker
    var config: SiteConfig
    var rdNumbers: [UInt32: UInt16]
    /// Used when the site has no `[bgp]`; nil: such a site has no speaker.
    var defaults: PeeringDefaults?
    /// Peers added at run time, by name (also given to a replacement speaker).
    var addedPeers: [String: PeerConfiguration] = [:]
    /// The VNIs of the extended networks (`setExtendedVNIs`): the export filter of the
    /// configured peers of a site with `[peering]`.
    var extendedVNIs: Set<UInt32> = []
    var started = false
    var stopped = false
  }
  private let state: Mutex<State>

  /// nil when the configuration has no `[bgp]`.
  public convenience init?(core: SwitchCore, options: Options = Options()) {
    self.init(core: core, options: options, defaults: nil)
  }

  /// With `[bgp]`, as `init(core:options:)`; without it, a speaker built from
  /// `defaults` (AS 64512, router ID from the VTEP, port 179, no peers, nothing exported
  /// unless a peer's `exportVNIs` names it). nil when neither applies.
  public init?(core: SwitchCore, options: Options = Options(), defaults: PeeringDefaults?) {
    let config = core.config
    guard config.bgp != nil || defaults != nil else { return nil }
    self.core = core
    self.options = options
    sink = SwitchCoreRouteSink(core: core, expectedRoutes: options.expectedRoutes)
    var rdNumbers: [UInt32: UInt16] = [:]
    for (position, domain) in config.bridgeDomains.enumerated() {
      rdNumbers[domain.vni] = UInt16(truncatingIfNeeded: position + 1)
    }
    var warnings: [String] = []
    guard
      let configuration = Self.speakerConfiguration(
        config, options: options, defaults: defaults, rdNumbers: rdNumbers, warnings: &warnings)
    else { return nil }
    for warning in warnings { options.log("bgp: \(warning)") }
    let speaker = EVPNSpeaker(configuration: configuration, sink: sink)
    state = Mutex(State(speaker: speaker, config: config, rdNumbers: rdNumbers, defaults: defaults))
    Self.logEvents(of: speaker, options)
    // Registered before the speaker starts: MACs learnt meanwhile are queued in its RIB
    // and sent when sessions come up.
    core.observeLocalMACs { [weak self] event in self?.localMACChanged(event) }
    core.observeLocalARP { [weak self] event in self?.localARPChanged(event) }
  }

  /// With `[peering]`, the configured peers (`[[bgp.peer]]`, route reflectors) export only
  /// `extendedVNIs` and import only into them (`PeerConfiguration.importOnlyExported`), RT
  /// constraint (RFC 4684) is offered to them, and their connections start from the VTEP;
  /// without `[peering]` they export and import every VNI, as before.
  static func speakerConfiguration(
    _ config: SiteConfig, options: Options, defaults: PeeringDefaults?, rdNumbers: [UInt32: UInt16],
    extendedVNIs: Set<UInt32> = [], warnings: inout [String]
  ) -> SpeakerConfiguration? {
    var site = config
    let peering = site.bgp == nil
    if peering {
      guard let defaults else { return nil }
      site.bgp = defaults.bgp(vtep: site.site.vtep)
    }
    guard
      var configuration = SpeakerConfiguration.site(
        site, listenAddress: options.listenAddress, rdNumbers: rdNumbers, warnings: &warnings)
    else { return nil }
    if peering, let defaults {
      // Always listening (port 0: any free port): the other sites connect on demand.
      configuration.listenAddress = options.listenAddress ?? (site.site.vtep.isIPv4 ? "0.0.0.0" : "::")
      configuration.listenPort = defaults.listenPort
      configuration.holdTime = defaults.holdTime
      configuration.exportWithoutFilter = false
    }
    if config.peering != nil {
      for index in configuration.peers.indices {
        configuration.peers[index].exportVNIs = extendedVNIs
        configuration.peers[index].importOnlyExported = true
        configuration.peers[index].routeTargetConstraint = true
        // Sessions start from the VTEP, as the sessions with members do: the route
        // reflector knows the site by it.
        configuration.peers[index].localAddress = "\(config.site.vtep)"
      }
    }
    configuration.connectRetryTime = options.connectRetryTime
    configuration.connectRetryMaximum = options.connectRetryMaximum
    configuration.expectedMACRoutes = options.expectedRoutes
    configuration.restarting = options.restarting
    configuration.forwardingStatePreserved = options.forwardingStatePreserved
    configuration.selectionDeferralTime = options.selectionDeferralTime
    return configuration
  }

  private static func logEvents(of speaker: EVPNSpeaker, _ options: Options) {
    let window = Int(speaker.configuration.duplicateMACWindow)
    let release =
      speaker.configuration.duplicateMACFreezeTime.map { "for \(Int($0)) s or " } ?? ""
    let log = options.log
    let emit: @Sendable (String, [String: String]) -> Void = options.event ?? { message, _ in log(message) }
    speaker.addObserver { event in
      switch event {
      case .established(let peer): emit("bgp: session with \(peer) established", ["peer": peer])
      case .sessionDown(let peer, let reason):
        emit("bgp: session with \(peer) down: \(reason)", ["peer": peer, "reason": reason])
      case .staleRoutesSwept(let peer): emit("bgp: stale routes of \(peer) removed", ["peer": peer])
      case .restarting(let deferral):
        emit(
          "bgp: graceful restart (RFC 4724): Restart State announced; End-of-RIB after the restored local "
            + "routes; received routes installed at the peers' End-of-RIB or after \(Int(deferral)) s",
          ["selection_deferral": "\(Int(deferral))"])
      case .selectionDeferralEnded(let reason, let changes):
        emit(
          "bgp: graceful restart: received routes installed (\(reason.rawValue), \(changes) changes held)",
          ["reason": reason.rawValue, "changes": "\(changes)"])
      case .restartFinished: emit("bgp: graceful restart finished: Restart State no longer announced", [:])
      case .peerRestarted(let peer, let preserved, let stale):
        emit(
          preserved
            ? "bgp: \(peer) restarted (graceful restart, forwarding state kept): \(stale) stale routes kept "
              + "until its End-of-RIB"
            : "bgp: \(peer) restarted without forwarding state for EVPN: its \(stale) stale routes removed",
          ["peer": peer, "forwarding_preserved": "\(preserved)", "routes": "\(stale)"])
      case .longLivedStale(let peer, let routes):
        emit(
          "bgp: routes of \(peer) long-lived stale (RFC 9494): \(routes) kept, least preferred, still forwarding",
          ["peer": peer, "routes": "\(routes)"])
      case .notificationReceived(let peer, let notification):
        emit(
          "bgp: NOTIFICATION from \(peer): \(notification)",
          ["peer": peer, "notification": "\(notification)"])
      case .macFrozen(let vni, let mac, let moves):
        emit(
          "bgp: duplicate MAC \(mac) in VNI \(vni): \(moves) moves within \(window) s; frozen \(release)until "
            + "`vxswitch clear dup-mac --vni \(vni) --mac \(mac)`: its routes are withdrawn and not "
            + "advertised or imported meanwhile", ["vni": "\(vni)", "mac": "\(mac)", "moves": "\(moves)"])
      case .macUnfrozen(let vni, let mac, let reason):
        emit(
          "bgp: duplicate MAC \(mac) in VNI \(vni) released (\(reason))",
          ["vni": "\(vni)", "mac": "\(mac)", "reason": reason])
      case .conflictStarted(let conflict):
        emit("bgp: address conflict started: \(Self.describe(conflict))", Self.metadata(conflict))
      case .conflictCleared(let conflict, let reason):
        var metadata = Self.metadata(conflict)
        metadata["reason"] = reason
        emit("bgp: address conflict cleared: \(conflict.subject) (\(reason))", metadata)
      default: break
      }
    }
  }

  public var speaker: EVPNSpeaker { state.withLock { $0.speaker } }

  /// "IP 192.168.1.5 in VNI 100 claimed by 02:..:01 (10.0.0.1, sequence 0, local) and
  /// 02:..:02 (10.0.0.2, sequence 0, site-b); the rule keeps 02:..:01 (lower_vtep);
  /// outcome arp_suppression_off".
  static func describe(_ conflict: AddressConflict) -> String {
    let claims = conflict.claims.map { "\($0.mac) (\($0.vtep), sequence \($0.sequence), \($0.peer))" }
    let winner = conflict.winner.map { conflict.kind == .ip ? $0.mac : $0.vtep } ?? "?"
    return "\(conflict.subject) claimed by \(claims.joined(separator: " and ")); the rule keeps \(winner) "
      + "(\(conflict.rule.rawValue)); outcome \(conflict.outcome)"
  }

  /// Log metadata of a conflict: kind, vni, ip or mac, the winner's MAC and VTEP, the
  /// peers involved, the rule's step and this site's outcome.
  static func metadata(_ conflict: AddressConflict) -> [String: String] {
    var metadata = [
      "kind": conflict.kind.rawValue, "vni": "\(conflict.vni)", "rule": conflict.rule.rawValue,
      "outcome": conflict.outcome,
      "peer": conflict.claims.map(\.peer).joined(separator: ","),
    ]
    if let ip = conflict.ip { metadata["ip"] = ip }
    metadata["mac"] = conflict.mac ?? conflict.claims.map(\.mac).joined(separator: ",")
    if let winner = conflict.winner {
      metadata["winner_mac"] = winner.mac
      metadata["winner_vtep"] = winner.vtep
    }
    return metadata
  }

  /// The speaker's AS number (`[bgp] asn`, or the peering default).
  public var localAS: UInt32 { speaker.configuration.asn }

  // MARK: lifecycle

  /// Starts the sessions and advertises a type-3 route per bridge domain plus the local
  /// MACs already in the FDB. When the listener cannot bind, the error is logged and the
  /// active peers are started anyway (passive ones then cannot come up).
  public func start() async throws {
    let speaker = self.speaker
    do {
      try await speaker.start()
    } catch {
      options.log("bgp: cannot listen (\(error)); connecting to active peers only")
      var warnings: [String] = []
      let (config, rdNumbers, defaults, added, extended) = state.withLock {
        ($0.config, $0.rdNumbers, $0.defaults, $0.addedPeers, $0.extendedVNIs)
      }
      guard
        var configuration = Self.speakerConfiguration(
          config, options: options, defaults: defaults, rdNumbers: rdNumbers, extendedVNIs: extended,
          warnings: &warnings)
      else { throw error }
      configuration.listenAddress = nil
      // Peers added before start come along, as configured peers of the replacement.
      configuration.peers += added.values.sorted { $0.name < $1.name }
      let replacement = EVPNSpeaker(configuration: configuration, sink: sink)
      Self.logEvents(of: replacement, options)
      state.withLock { $0.speaker = replacement }
      await speaker.shutdown()
      try await replacement.start()
    }
    state.withLock { $0.started = true }
    advertiseLocalState(vnis: Set(core.config.bridgeDomains.map(\.vni)))
    // Queued after those routes on the speaker's loop: End-of-RIB follows them.
    self.speaker.localStateRestored()
  }

  /// Closes every session (Cease; none with `forRestart`, see `EVPNSpeaker.shutdown`)
  /// and the listener; the FDB keeps what it holds.
  public func shutdown(forRestart: Bool = false) async {
    let speaker = state.withLock { state -> EVPNSpeaker? in
      guard !state.stopped else { return nil }
      state.stopped = true
      return state.speaker
    }
    await speaker?.shutdown(forRestart: forRestart)
  }

  /// Synchronous `start` for daemons without an async context.
  public func startBlocking() throws {
    let result = Mutex<Result<Void, Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
      do {
        try await start()
        result.withLock { $0 = .success(()) }
      } catch {
        result.withLock { $0 = .failure(error) }
      }
      done.signal()
    }
    done.wait()
    try result.withLock { $0 }!.get()
  }

  public func shutdownBlocking() {
    let done = DispatchSemaphore(value: 0)
    Task {
      await shutdown()
      done.signal()
    }
    done.wait()
  }

  // MARK: export

  private func localMACChanged(_ event: SwitchCore.LocalMACEvent) {
    let speaker = self.speaker
    switch event {
    case .learned(let vni, let mac, _):
      speaker.advertiseMAC(vni: vni, mac: mac)
    case .removed(let vni, let mac):
      speaker.withdrawMAC(vni: vni, mac: mac)
    }
  }

  private func localARPChanged(_ event: SwitchCore.LocalARPEvent) {
    switch event {
    case .bound(let vni, let ip, let mac): speaker.bindLocalIP(vni: vni, mac: mac, ip: ip)
    case .unbound(let vni, let ip, let mac): speaker.unbindLocalIP(vni: vni, mac: mac, ip: ip)
    }
  }

  /// Type-3 routes for `vnis` and the local MACs the FDB holds in them.
  private func advertiseLocalState(vnis: Set<UInt32>) {
    guard !vnis.isEmpty else { return }
    let speaker = self.speaker
    for vni in vnis.sorted() { speaker.advertiseInclusiveMulticast(vni: vni) }
    for local in core.localMACs(in: vnis) { speaker.advertiseMAC(vni: local.vni, mac: local.mac) }
    for binding in core.localBindings(in: vnis) {
      speaker.bindLocalIP(vni: binding.vni, mac: binding.mac, ip: binding.ip)
    }
  }

  // MARK: reload

  /// Follows a configuration the core has just reloaded: bridge domains that were
  /// added get their type-3 route and local MACs advertised, removed ones are
  /// withdrawn (the speaker forgets their routes; the core flushed their entries).
  /// A bridge domain whose RD or route targets changed is withdrawn under the old ones
  /// and advertised under the new ones; for added and changed ones the peers are asked
  /// for their routes again (ROUTE-REFRESH, and RT-constraint memberships), so routes
  /// already received under the new import RTs are imported. Peers' export filters
  /// apply throughout. Changes to `[bgp]` itself (peers, AS, router ID) need a restart
  /// and are reported; peers added at run time stay.
  public func reload(_ next: SiteConfig) {
    let (speaker, previous, rdNumbers, started, defaults) = state.withLock { state in
      var numbers = state.rdNumbers
      var free = (numbers.values.max() ?? 0) &+ 1
      for domain in next.bridgeDomains where numbers[domain.vni] == nil {
        numbers[domain.vni] = free
        free &+= 1
      }
      let previous = state.config
      state.config = next
      state.rdNumbers = numbers
      return (state.speaker, previous, numbers, state.started, state.defaults)
    }
    if next.bgp != previous.bgp {
      options.log("bgp: [bgp] changed: restart vxswitch to apply it (bridge domain changes are applied)")
    }
    var warnings: [String] = []
    guard
      let configuration = Self.speakerConfiguration(
        next, options: options, defaults: defaults, rdNumbers: rdNumbers, warnings: &warnings)
    else { return }
    for warning in warnings { options.log("bgp: \(warning)") }
    let before = Dictionary(
      (Self.speakerConfiguration(
        previous, options: options, defaults: defaults, rdNumbers: rdNumbers, warnings: &warnings)?.vnis
        ?? []).map {
          ($0.vni, $0)
        }, uniquingKeysWith: { a, _ in a })
    let changed = Set(configuration.vnis.filter { before[$0.vni] != $0 }.map(\.vni))
    let removed = Set(before.keys).subtracting(configuration.vnis.map(\.vni))
    sink.forget(vnis: removed)
    speaker.updateVNIs(configuration.vnis)
    if started { advertiseLocalState(vnis: changed) }
    if !changed.isEmpty || !removed.isEmpty {
      options.log("bgp: VNIs added or changed \(changed.sorted()), removed \(removed.sorted())")
    }
  }

  // MARK: peers

  /// Adds a peer to the running speaker (or to the one `start()` starts): see
  /// `EVPNSpeaker.addPeer`. Throws `PeerChangeError`.
  public func addPeer(_ peer: PeerConfiguration) async throws { try await addPeerFuture(peer).get() }

  /// Removes a peer (Cease; its routes leave the FDB at once): see `EVPNSpeaker.removePeer`.
  public func removePeer(name: String) async throws { try await removePeerFuture(name: name).get() }

  /// Replaces a peer's configuration (same name): see `EVPNSpeaker.updatePeer`.
  public func updatePeer(_ peer: PeerConfiguration) async throws { try await updatePeerFuture(peer).get() }

  /// Changes a peer's export filter: see `EVPNSpeaker.setExportVNIs`.
  public func setExportVNIs(peer name: String, _ vnis: Set<UInt32>?) async throws {
    try await setExportVNIsFuture(peer: name, vnis).get()
  }

  /// The VNIs of the networks this site extends (shares with at least one other member):
  /// with `[peering]`, the export and import filter of every configured peer (`[[bgp.peer]]`,
  /// route reflectors), which are sent those networks' routes only, under their negotiated
  /// route targets, and asked (RT constraint) for those route targets only. Without
  /// `[peering]` nothing changes (configured peers get every VNI). Extension managers call it
  /// whenever the set changes.
  public func setExtendedVNIs(_ vnis: Set<UInt32>) async throws {
    let (speaker, peers) = try state.withLock { state -> (EVPNSpeaker, [String]) in
      guard !state.stopped else { throw PeerChangeError.shuttingDown }
      state.extendedVNIs = vnis
      let names = state.speaker.configuration.peers.filter(\.importOnlyExported).map(\.name)
      return (state.speaker, names)
    }
    for peer in peers { try await speaker.setExportVNIsFuture(peer: peer, vnis).get() }
  }

  /// What `setExtendedVNIs` last set.
  public var extendedVNIs: Set<UInt32> { state.withLock { $0.extendedVNIs } }

  /// `addPeer` for callers on plain threads; must not be called on the speaker's loop.
  public func addPeerBlocking(_ peer: PeerConfiguration) throws { try addPeerFuture(peer).wait() }

  public func removePeerBlocking(name: String) throws { try removePeerFuture(name: name).wait() }

  public func updatePeerBlocking(_ peer: PeerConfiguration) throws { try updatePeerFuture(peer).wait() }

  public func setExportVNIsBlocking(peer name: String, _ vnis: Set<UInt32>?) throws {
    try setExportVNIsFuture(peer: name, vnis).wait()
  }

  /// The port the speaker listens on (with `PeeringDefaults.listenPort` 0, the one chosen).
  public var listeningPort: UInt16? {
    get async { await speaker.listeningPort }
  }

  /// The running speaker, or nil (an error) once shut down: its event loop is gone.
  private func liveSpeaker() throws -> EVPNSpeaker {
    try state.withLock { state in
      guard !state.stopped else { throw PeerChangeError.shuttingDown }
      return state.speaker
    }
  }

  private func addPeerFuture(_ peer: PeerConfiguration) throws -> EventLoopFuture<Void> {
    try liveSpeaker().addPeerFuture(peer).map { self.state.withLock { $0.addedPeers[peer.name] = peer } }
  }

  private func removePeerFuture(name: String) throws -> EventLoopFuture<Void> {
    try liveSpeaker().removePeerFuture(name: name).map { self.state.withLock { $0.addedPeers[name] = nil } }
  }

  private func updatePeerFuture(_ peer: PeerConfiguration) throws -> EventLoopFuture<Void> {
    try liveSpeaker().updatePeerFuture(peer).map {
      self.state.withLock { state in
        if state.addedPeers[peer.name] != nil { state.addedPeers[peer.name] = peer }
      }
    }
  }

  private func setExportVNIsFuture(peer name: String, _ vnis: Set<UInt32>?) throws -> EventLoopFuture<Void> {
    try liveSpeaker().setExportVNIsFuture(peer: name, vnis).map {
      self.state.withLock { $0.addedPeers[name]?.exportVNIs = vnis }
    }
  }

  // MARK: status

  /// The speaker's sessions, routes and frozen MACs (`GET /v1/bgp`).
  public func status() -> SpeakerStatus? { speaker.statusBlocking() }

  /// Address conflicts now and started since start (`GET /v1/conflicts`, metrics).
  public func conflicts() -> ConflictReport { speaker.conflictReportBlocking() }

  /// Lifts duplicate-MAC freezes (nil: any VNI / any MAC); returns the MACs released.
  public func clearDuplicateMACs(vni: UInt32? = nil, mac: MACAddress? = nil) -> [DuplicateMAC] {
    speaker.clearDuplicateMACsBlocking(vni: vni, mac: mac)
  }
}
