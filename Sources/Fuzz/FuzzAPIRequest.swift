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
  let responder: RouterResponder<APIRequestContext>

  init() {
    let sites = FuzzSites.shared
    let router = APIRouter(
      service: sites.local, metrics: MetricsExporter(service: sites.local), extensions: sites.localExtensions)
    responder = router.makeRouter().buildResponder()
  }

  func run(_ input: UnsafeRawBufferPointer) {
    guard let request = FuzzHTTPRequest(input)?.makeRequest() else { return }
    let responder = self.responder
    FuzzHTTPDriver.respond(
      request,
      context: {
        APIRequestContext(
          source: ApplicationRequestContextSource(
            channel: FuzzHTTPDriver.channel, logger: FuzzHTTPDriver.logger))
      },
      responder: { try await responder.respond(to: $0, context: $1) })
    // Networks created by inputs pile up and make every later change slower (each one
    // reconfigures the switch): past a few, delete them through the same service.
    let service = FuzzSites.shared.local
    if service.core.config.bridgeDomains.count > 16 {
      for network in service.networks() where network.origin == .api {
        try? service.deleteNetwork(name: network.name)
      }
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

  private init() {
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
}
