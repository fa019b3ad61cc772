import AsyncHTTPClient
import Dataplane
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOSSL
import Peering
import ServiceLifecycle
import Synchronization
import X509
import XCTest

/// The site-to-site channel on 127.0.0.1, with certificates SiteCA makes in a temporary
/// directory: mutual TLS both ways, the identity check, handshake failures, a server whose
/// certificate names another site, unreachable sites and retries.
final class SiteChannelTests: XCTestCase {
  var directory = ""
  /// CA 1 issues site-a, site-b, site-c and site-x; CA 2 issues another site-a.
  var files: [String: SiteCertificate.Files] = [:]
  var rogueA: SiteCertificate.Files!
  var servers: [RunningServer] = []
  var channels: [SiteChannel] = []

  static let logger: Logger = {
    var logger = Logger(label: "peering-test")
    logger.logLevel = .critical
    return logger
  }()

  override func setUp() async throws {
    directory = NSTemporaryDirectory() + "vxswitch-peering-\(UUID().uuidString.prefix(8))"
    let ca = try SiteCA.create()
    try ca.write(to: directory + "/ca")
    for site in ["site-a", "site-b", "site-c", "site-x", "Dc1.Site-B"] {
      files[site] = try ca.issue(site: site).write(to: directory + "/sites", ca: ca)
    }
    let other = try SiteCA.create(name: "another CA")
    rogueA = try other.issue(site: "site-a").write(to: directory + "/rogue", ca: other)
  }

  override func tearDown() async throws {
    // Clients first: a server's graceful shutdown waits for their kept-alive connections.
    for channel in channels { await channel.shutdown() }
    for server in servers { await server.stop() }
    servers = []
    channels = []
    try? FileManager.default.removeItem(atPath: directory)
  }

  // MARK: Helpers

  /// A channel for `site` listening on `port` (0: any), with `peers` (name, port) on 127.0.0.1.
  func channel(
    _ site: String, port: Int = 0, peers: [(String, Int)], certificate: SiteCertificate.Files? = nil,
    ca: String? = nil, rateLimit: Int? = nil
  ) throws -> SiteChannel {
    let own = certificate ?? files[site]!
    var config = SiteConfig(site: .init(name: site, vtep: .v4(0x0A00_0001), underlay: "eth1"))
    config.peering = .init(
      listenHost: IPAddress("127.0.0.1")!, listenPort: UInt16(port), tlsCert: own.certificate,
      tlsKey: own.key, tlsCA: ca ?? own.ca)
    if let rateLimit { config.peering?.rateLimit = rateLimit }
    config.sitePeers = peers.map { SiteConfig.SitePeer(name: $0.0, host: "127.0.0.1", port: $0.1) }
    let channel = try SiteChannel(config: config, logger: Self.logger)
    channels.append(channel)
    return channel
  }

  /// A router answering `GET /v1/hello` with "SITE hears PEER" and echoing `POST /v1/echo`.
  func router(_ site: String, hits: Hits? = nil) -> Router<PeerRequestContext> {
    let router = Router(context: PeerRequestContext.self)
    router.get("/v1/hello") { _, context -> String in
      hits?.add()
      return "\(site) hears \(context.peerSite)"
    }
    router.post("/v1/echo") { request, context -> Response in
      let body = try await request.body.collect(upTo: 1 << 20)
      return Response(status: .created, body: .init(byteBuffer: body))
    }
    return router
  }

  func start(_ channel: SiteChannel, _ router: Router<PeerRequestContext>) async throws -> Int {
    let server = try await RunningServer.start(channel, router: router, logger: Self.logger)
    servers.append(server)
    return server.port
  }

  func text(_ reply: (status: Int, body: Data)) -> String { String(decoding: reply.body, as: UTF8.self) }

  /// The error `send` throws, or nil when it succeeds.
  func failure(_ call: () async throws(SiteChannelError) -> (status: Int, body: Data)) async
    -> SiteChannelError?
  {
    do {
      _ = try await call()
      return nil
    } catch {
      return error
    }
  }

  /// Waits (up to `seconds`) until `condition` holds for the channel's statistics.
  func eventually(
    _ channel: SiteChannel, seconds: Int = 5, _ condition: (SiteChannelStatistics) -> Bool
  ) async -> Bool {
    for _ in 0..<(seconds * 20) {
      if condition(channel.statistics) { return true }
      try? await Task.sleep(for: .milliseconds(50))
    }
    return condition(channel.statistics)
  }

  // MARK: Tests

  func testTwoSitesTalkBothWaysAndSeeEachOther() async throws {
    let portA = try FreePort.reserve()
    let portB = try FreePort.reserve()
    let a = try channel("site-a", port: portA, peers: [("site-b", portB)])
    let b = try channel("site-b", port: portB, peers: [("site-a", portA)])
    _ = try await start(a, router("site-a"))
    _ = try await start(b, router("site-b"))

    let fromA = try await a.send(to: "site-b", .GET, "/v1/hello", body: nil)
    XCTAssertEqual(fromA.status, 200)
    XCTAssertEqual(text(fromA), "site-b hears site-a")
    let fromB = try await b.send(to: "site-a", .GET, "/v1/hello", body: nil)
    XCTAssertEqual(text(fromB), "site-a hears site-b")
    // Names compare without regard to case; bodies go through both ways.
    let echo = try await b.send(to: "SITE-A", .POST, "/v1/echo", body: Data(#"{"vni":100}"#.utf8))
    XCTAssertEqual(echo.status, 201)
    XCTAssertEqual(text(echo), #"{"vni":100}"#)
    let missing = await failure { () async throws(SiteChannelError) in
      try await a.send(to: "site-b", .GET, "/v1/none", body: nil)
    }
    XCTAssertEqual(
      missing.map { if case .refused(404, _, _) = $0 { true } else { false } }, true,
      "\(String(describing: missing))")

    let statsA = a.statistics
    XCTAssertEqual(statsA.peers, [.init(site: "site-b", requestsSent: 2, requestsReceived: 2, errors: 1)])
    XCTAssertEqual(statsA.handshakeFailures, 0)
    XCTAssertEqual(statsA.identityRefusals, 0)
    XCTAssertEqual(
      b.statistics.peers, [.init(site: "site-a", requestsSent: 2, requestsReceived: 2, errors: 0)])
    // The statistics are JSON for the API.
    let json = String(decoding: try JSONEncoder().encode(statsA), as: UTF8.self)
    XCTAssertTrue(json.contains(#""handshakeFailures":0"#), json)
  }

  func testRequestsOverAPeersRateAreRefusedWith429AndCounted() async throws {
    let portA = try FreePort.reserve()
    let portB = try FreePort.reserve()
    let a = try channel("site-a", port: portA, peers: [("site-b", portB)])
    let b = try channel("site-b", port: portB, peers: [("site-a", portA)], rateLimit: 1)
    let hits = Hits()
    _ = try await start(b, router("site-b", hits: hits))
    var statuses: [Int] = []
    for _ in 0..<5 {
      do {
        statuses.append(try await a.send(to: "site-b", .GET, "/v1/hello", body: nil).status)
      } catch {
        guard case .refused(let status, _, _) = error else { return XCTFail("\(error)") }
        statuses.append(status)
      }
    }
    // A burst of 2 at 1 a second: five requests in a row cannot all pass.
    let refused = statuses.filter { $0 == 429 }.count
    XCTAssertGreaterThanOrEqual(refused, 1, "\(statuses)")
    XCTAssertEqual(statuses.filter { $0 == 200 }.count + refused, 5, "\(statuses)")
    XCTAssertEqual(b.statistics.peers.map(\.rateLimited), [UInt64(refused)])
    XCTAssertEqual(hits.count, 5 - refused, "refused requests never reach the routes")
    XCTAssertEqual(b.requestLimiter?.refused, UInt64(refused))
  }

  func testSiteNamesWithDotsAndCapitals() async throws {
    let portA = try FreePort.reserve()
    let portB = try FreePort.reserve()
    let a = try channel("site-a", port: portA, peers: [("dc1.site-b", portB)])
    let b = try channel("Dc1.Site-B", port: portB, peers: [("SITE-A", portA)])
    _ = try await start(a, router("site-a"))
    _ = try await start(b, router("Dc1.Site-B"))
    // peerSite is spelt as [[site_peer]] name, whatever the certificate's case.
    let fromA = try await a.send(to: "dc1.site-b", .GET, "/v1/hello", body: nil)
    XCTAssertEqual(text(fromA), "Dc1.Site-B hears SITE-A")
    let fromB = try await b.send(to: "site-a", .GET, "/v1/hello", body: nil)
    XCTAssertEqual(text(fromB), "site-a hears dc1.site-b")
    XCTAssertEqual(b.peer(named: "site-a")?.name, "SITE-A")
  }

  func testUnknownSiteIsRefusedBeforeAnyConnection() async throws {
    let a = try channel("site-a", peers: [("site-b", 1)])
    let error = await failure { () async throws(SiteChannelError) in
      try await a.send(to: "site-z", .GET, "/v1/hello", body: nil)
    }
    XCTAssertEqual(error, .unknownSite("site-z"))
    XCTAssertEqual(a.statistics.peers.map(\.requestsSent), [0])
  }

  func testClientCertificateFromAnotherCAIsRefusedAtTheHandshake() async throws {
    let hits = Hits()
    let b = try channel("site-b", peers: [("site-a", 1)])
    let portB = try await start(b, router("site-b", hits: hits))
    // site-a's name, but a certificate of another CA (it trusts the right CA for the server).
    let rogue = try channel(
      "site-a", peers: [("site-b", portB)], certificate: rogueA, ca: files["site-a"]!.ca)
    let error = await failure { () async throws(SiteChannelError) in
      try await rogue.send(to: "site-b", .GET, "/v1/hello", body: nil)
    }
    guard case .unreachable(let reason)? = error else {
      return XCTFail("expected unreachable, got \(String(describing: error))")
    }
    XCTAssertTrue(reason.contains("UNKNOWN_CA"), reason)
    let counted = await eventually(b) { $0.handshakeFailures >= 1 }
    XCTAssertTrue(counted, "handshake failures: \(b.statistics.handshakeFailures)")
    let afterRogue = b.statistics.handshakeFailures

    // No client certificate at all.
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(files["site-b"]!.ca))
    var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
    configuration.dnsOverride = ["site-b": "127.0.0.1"]
    configuration.timeout = .init(connect: .seconds(3), read: .seconds(5))
    let anonymous = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    do {
      let response = try await anonymous.execute(
        HTTPClientRequest(url: "https://site-b:\(portB)/v1/hello"), timeout: .seconds(10))
      XCTFail("a client without certificate got \(response.status)")
    } catch {}
    try await anonymous.shutdown()
    let countedAgain = await eventually(b) { $0.handshakeFailures > afterRogue }
    XCTAssertTrue(countedAgain, "handshake failures: \(b.statistics.handshakeFailures)")
    XCTAssertEqual(hits.count, 0)
    XCTAssertEqual(b.statistics.identityRefusals, 0)
    XCTAssertEqual(b.statistics.peers.map(\.requestsReceived), [0])
  }

  func testCertificateNamingNoSitePeerGets403AndIsCounted() async throws {
    let hits = Hits()
    let b = try channel("site-b", peers: [("site-a", 1)])
    let portB = try await start(b, router("site-b", hits: hits))
    let x = try channel("site-x", peers: [("site-b", portB)])
    let error = await failure { () async throws(SiteChannelError) in
      try await x.send(to: "site-b", .GET, "/v1/hello", body: nil)
    }
    guard case .refused(let status, let code, let message)? = error else {
      return XCTFail("expected refused, got \(String(describing: error))")
    }
    XCTAssertEqual(status, 403)
    XCTAssertEqual(code, "unknown_site")
    XCTAssertTrue(message.contains("site-x"), message)
    // Not retried: a 403 is permanent.
    let again = await failure { () async throws(SiteChannelError) in
      try await x.sendWithRetry(to: "site-b", .GET, "/v1/hello", body: nil)
    }
    XCTAssertEqual(again, error)
    XCTAssertEqual(b.statistics.identityRefusals, 2)
    XCTAssertEqual(b.statistics.handshakeFailures, 0)
    XCTAssertEqual(hits.count, 0)
    XCTAssertEqual(
      x.statistics.peers, [.init(site: "site-b", requestsSent: 2, requestsReceived: 0, errors: 2)])
  }

  func testServerWhoseCertificateNamesAnotherSiteIsNotBelieved() async throws {
    let hits = Hits()
    // site-c listens where site-a believes site-b is.
    let c = try channel("site-c", peers: [("site-a", 1)])
    let portC = try await start(c, router("site-c", hits: hits))
    let a = try channel("site-a", peers: [("site-b", portC)])
    let started = ContinuousClock.now
    let error = await failure { () async throws(SiteChannelError) in
      try await a.send(to: "site-b", .GET, "/v1/hello", body: nil)
    }
    guard case .unreachable(let reason)? = error else {
      return XCTFail("expected unreachable, got \(String(describing: error))")
    }
    XCTAssertTrue(reason.contains("Couldn't find site-b in certificate"), reason)
    XCTAssertLessThan(ContinuousClock.now - started, .seconds(8), reason)
    XCTAssertEqual(hits.count, 0)
    XCTAssertEqual(a.statistics.peers.map(\.errors), [1])
    // site-c saw a client refuse its certificate.
    let counted = await eventually(c) { $0.handshakeFailures >= 1 }
    XCTAssertTrue(counted)
  }

  func testUnreachableSiteFailsQuickly() async throws {
    let port = try FreePort.reserve()  // nothing listens there
    let a = try channel("site-a", peers: [("site-b", port)])
    let started = ContinuousClock.now
    let error = await failure { () async throws(SiteChannelError) in
      try await a.send(to: "site-b", .GET, "/v1/hello", body: nil)
    }
    let elapsed = ContinuousClock.now - started
    guard case .unreachable? = error else {
      return XCTFail("expected unreachable, got \(String(describing: error))")
    }
    XCTAssertLessThan(elapsed, .seconds(6), "took \(elapsed)")
    // Bounded retries give up with the last error.
    let retried = await failure { () async throws(SiteChannelError) in
      try await a.sendWithRetry(to: "site-b", .GET, "/v1/hello", body: nil, maxAttempts: 2)
    }
    guard case .unreachable? = retried else {
      return XCTFail("expected unreachable, got \(String(describing: retried))")
    }
    XCTAssertEqual(
      a.statistics.peers, [.init(site: "site-b", requestsSent: 3, requestsReceived: 0, errors: 3)])
  }

  func testSendWithRetryCompletesOnceTheServerStarts() async throws {
    let portA = try FreePort.reserve()
    let portB = try FreePort.reserve()
    let a = try channel("site-a", port: portA, peers: [("site-b", portB)])
    let b = try channel("site-b", port: portB, peers: [("site-a", portA)])
    let call = Task { try await a.sendWithRetry(to: "site-b", .GET, "/v1/hello", body: nil, maxAttempts: 20) }
    let failed = await eventually(a, seconds: 15) { $0.peers[0].errors >= 2 }
    XCTAssertTrue(failed)
    _ = try await start(b, router("site-b"))
    let reply = try await call.value
    XCTAssertEqual(text(reply), "site-b hears site-a")
    let stats = a.statistics.peers[0]
    XCTAssertEqual(stats.requestsSent, stats.errors + 1)
  }

  func testSendWithRetryStopsWhenCancelled() async throws {
    let a = try channel("site-a", peers: [("site-b", try FreePort.reserve())])
    let call = Task {
      try await a.sendWithRetry(to: "site-b", .GET, "/v1/hello", body: nil, maxAttempts: nil)
    }
    _ = await eventually(a, seconds: 15) { $0.peers[0].errors >= 2 }
    let started = ContinuousClock.now
    call.cancel()
    let result = await call.result
    guard case .failure(let error) = result, error as? SiteChannelError == .cancelled else {
      return XCTFail("expected cancelled, got \(result)")
    }
    XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
  }

  func testRetryDelaysDoubleFromPointTwoToTenSecondsWithJitter() {
    let full = (1...9).map { SiteChannel.retryDelay(afterAttempt: $0, jitter: 1) }
    XCTAssertEqual(
      full, [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10, 10].map { Duration.milliseconds(Int64($0 * 1000)) })
    XCTAssertEqual(SiteChannel.retryDelay(afterAttempt: 1, jitter: 0), .milliseconds(100))
    XCTAssertEqual(SiteChannel.retryDelay(afterAttempt: 40, jitter: 0), .seconds(5))
  }

  // MARK: Setup and PKI

  func testChannelSetupErrors() throws {
    var config = SiteConfig(site: .init(name: "site-a", vtep: .v4(1), underlay: "eth1"))
    XCTAssertThrowsError(try SiteChannel(config: config)) { error in
      XCTAssertTrue("\(error)".contains("no [peering]"), "\(error)")
    }
    let b = files["site-b"]!
    config.peering = .init(
      listenHost: IPAddress("127.0.0.1")!, listenPort: 1, tlsCert: b.certificate, tlsKey: b.key, tlsCA: b.ca)
    XCTAssertThrowsError(try SiteChannel(config: config)) { error in
      XCTAssertTrue("\(error)".contains("names site-b, not this site (site-a)"), "\(error)")
    }
    config.site.name = "site-b"
    config.sitePeers = [
      .init(name: "site-a", host: "::1", port: 1), .init(name: "Site-A", host: "::1", port: 2),
    ]
    XCTAssertThrowsError(try SiteChannel(config: config)) { error in
      XCTAssertTrue("\(error)".contains("listed twice"), "\(error)")
    }
    config.sitePeers = []
    config.peering?.tlsCert = directory + "/missing.pem"
    XCTAssertThrowsError(try SiteChannel(config: config)) { error in
      XCTAssertTrue("\(error)".contains("cannot read tls_cert"), "\(error)")
    }
  }

  func testSiteCAIssuesSiteCertificatesAndWritesPrivateKeys() throws {
    let ca = try SiteCA(directory: directory + "/ca")
    let pem = try String(contentsOfFile: files["site-b"]!.certificate, encoding: .utf8)
    let certificate = try Certificate(pemEncoded: pem)
    XCTAssertEqual(certificate.issuer, ca.certificate.subject)
    XCTAssertEqual(try certificate.extensions.subjectAlternativeNames.map(Array.init), [.dnsName("site-b")])
    XCTAssertEqual(
      try certificate.extensions.extendedKeyUsage.map(Array.init), [.serverAuth, .clientAuth])
    XCTAssertEqual(try certificate.extensions.basicConstraints, .notCertificateAuthority)
    XCTAssertEqual(try ca.certificate.extensions.basicConstraints, .isCertificateAuthority(maxPathLength: 0))
    for path in [directory + "/ca/ca.key", files["site-b"]!.key] {
      let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
      XCTAssertEqual(mode, 0o600, path)
    }
    // Existing files are never replaced; a bad site name is refused.
    XCTAssertThrowsError(try ca.issue(site: "site-b").write(to: directory + "/sites", ca: ca))
    XCTAssertThrowsError(try ca.write(to: directory + "/ca"))
    XCTAssertThrowsError(try ca.issue(site: "no spaces"))
    XCTAssertThrowsError(try ca.issue(site: "no_underscores"))  // not a DNS name: TLS cannot check it
    XCTAssertThrowsError(try ca.issue(site: "site-d").write(to: directory + "/rogue", ca: ca)) { error in
      XCTAssertTrue("\(error)".contains("another CA"), "\(error)")
    }
  }
}

final class Hits: Sendable {
  private let value = Mutex(0)
  func add() { value.withLock { $0 += 1 } }
  var count: Int { value.withLock { $0 } }
}

/// A channel's server in a ServiceGroup, and the port it bound.
final class RunningServer: Sendable {
  let group: ServiceGroup
  let task: Task<Void, any Error>
  let port: Int

  init(group: ServiceGroup, task: Task<Void, any Error>, port: Int) {
    self.group = group
    self.task = task
    self.port = port
  }

  static func start(_ channel: SiteChannel, router: Router<PeerRequestContext>, logger: Logger) async throws
    -> RunningServer
  {
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    let service = try channel.makeServer(router: router, logger: logger) { continuation.yield($0) }
    let group = ServiceGroup(services: [service], logger: logger)
    let task = Task { try await group.run() }
    let port = await withTaskGroup(of: Int?.self) { waiting in
      waiting.addTask {
        var iterator = ports.makeAsyncIterator()
        return await iterator.next()
      }
      waiting.addTask {
        try? await Task.sleep(for: .seconds(20))
        return nil
      }
      let first = await waiting.next() ?? nil
      waiting.cancelAll()
      return first
    }
    guard let port else {
      await group.triggerGracefulShutdown()
      throw SiteChannelSetupError("the channel's server did not start")
    }
    return RunningServer(group: group, task: task, port: port)
  }

  func stop() async {
    await group.triggerGracefulShutdown()
    _ = try? await task.value
  }
}

/// A loopback TCP port that was free a moment ago (bound to port 0, then closed), for the
/// tests where a site must know another's port before that one starts.
enum FreePort {
  static func reserve() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SiteChannelSetupError("socket: \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
      }
    }
    guard bound else { throw SiteChannelSetupError("bind: \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
  }
}
