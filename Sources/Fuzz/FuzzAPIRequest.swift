import Dataplane
import Hummingbird
import Management

@testable import API

/// The HTTP API's request handling after the HTTP parser: routing with path parameters,
/// query parameters, the JSON request bodies and everything that parses their fields
/// (VNIs, MAC and IP addresses, port members, network and extension names), through the
/// real router over a site in memory with the site-to-site extensions of two sites.
/// Input: `METHOD PATH\nBODY` (see `FuzzHTTPRequest`).
final class APIRequestFuzzTarget: FuzzTarget {
  private var sites: FuzzSites
  private var responder: RouterResponder<APIRequestContext>
  private var inputs = 0

  init() {
    sites = FuzzSites.shared
    responder = Self.makeResponder(sites)
  }

  private static func makeResponder(_ sites: FuzzSites) -> RouterResponder<APIRequestContext> {
    APIRouter(
      service: sites.local, metrics: MetricsExporter(service: sites.local), extensions: sites.localExtensions
    ).makeRouter().buildResponder()
  }

  func run(_ input: UnsafeRawBufferPointer) {
    guard let request = FuzzHTTPRequest(input)?.makeRequest() else { return }
    let router = responder
    FuzzHTTPDriver.respond(
      request,
      context: {
        APIRequestContext(
          source: ApplicationRequestContextSource(
            channel: FuzzHTTPDriver.channel, logger: FuzzHTTPDriver.logger))
      },
      responder: { try await router.respond(to: $0, context: $1) })
    // Networks created by inputs pile up and make every later change slower (each one
    // reconfigures the switch): past a few, delete them through the same service.
    let service = sites.local
    if service.core.config.bridgeDomains.count > 16 {
      for network in service.networks() where network.origin == .api {
        try? service.deleteNetwork(name: network.name)
      }
    }
    // Extensions to sites that do not answer retry in the background for ever (as they
    // should), and runtime flood entries and static MACs are kept until deleted: a long
    // run piles up thousands, each retrying or listed and sorted by every GET, and the
    // rate fell from 14 000 to under 1000 inputs/s. Past a few, start over with two fresh
    // sites.
    inputs &+= 1
    guard inputs % 256 == 0 else { return }
    let extensions = sites.localExtensions
    if FuzzHTTPDriver.wait({ await extensions.list().count }) > 8 || service.floodEntries().count > 64
      || service.staticMACs().count > 64
    {
      let old = sites
      FuzzHTTPDriver.wait { await old.stop() }
      sites = FuzzSites()
      responder = Self.makeResponder(sites)
    }
  }
}

/// Two sites in memory (`fuzz` and `site-b`), each a switch, its `SiteService` and its
/// extension manager, joined by a loopback peer network: what the API and peering targets
/// change. No state file and no configuration path: a fuzzed reload is refused, and
/// nothing is written to disk.
final class FuzzSites: @unchecked Sendable {
  static let shared = FuzzSites()

  let local: SiteService
  let localExtensions: ExtensionManager
  let remote: SiteService
  let remoteExtensions: ExtensionManager
  private let switches: [OfflineSwitch]

  init() {
    let network = LoopbackPeerNetwork()
    var localConfig = PipelineFuzzTarget.config()
    var remoteConfig = PipelineFuzzTarget.config()
    remoteConfig.site.name = "site-b"
    remoteConfig.site.vtep = IPAddress("10.0.0.2")!
    localConfig.site.name = "fuzz"
    switches = [OfflineSwitch(config: localConfig), OfflineSwitch(config: remoteConfig)]
    local = SiteService(core: switches[0].core, clock: { 10 }, logger: FuzzHTTPDriver.logger)
    remote = SiteService(core: switches[1].core, clock: { 10 }, logger: FuzzHTTPDriver.logger)
    localExtensions = ExtensionManager(
      service: local, channel: network.channel(for: "fuzz"), logger: FuzzHTTPDriver.logger)
    remoteExtensions = ExtensionManager(
      service: remote, channel: network.channel(for: "site-b"), logger: FuzzHTTPDriver.logger)
    network.register(localExtensions, site: "fuzz")
    network.register(remoteExtensions, site: "site-b")
  }

  /// Ends both managers' background work, for a target that starts over.
  func stop() async {
    await localExtensions.stop()
    await remoteExtensions.stop()
  }
}
