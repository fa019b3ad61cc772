import Dataplane
import Dispatch
import Foundation
import NIOCore
import Synchronization

/// BGP EVPN for one switching instance: an `EVPNSpeaker` configured from the site's
/// `[bgp]`, importing into the `SwitchCore` (through `SwitchCoreRouteSink`) and exporting
/// the core's locally learnt MACs and bridge domains.
///
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
    public init() {}
  }

  public let core: SwitchCore
  public let sink: SwitchCoreRouteSink
  public let options: Options

  private struct State {
    var speaker: EVPNSpeaker
    var config: SiteConfig
    var rdNumbers: [UInt32: UInt16]
    var started = false
    var stopped = false
  }
  private let state: Mutex<State>

  /// nil when the configuration has no `[bgp]`.
  public init?(core: SwitchCore, options: Options = Options()) {
    let config = core.config
    guard config.bgp != nil else { return nil }
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
        config, options: options, rdNumbers: rdNumbers, warnings: &warnings)
    else { return nil }
    for warning in warnings { options.log("bgp: \(warning)") }
    let speaker = EVPNSpeaker(configuration: configuration, sink: sink)
    state = Mutex(State(speaker: speaker, config: config, rdNumbers: rdNumbers))
    Self.logEvents(of: speaker, options.log)
    // Registered before the speaker starts: MACs learnt meanwhile are queued in its RIB
    // and sent when sessions come up.
    core.observeLocalMACs { [weak self] event in self?.localMACChanged(event) }
    core.observeLocalARP { [weak self] event in self?.localARPChanged(event) }
  }

  static func speakerConfiguration(
    _ config: SiteConfig, options: Options, rdNumbers: [UInt32: UInt16], warnings: inout [String]
  ) -> SpeakerConfiguration? {
    guard
      var configuration = SpeakerConfiguration.site(
        config, listenAddress: options.listenAddress, rdNumbers: rdNumbers, warnings: &warnings)
    else { return nil }
    configuration.connectRetryTime = options.connectRetryTime
    configuration.connectRetryMaximum = options.connectRetryMaximum
    configuration.expectedMACRoutes = options.expectedRoutes
    return configuration
  }

  private static func logEvents(of speaker: EVPNSpeaker, _ log: @escaping @Sendable (String) -> Void) {
    let window = Int(speaker.configuration.duplicateMACWindow)
    let release =
      speaker.configuration.duplicateMACFreezeTime.map { "for \(Int($0)) s or " } ?? ""
    speaker.addObserver { event in
      switch event {
      case .established(let peer): log("bgp: session with \(peer) established")
      case .sessionDown(let peer, let reason): log("bgp: session with \(peer) down: \(reason)")
      case .staleRoutesSwept(let peer): log("bgp: stale routes of \(peer) removed")
      case .notificationReceived(let peer, let notification):
        log("bgp: NOTIFICATION from \(peer): \(notification)")
      case .macFrozen(let vni, let mac, let moves):
        log(
          "bgp: duplicate MAC \(mac) in VNI \(vni): \(moves) moves within \(window) s; frozen \(release)until "
            + "`vxswitch clear dup-mac --vni \(vni) --mac \(mac)`: its routes are withdrawn and not "
            + "advertised or imported meanwhile")
      case .macUnfrozen(let vni, let mac, let reason):
        log("bgp: duplicate MAC \(mac) in VNI \(vni) released (\(reason))")
      default: break
      }
    }
  }

  public var speaker: EVPNSpeaker { state.withLock { $0.speaker } }

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
      let (config, rdNumbers) = state.withLock { ($0.config, $0.rdNumbers) }
      guard
        var configuration = Self.speakerConfiguration(
          config, options: options, rdNumbers: rdNumbers, warnings: &warnings)
      else { throw error }
      configuration.listenAddress = nil
      let replacement = EVPNSpeaker(configuration: configuration, sink: sink)
      Self.logEvents(of: replacement, options.log)
      state.withLock { $0.speaker = replacement }
      await speaker.shutdown()
      try await replacement.start()
    }
    state.withLock { $0.started = true }
    advertiseLocalState(vnis: Set(core.config.bridgeDomains.map(\.vni)))
  }

  /// Closes every session (Cease) and the listener; the FDB keeps what it holds.
  public func shutdown() async {
    let speaker = state.withLock { state -> EVPNSpeaker? in
      guard !state.stopped else { return nil }
      state.stopped = true
      return state.speaker
    }
    await speaker?.shutdown()
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
    for row in core.fdbRows(now: 0) where row.origin == "local" && vnis.contains(row.vni) {
      if let mac = MACAddress(row.mac) { speaker.advertiseMAC(vni: row.vni, mac: mac) }
    }
    for row in core.arpRows(now: 0) where row.origin == "local" && vnis.contains(row.vni) {
      if let mac = MACAddress(row.mac), let ip = IPAddress(row.ip) {
        speaker.bindLocalIP(vni: row.vni, mac: mac, ip: ip)
      }
    }
  }

  // MARK: reload

  /// Follows a configuration the core has just reloaded: bridge domains that were
  /// added get their type-3 route and local MACs advertised, removed ones are
  /// withdrawn (the speaker forgets their routes; the core flushed their entries).
  /// Changes to `[bgp]` itself (peers, AS, router ID) need a restart and are reported.
  public func reload(_ next: SiteConfig) {
    let (speaker, previous, rdNumbers, started) = state.withLock { state in
      var numbers = state.rdNumbers
      var free = (numbers.values.max() ?? 0) &+ 1
      for domain in next.bridgeDomains where numbers[domain.vni] == nil {
        numbers[domain.vni] = free
        free &+= 1
      }
      let previous = state.config
      state.config = next
      state.rdNumbers = numbers
      return (state.speaker, previous, numbers, state.started)
    }
    if next.bgp != previous.bgp {
      options.log("bgp: [bgp] changed: restart vxswitch to apply it (bridge domain changes are applied)")
    }
    var warnings: [String] = []
    guard
      let configuration = Self.speakerConfiguration(
        next, options: options, rdNumbers: rdNumbers, warnings: &warnings)
    else { return }
    for warning in warnings { options.log("bgp: \(warning)") }
    let before = Dictionary(
      (Self.speakerConfiguration(previous, options: options, rdNumbers: rdNumbers, warnings: &warnings)?.vnis
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

  // MARK: status

  /// The speaker's sessions, routes and frozen MACs (`GET /v1/bgp`).
  public func status() -> SpeakerStatus? { speaker.statusBlocking() }

  /// Lifts duplicate-MAC freezes (nil: any VNI / any MAC); returns the MACs released.
  public func clearDuplicateMACs(vni: UInt32? = nil, mac: MACAddress? = nil) -> [DuplicateMAC] {
    speaker.clearDuplicateMACsBlocking(vni: vni, mac: mac)
  }
}
