import API
import ArgumentParser
import ControlShim
import Dataplane
import Foundation
import Logging
import Management
import Peering
import ServiceLifecycle
import UnixSignals

struct RunCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "The per-site forwarding daemon.",
    discussion: """
      Attaches to the configured interfaces (AF_PACKET rings), forwards until SIGTERM or SIGINT \
      (graceful: the local MACs are saved for the next start, BGP sessions close without a \
      NOTIFICATION so that peers keep the routes through graceful restart, workers drain, the \
      control socket is removed), reloads \
      the configuration on SIGHUP or `POST /v1/reload` (bridge domains that did not change keep \
      forwarding and keep their MACs), and serves the HTTP API on the control socket (and on \
      TCP with [api] listen).
      """)

  @Option(help: "The site's TOML configuration file.") var config: String
  @Option(help: "trace, debug, info, notice, warning, error or critical (default: [site] log_level).")
  var logLevel: String?

  func validate() throws {
    if let logLevel, Logger.Level(configName: logLevel) == nil {
      throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
    }
  }

  func run() async throws {
    let site = try loadConfigOrExit(config)
    let level =
      logLevel.flatMap(Logger.Level.init(configName:)) ?? Logger.Level(
        configName: site.site.logLevel.rawValue) ?? .info
    LoggingSystem.bootstrap { label in LineLogHandler(label: label, level: level) }
    var logger = Logger(label: "vxswitch")
    logger[metadataKey: "site"] = "\(site.site.name)"
    guard geteuid() == 0 else {
      printError("vxswitch run: needs root (CAP_NET_RAW and CAP_NET_ADMIN for AF_PACKET rings and netlink)")
      throw ExitCode(1)
    }
    var token: [UInt8]?
    if let api = site.api {
      do {
        token = try APITokenFile.read(api.tokenFile)
      } catch {
        printError("vxswitch run: \(error)")
        throw ExitCode(1)
      }
    }
    let core = SwitchCore(config: site)
    // Created before the dataplane starts so that no locally learnt MAC is missed; its
    // sessions start after it (a peer down never touches local switching).
    let events = RateLimitedLog(logger: logger)
    var options = EVPNControlPlane.Options()
    options.log = { message in events.log(.info, key: RateLimitedLog.eventKey(message), message) }
    options.event = { message, metadata in
      events.log(
        .info, key: RateLimitedLog.eventKey(message), message,
        metadata: metadata.mapValues { Logger.MetadataValue.string($0) })
    }
    // A start within the restart time of the last run's end is a graceful restart: the
    // speaker says so (R bit) and the local MACs come back before it starts.
    let restartFile = RestartRecordFile(stateFile: site.site.stateFile, site: site.site.name, logger: logger)
    let previous = site.bgp != nil || site.peering != nil ? restartFile.load() : .none
    if case .restart = previous { options.restarting = true }
    if case .unusable = previous { options.forwardingStatePreserved = false }
    if let deferral = site.bgp?.selectionDeferralTime ?? site.peering?.selectionDeferralTime {
      options.selectionDeferralTime = Double(deferral)
    }
    // With [bgp] the speaker follows it; a [peering] site without [bgp] runs it with the
    // peering defaults (private AS, router ID = VTEP, no peers until extensions need them).
    var controlPlane: EVPNControlPlane?
    if site.bgp != nil {
      controlPlane = EVPNControlPlane(core: core, options: options)
    } else if site.peering != nil {
      options.listenAddress = "\(site.site.vtep)"
      var defaults = EVPNControlPlane.PeeringDefaults()
      if let peering = site.peering {
        defaults.staleTime = peering.staleTime
        defaults.longLivedStaleTime = peering.longLivedStaleTime
        defaults.restartTime = peering.restartTime
        defaults.holdTime = UInt16(clamping: peering.holdTime)
      }
      controlPlane = EVPNControlPlane(core: core, options: options, defaults: defaults)
    }
    // The runtime state (API networks, static MACs, flood entries, extensions) comes back
    // before anything forwards; a state file that cannot be used stops start-up untouched.
    let state: StateStore
    do {
      state = try StateStore(path: site.site.stateFile, site: site.site.name, logger: logger)
    } catch {
      printError("vxswitch run: state file \(error)")
      throw ExitCode(1)
    }
    var liveOptions = LiveSwitch.Options()
    // A diagnostic switch (Bench tcp compares with and without): no TCP coalescing, and
    // the transmit rings and offload settings as before it.
    switch ProcessInfo.processInfo.environment["VXSWITCH_TCP_COALESCING"] {
    case "off": liveOptions.coalesceTCP = false
    // One flow at a time, as before several were (`Bench tcp --system vxswitch-single-flow`).
    case "single-flow": liveOptions.coalescedFlows = 1
    default: break
    }
    // Likewise (`Bench tcp --system vxswitch-nogso`): one datagram per underlay frame.
    switch ProcessInfo.processInfo.environment["VXSWITCH_UNDERLAY_GSO"] {
    case "off": liveOptions.underlaySegmentation = false
    // Datagrams joined by copy (`Bench tcp --system vxswitch-gso-copy`).
    case "copy": liveOptions.underlayJoinsInPlace = false
    default: break
    }
    // Likewise (`Bench tcp --system vxswitch-deferred-payloads`): segments' payloads
    // left in the super-frame until the pipeline copies them.
    if ProcessInfo.processInfo.environment["VXSWITCH_SEGMENT_PAYLOADS"] == "defer" {
      liveOptions.deferSegmentPayloads = true
    }
    // Likewise (`Bench tcp --system vxswitch-stack`): VXLAN datagrams climb the host's
    // stack to the port holder as well, as before `UnderlayStackBypass`.
    if ProcessInfo.processInfo.environment["VXSWITCH_UNDERLAY_STACK_BYPASS"] == "off" {
      liveOptions.bypassStackForVXLAN = false
    }
    // Super-frames to the underlay through a tap with UDP-tunnel GSO, cut by the kernel.
    switch ProcessInfo.processInfo.environment["VXSWITCH_UNDERLAY_TUNNEL_GSO"] {
    case "on": liveOptions.underlayTunnelSegmentation = true
    case "off": liveOptions.underlayTunnelSegmentation = false
    default: break
    }
    // Super-frames toward VMs through a tap redirected to their ports.
    if ProcessInfo.processInfo.environment["VXSWITCH_VM_TAPS"] == "off" { liveOptions.vmTaps = false }
    // AF_XDP ports copy every frame into a transmit slot instead of sending it in place.
    if ProcessInfo.processInfo.environment["VXSWITCH_XDP_IN_PLACE"] == "off" {
      liveOptions.xdpSendsInPlace = false
    }
    // Experimental: UDP GRO on the VXLAN port (needs GRO on the underlay device).
    if ProcessInfo.processInfo.environment["VXSWITCH_UNDERLAY_GRO"] == "on" {
      liveOptions.underlayReceiveOffload = true
    }
    let live = LiveSwitch(core: core, options: liveOptions)
    let service = SiteService(
      core: core, controlPlane: controlPlane, live: live, configPath: config, clock: { live.now },
      logger: logger, state: state)
    service.restoreRuntimeState()
    // After the runtime state: networks added through the API are bridge domains again.
    if controlPlane != nil {
      Self.restoreLocalState(previous, core: core, now: live.now, logger: logger)
    }
    do {
      try live.start()
    } catch {
      printError("vxswitch run: \(error)")
      throw ExitCode(1)
    }
    for warning in live.warnings { logger.warning("\(warning)") }
    if live.bypassesStackForVXLAN {
      logger.info(
        "underlay \(site.site.underlay): VXLAN datagrams end at tc ingress once the switch has them (tcx)")
    }
    var services: [any Service] = [
      SwitchService(
        live: live, controlPlane: controlPlane, restartRecord: controlPlane == nil ? nil : restartFile,
        logger: logger)
    ]
    var extensions: ExtensionManager?
    var channel: SiteChannel?
    if site.peering != nil {
      do {
        let siteChannel = try SiteChannel(config: site, logger: logger)
        let manager = ExtensionManager(
          service: service, channel: HTTPPeerChannel(channel: siteChannel), logger: logger)
        services.append(
          try siteChannel.makeServer(
            router: PeerRoutes.makeRouter(manager: manager), logger: Self.quiet(logger)))
        (channel, extensions) = (siteChannel, manager)
      } catch {
        live.stop()
        printError("vxswitch run: [peering]: \(error)")
        throw ExitCode(1)
      }
    }
    let apiLimiter = site.api.flatMap { api in
      api.rateLimit > 0
        ? RequestRateLimiter(rate: Double(api.rateLimit), burst: Double(2 * api.rateLimit)) : nil
    }
    var rateLimiters: [MetricsExporter.RateLimitedListener: RequestRateLimiter] = [:]
    rateLimiters[.api] = apiLimiter
    rateLimiters[.peering] = channel?.requestLimiter
    let router = APIRouter(
      service: service, metrics: MetricsExporter(service: service, rateLimiters: rateLimiters),
      extensions: extensions)
    do {
      services.append(
        try APIServer.unixSocket(path: site.site.controlSocket, router: router, logger: Self.quiet(logger)))
    } catch {
      live.stop()
      printError("vxswitch run: \(error)")
      throw ExitCode(1)
    }
    if let api = site.api, let token {
      let host = "\(api.listenHost)"
      let apiLogger = logger
      services.append(
        APIServer.tcp(
          host: host, port: Int(api.listenPort), token: token, router: router, logger: Self.quiet(logger),
          limiter: apiLimiter,
          onRunning: { port in
            apiLogger.info("API listening", metadata: ["address": "\(host)", "port": "\(port)"])
          }))
    }
    services.append(HangupReloadService(service: service))
    if let controlPlane {
      do {
        try await controlPlane.start()
        let port = await controlPlane.listeningPort.map { "\($0)" } ?? "-"
        logger.info(
          "bgp speaker started",
          metadata: [
            "asn": "\(controlPlane.localAS)", "peers": "\(site.bgp?.peers.count ?? 0)",
            "port": "\(port)",
          ])
      } catch {
        logger.error(
          "bgp speaker not started; switching continues without EVPN", metadata: ["error": "\(error)"])
      }
    }
    await extensions?.resume()
    let ports = core.interfaces.map { $0 == site.site.underlay ? "\($0) (underlay)" : $0 }
    logger.info(
      "site started",
      metadata: [
        "vtep": "\(site.site.vtep)", "udp_port": "\(site.site.udpPort)",
        "ports": "\(ports.joined(separator: ", "))",
        "workers": "\(site.site.workers)", "bridge_domains": "\(site.bridgeDomains.count)",
        "control_socket": "\(site.site.controlSocket)", "state_file": "\(state.path)",
      ])
    let group = ServiceGroup(
      configuration: .init(
        services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
        logger: Self.quiet(logger)))
    try await group.run()
    await extensions?.stop()
    await channel?.shutdown()
    logger.info("stopped")
  }

  /// Puts the local MACs and bindings of the last run back (a graceful restart), and says
  /// what kind of start this is.
  static func restoreLocalState(
    _ previous: RestartRecordFile.Previous, core: SwitchCore, now: UInt32, logger: Logger
  ) {
    switch previous {
    case .restart(let record, let downtime):
      let macs = core.restoreLocalMACs(record.localMACs, now: now)
      let bindings = core.restoreLocalBindings(record.localBindings)
      logger.notice(
        "graceful restart: local MACs restored for re-advertisement before End-of-RIB",
        metadata: [
          "downtime": "\(String(format: "%.1f", downtime))", "macs": "\(macs)", "bindings": "\(bindings)",
          "clean_stop": "\(record.stopped)",
        ])
    case .expired(let downtime):
      logger.info(
        "cold start: the last run ended longer ago than its restart time",
        metadata: ["downtime": "\(Int(downtime))"])
    case .none, .unusable:
      break
    }
  }

  /// Hummingbird and service-lifecycle log every request and step at info: only their
  /// warnings reach the daemon's log.
  static func quiet(_ logger: Logger) -> Logger {
    var quiet = logger
    quiet.logLevel = max(logger.logLevel, .warning)
    return quiet
  }
}

/// The dataplane and the BGP speaker, started before the group runs (start-up errors are
/// printed once, before anything listens). While running, the restart record is written
/// every `RestartRecordFile.interval`; on graceful shutdown it is written once more, the
/// speaker closes its sessions while the dataplane still forwards (without a NOTIFICATION:
/// the peers keep our routes through graceful restart), then the workers drain and stop.
struct SwitchService: Service {
  let live: LiveSwitch
  let controlPlane: EVPNControlPlane?
  let restartRecord: RestartRecordFile?
  let logger: Logger

  func run() async throws {
    if let restartRecord, let controlPlane {
      let restartTime = controlPlane.speaker.configuration.gracefulRestartTime
      while !Task.isShuttingDownGracefully && !Task.isCancelled {
        restartRecord.save(core: live.core, restartTime: restartTime, stopped: false)
        try? await cancelWhenGracefulShutdown {
          try await Task.sleep(for: .milliseconds(Int(RestartRecordFile.interval * 1000)))
        }
      }
      logger.info("stopping")
      restartRecord.save(core: live.core, restartTime: restartTime, stopped: true)
    } else {
      try? await gracefulShutdown()
      logger.info("stopping")
    }
    await controlPlane?.shutdown(forRestart: true)
    live.stop()
  }
}

/// SIGHUP reloads the configuration, as `POST /v1/reload` does.
struct HangupReloadService: Service {
  let service: SiteService

  func run() async throws {
    for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
      _ = try? service.reload()
    }
  }
}

extension RateLimitedLog {
  /// Events of the control shim are keyed by their first two words ("bgp: session",
  /// "bgp: duplicate"), so that one flapping peer or MAC cannot flood the log.
  static func eventKey(_ message: String) -> String {
    message.split(separator: " ", maxSplits: 2).prefix(2).joined(separator: " ")
  }
}
