import ArgumentParser
import ControlShim
import Dataplane
import Dispatch
import Foundation

struct RunCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "The per-site forwarding daemon.",
    discussion: """
      Attaches to the configured interfaces (AF_PACKET rings), forwards until SIGTERM or SIGINT,
      reloads the configuration on SIGHUP (bridge domains that did not change keep forwarding and
      keep their MACs), and serves `vxswitch show ...` on the control socket.
      """)

  @Option(help: "The site's TOML configuration file.") var config: String

  func run() throws {
    let site = try loadConfigOrExit(config)
    guard geteuid() == 0 else {
      printError("vxswitch run: needs root (CAP_NET_RAW and CAP_NET_ADMIN for AF_PACKET rings and netlink)")
      throw ExitCode(1)
    }
    let core = SwitchCore(config: site)
    // Created before the dataplane starts so that no locally learnt MAC is missed; its
    // sessions start after it (a peer down never touches local switching).
    var options = EVPNControlPlane.Options()
    options.log = { log($0) }
    let controlPlane = site.bgp == nil ? nil : EVPNControlPlane(core: core, options: options)
    let live = LiveSwitch(core: core)
    do {
      try live.start()
    } catch {
      printError("vxswitch run: \(error)")
      throw ExitCode(1)
    }
    for warning in live.warnings { log("warning: \(warning)") }
    let commands = ControlCommands(core: core, clock: { live.now })
    if let controlPlane {
      controlPlane.register(on: commands)
    } else {
      for command in ["show-bgp", "clear-dup-mac"] {
        commands.register(command) { _ in
          ControlServer.error("BGP is not configured (no [bgp] in \(config))")
        }
      }
    }
    let server = ControlServer(path: site.site.controlSocket, handler: commands.handle)
    do {
      try server.start()
    } catch {
      live.stop()
      printError("vxswitch run: \(error)")
      throw ExitCode(1)
    }
    if let controlPlane, let bgp = site.bgp {
      do {
        try controlPlane.startBlocking()
        log(
          "bgp: AS \(bgp.asn), router ID \(bgp.routerID), \(bgp.peers.count) peer(s)"
            + (bgp.listenPort == 0 ? "" : ", listening on port \(bgp.listenPort)"))
      } catch {
        log("bgp: speaker not started: \(error); switching continues without EVPN")
      }
    }
    let ports = core.interfaces.map { $0 == site.site.underlay ? "\($0) (underlay)" : $0 }
    log(
      "site \(site.site.name): VTEP \(site.site.vtep) UDP \(site.site.udpPort); attached \(ports.joined(separator: ", "));"
        + " \(site.site.workers) worker(s); \(site.bridgeDomains.count) bridge domain(s); control socket \(site.site.controlSocket)"
    )

    let done = DispatchSemaphore(value: 0)
    let queue = DispatchQueue(label: "vxswitch.signals")
    var sources: [DispatchSourceSignal] = []
    for number in [SIGTERM, SIGINT] {
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
      source.setEventHandler {
        log("signal \(number): stopping")
        done.signal()
      }
      source.resume()
      sources.append(source)
    }
    signal(SIGHUP, SIG_IGN)
    let reload = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
    reload.setEventHandler { Self.reload(path: config, core: core, controlPlane: controlPlane) }
    reload.resume()
    sources.append(reload)
    done.wait()
    // BGP first: Cease to the peers while the dataplane still forwards.
    controlPlane?.shutdownBlocking()
    server.stop()
    live.stop()
    log("stopped")
  }

  /// Applies a changed configuration in place; a broken file or one that needs new
  /// interfaces is refused with a message and the running configuration stays.
  static func reload(path: String, core: SwitchCore, controlPlane: EVPNControlPlane?) {
    let next: SiteConfig
    do {
      next = try SiteConfig.load(path: path)
    } catch {
      log("SIGHUP: configuration not reloaded:\n\(error)")
      return
    }
    let current = core.config
    if SwitchCore.interfaceNames(of: next).sorted() != core.interfaces.sorted()
      || next.site.underlay != current.site.underlay || next.site.vtep != current.site.vtep
      || next.site.udpPort != current.site.udpPort
    {
      log(
        "SIGHUP: interfaces, VTEP or UDP port changed: restart vxswitch to apply; running configuration kept")
      return
    }
    core.reload(next)
    controlPlane?.reload(next)
    log("SIGHUP: configuration reloaded (\(next.bridgeDomains.count) bridge domain(s))")
  }
}

func log(_ message: String) {
  let stamp = ISO8601DateFormatter().string(from: Date())
  print("\(stamp) vxswitch: \(message)")
  fflush(stdout)
}
