import ArgumentParser
import ControlShim
import Dataplane
import Foundation
import Logging
import Management
import Synchronization

/// `Bench extension`: `--sites` simulated sites in one process (control plane only: each a
/// SwitchCore with in-memory ports, a SiteService, an ExtensionManager and a BGP EVPN
/// speaker listening on its own 127.x VTEP address), the extension protocol over an
/// in-process channel that counts every message at its JSON size. For each extension size,
/// site 0 extends its network to the next members; timed: from the request to every member
/// joined, then from a MAC learnt at the last member to that MAC in every other member's
/// FDB (over the members' on-demand BGP EVPN sessions). Reports messages and bytes per
/// site (members, and sites outside the extension, which must handle none).
struct ExtensionBenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "extension",
    abstract: "Inter-site extension at scale: join and MAC convergence time, messages per site.")

  @Option(help: "Simulated sites.") var sites = 200
  @Option(help: "Extension sizes (member sites, the owner included), comma-separated.") var members =
    "2,10,100"
  @Flag(help: "JSON instead of text.") var json = false

  struct Run: Codable {
    var members: Int
    var sites: Int
    var secondsToJoined: Double
    /// From the request to every member's BGP sessions with every other member Established.
    var secondsToSessions: Double
    var secondsMACEverywhere: Double
    var channelMessagesPerMember: Double
    var channelBytesPerMember: Double
    var maximumChannelMessagesAtAMember: Int
    var bgpSessionsPerMember: Double
    var nonMemberMessages: Int
    var nonMemberSessions: Int
  }

  func run() throws {
    let sizes = members.split(separator: ",").compactMap { Int($0) }
    guard sites >= 2, sites <= 250, sizes.allSatisfy({ (2...sites).contains($0) }) else {
      throw ValidationError("--sites 2-250 and every size 2...sites")
    }
    var runs: [Run] = []
    for size in sizes {
      let run = try ExtensionBench(sites: sites, members: size).run()
      runs.append(run)
      if !json {
        print(
          String(
            format:
              "%3d members of %d sites: joined in %.3f s, member BGP sessions up at %.3f s, a MAC learnt at one member in every other member's FDB %.3f s later; per member %.1f channel messages (%.0f bytes, at most %d at one site), %.1f BGP sessions; sites outside: %d messages, %d sessions",
            run.members, run.sites, run.secondsToJoined, run.secondsToSessions, run.secondsMACEverywhere,
            run.channelMessagesPerMember,
            run.channelBytesPerMember, run.maximumChannelMessagesAtAMember, run.bgpSessionsPerMember,
            run.nonMemberMessages, run.nonMemberSessions))
      }
    }
    if json { print(Output.json(runs)) }
  }
}

final class ExtensionBench {
  let sites: Int
  let members: Int
  init(sites: Int, members: Int) {
    self.sites = sites
    self.members = members
  }

  struct Site {
    var offline: OfflineSwitch
    var service: SiteService
    var manager: ExtensionManager
    var controlPlane: EVPNControlPlane
  }

  static func vtep(_ index: Int) -> String { "127.2.\(index / 200).\(index % 200 + 1)" }

  func run() throws -> ExtensionBenchCommand.Run {
    var logger = Logger(label: "bench-extension")
    logger.logLevel = .error
    let network = LoopbackPeerNetwork()
    var built: [Site] = []
    for index in 0..<sites {
      var config = SiteConfig(
        site: .init(name: "site-\(index)", vtep: IPAddress(Self.vtep(index))!, underlay: "eth1"))
      config.site.fdbCapacity = 4096
      config.site.underlayMAC = MACAddress(rawValue: 0x0200_0000_0000 | UInt64(index))
      var domain = SiteConfig.BridgeDomain(vni: UInt32(100 + index))
      domain.name = "net1"
      domain.ports = [.init(interface: "vm1")]
      config.bridgeDomains = [domain]
      let offline = OfflineSwitch(config: config)
      var options = EVPNControlPlane.Options()
      options.listenAddress = Self.vtep(index)
      options.connectRetryTime = 0.05
      options.connectRetryMaximum = 1
      guard let controlPlane = EVPNControlPlane(core: offline.core, options: options, defaults: .init())
      else {
        throw ValidationError("no speaker for site \(index)")
      }
      try blocking { try await controlPlane.start() }
      let service = SiteService(core: offline.core, controlPlane: controlPlane, clock: { 1 }, logger: logger)
      let manager = ExtensionManager(
        service: service, channel: network.channel(for: "site-\(index)"), logger: logger)
      network.register(manager, site: "site-\(index)")
      built.append(Site(offline: offline, service: service, manager: manager, controlPlane: controlPlane))
    }
    let simulated = built
    defer {
      for site in simulated { blocking { await site.controlPlane.shutdown() } }
    }
    let owner = simulated[0]
    let others = (1..<members).map { "site-\($0)" }
    let start = monotonicNanos()
    let created = try blocking { try await owner.manager.create(network: "net1", sites: others) }
    let deadline = start + 120_000_000_000
    var joined = false
    while !joined && monotonicNanos() < deadline {
      let status = try blocking { try await owner.manager.status(created.id) }
      joined = !status.members.contains { $0.state != .joined }
      if !joined { usleep(1000) }
    }
    guard joined else { throw BenchError.failed("the extension did not complete in 120 s") }
    let joinedAt = monotonicNanos()
    let vni = try blocking { try await owner.manager.status(created.id) }.vni!
    // Every member's sessions up before the MAC is learnt (they come up in the background).
    let sessionsDeadline = monotonicNanos() + 120_000_000_000
    while monotonicNanos() < sessionsDeadline {
      let established = (0..<members).allSatisfy { index in
        let status = try? blocking { try await simulated[index].service.bgp() }
        return (status?.peers.filter { $0.state == .established }.count ?? 0) == members - 1
      }
      if established { break }
      usleep(2_000)
    }
    let sessionsAt = monotonicNanos()
    let learner = simulated[members - 1]
    let mac = MACAddress("02:be:00:00:00:01")!
    let frame = FrameBuilder.arpRequestFrame(
      senderMAC: mac, senderIP: IPAddress("192.168.200.1")!, targetIP: IPAddress("192.168.200.2")!)
    let learnStart = monotonicNanos()
    learner.offline.forward(interface: "vm1", frames: [frame], now: 1)
    let macDeadline = learnStart + 120_000_000_000
    var everywhere = false
    while !everywhere && monotonicNanos() < macDeadline {
      everywhere = (0..<(members - 1)).allSatisfy { index in
        let page = simulated[index].service.fdb(FDBQuery(vni: vni, mac: mac))
        return page.entries.first?.vtep == Self.vtep(members - 1)
      }
      if !everywhere { usleep(500) }
    }
    guard everywhere else { throw BenchError.failed("the MAC did not reach every member in 120 s") }
    let done = monotonicNanos()
    let traffic = network.trafficBySite
    let memberNames = (0..<members).map { "site-\($0)" }
    let memberTraffic = memberNames.map { traffic[$0] ?? .init() }
    let outside = (members..<sites).map { "site-\($0)" }
    let outsideMessages = outside.reduce(0) {
      $0 + (traffic[$1]?.messagesReceived ?? 0) + (traffic[$1]?.messagesSent ?? 0)
    }
    var sessions = 0
    var outsideSessions = 0
    for (index, site) in simulated.enumerated() {
      let count = (try? blocking { try await site.service.bgp() })?.peers.count ?? 0
      if index < members { sessions += count } else { outsideSessions += count }
    }
    let joinSeconds = Double(joinedAt - start) / 1e9
    let macSeconds = Double(done - learnStart) / 1e9
    let received = memberTraffic.reduce(0) { $0 + $1.messagesReceived }
    let bytes = memberTraffic.reduce(0) { $0 + $1.bytesReceived + $1.bytesSent }
    let busiest = memberTraffic.map { $0.messagesReceived + $0.messagesSent }.max() ?? 0
    return ExtensionBenchCommand.Run(
      members: members, sites: sites, secondsToJoined: joinSeconds,
      secondsToSessions: Double(sessionsAt - start) / 1e9, secondsMACEverywhere: macSeconds,
      channelMessagesPerMember: Double(received) / Double(members),
      channelBytesPerMember: Double(bytes) / Double(members), maximumChannelMessagesAtAMember: busiest,
      bgpSessionsPerMember: Double(sessions) / Double(members), nonMemberMessages: outsideMessages,
      nonMemberSessions: outsideSessions)
  }
}
