import API
import ControlShim
import Dataplane
import Foundation
import Logging
import Management
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import XCTest

/// A site built in memory (an `OfflineSwitch`, no root needed) from a configuration file
/// in a temporary directory, with the HTTP API served on a Unix socket there and, on
/// request, on TCP loopback with a bearer token. Tests drive traffic through `offline`
/// and talk to the API with `client` / `tcpClient`, as the CLI does.
final class APITestSite: @unchecked Sendable {  // owned by one test; `stop` joins the server task
  static let baseConfig = """
    [site]
    name = "api-test"
    vtep = "10.0.0.1"
    underlay = "eth1"
    underlay_mac = "02:00:00:00:00:01"
    control_socket = "SOCKET"

    [[neighbor]]
    ip = "10.0.0.2"
    mac = "02:00:00:00:00:02"

    [[bridge_domain]]
    vni = 100
    ports = ["vm1", "vm2"]
    flood = ["10.0.0.2"]

    [[bridge_domain]]
    vni = 200
    ports = ["vm3"]

    [[static_mac]]
    vni = 100
    mac = "02:00:00:00:aa:01"
    remote = "10.0.0.2"
    """

  let directory: String
  let configPath: String
  let socketPath: String
  let offline: OfflineSwitch
  let service: SiteService
  let token = "test-token-0123456789abcdef"
  private(set) var tcpPort: Int?
  private var task: Task<Void, Error>?
  private var group: ServiceGroup?

  private(set) var extensions: ExtensionManager?

  private(set) var controlPlane: EVPNControlPlane?

  /// `speaker`: run a BGP EVPN speaker with the peering defaults, listening on the VTEP
  /// address (a loopback address in tests), as a `[peering]` site does.
  init(
    config: String = APITestSite.baseConfig, tcp: Bool = false, peers: LoopbackPeerNetwork? = nil,
    speaker: Bool = false, restartingIn previous: String? = nil, tcpRateLimiter: RequestRateLimiter? = nil,
    events: (@Sendable (String, [String: String]) -> Void)? = nil
  ) throws {
    directory = previous ?? NSTemporaryDirectory() + "vxswitch-api-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    socketPath = directory + "/api.sock"
    configPath = directory + "/site.toml"
    try Self.write(config.replacingOccurrences(of: "SOCKET", with: socketPath), to: configPath)
    let site = try SiteConfig.load(path: configPath)
    offline = OfflineSwitch(config: site)
    if speaker {
      var options = EVPNControlPlane.Options()
      options.listenAddress = "\(site.site.vtep)"
      options.connectRetryTime = 0.1
      options.event = events
      let controlPlane = try XCTUnwrap(
        EVPNControlPlane(core: offline.core, options: options, defaults: EVPNControlPlane.PeeringDefaults()))
      let started = DispatchSemaphore(value: 0)
      let failure = Mutex<(any Error)?>(nil)
      Task {
        do { try await controlPlane.start() } catch { failure.withLock { $0 = error } }
        started.signal()
      }
      started.wait()
      if let error = failure.withLock({ $0 }) { throw error }
      self.controlPlane = controlPlane
    }
    var logger = Logger(label: "api-test")
    logger.logLevel = .warning
    // As `vxswitch run` does: the runtime state file next to the control socket, restored
    // before anything else happens.
    let state = try StateStore(path: site.site.stateFile, site: site.site.name, logger: logger)
    service = SiteService(
      core: offline.core, controlPlane: controlPlane, configPath: configPath, clock: { 10 }, state: state)
    service.restoreRuntimeState()
    if let peers {
      let manager = ExtensionManager(
        service: service, channel: peers.channel(for: site.site.name), logger: logger)
      peers.register(manager, site: site.site.name)
      extensions = manager
      let resumed = DispatchSemaphore(value: 0)
      Task {
        await manager.resume()
        resumed.signal()
      }
      resumed.wait()
    }
    var limiters: [MetricsExporter.RateLimitedListener: RequestRateLimiter] = [:]
    limiters[.api] = tcpRateLimiter
    let router = APIRouter(
      service: service, metrics: MetricsExporter(service: service, rateLimiters: limiters),
      extensions: extensions)
    logger.logLevel = .warning
    let running = DispatchSemaphore(value: 0)
    var services: [any Service] = [
      try APIServer.unixSocket(
        path: socketPath, router: router, logger: logger, onRunning: { running.signal() })
    ]
    let port = Mutex<Int>(0)
    if tcp {
      services.append(
        APIServer.tcp(
          host: "127.0.0.1", port: 0, token: Array(token.utf8), router: router, logger: logger,
          limiter: tcpRateLimiter,
          onRunning: { bound in
            port.withLock { $0 = bound }
            running.signal()
          }))
    }
    let group = ServiceGroup(services: services, logger: logger)
    self.group = group
    task = Task { try await group.run() }
    for _ in services {
      guard running.wait(timeout: .now() + 20) == .success else { throw APIStartupError("API did not start") }
    }
    if tcp { tcpPort = port.withLock { $0 } }
  }

  var client: APIClient { APIClient(.unixSocket(socketPath)) }

  func tcpClient(token: String) -> APIClient {
    APIClient(.url("http://127.0.0.1:\(tcpPort!)", token: token))
  }

  func rewriteConfig(_ text: String) throws {
    try Self.write(text.replacingOccurrences(of: "SOCKET", with: socketPath), to: configPath)
  }

  static func write(_ text: String, to path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
  }

  /// Stops the server and waits for it; removes the directory unless `keepingFiles` (a
  /// restart: a new `APITestSite(restartingIn: directory)` starts from its files).
  func stop(keepingFiles: Bool = false) async {
    await extensions?.stop()
    await controlPlane?.shutdown()
    await group?.triggerGracefulShutdown()
    _ = try? await task?.value
    task = nil
    if !keepingFiles { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// The state file of the site (`[site] state_dir` defaults to the control socket's).
  var stateFile: String { offline.core.config.site.stateFile }

  /// `GET path` as JSON (any shape).
  func json(_ path: String) throws -> Any {
    try JSONSerialization.jsonObject(with: client.request(.GET, path).body)
  }

  /// The error a request is answered with, or nil when it succeeds.
  func failure(_ method: HTTPMethod, _ path: String, body: String? = nil, client: APIClient? = nil)
    -> (status: Int, code: String, message: String, details: [String])?
  {
    do {
      try (client ?? self.client).request(method, path, body: body.map { Data($0.utf8) })
      return nil
    } catch APIClientError.server(let status, let code, let message, let details) {
      return (status, code, message, details)
    } catch {
      return (0, "\(error)", "", [])
    }
  }
}
