import AsyncHTTPClient
import Dataplane
import Foundation
import Logging
import Management
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// The site-to-site channel: HTTPS with mutual TLS between independent sites, each
/// identified by its certificate's subject alternative name (a DNS name equal to the site's
/// name), all certificates signed by one CA (`[peering] tls_ca`).
///
/// - The server (`makeServer`) requires a client certificate that chains to `tls_ca`, and
///   serves a request only when that certificate names a site of `[[site_peer]]`
///   (`PeerRequestContext.peerSite`); others get 403 `unknown_site`.
/// - The client (`send`, `sendWithRetry`) presents this site's certificate and accepts a
///   server only when its certificate chains to `tls_ca` and names the site called: the URL's
///   host is the site's name (SNI and hostname verification), while the TCP connection goes
///   to `[[site_peer]] url`'s host (`HTTPClient.Configuration.dnsOverride`).
///
/// ## Thread-safety
/// Every method may be called from any task; nothing blocks the calling thread (the TLS
/// files are read once, by `init`). One `HTTPClient` (with its connection pool) serves every
/// call; `shutdown()` closes it and must be awaited before the channel is dropped.
public final class SiteChannel: Sendable {
  /// This site's name (`[site] name`).
  public let siteName: String
  public let peering: SiteConfig.Peering
  /// `[[site_peer]]`, in the file's order.
  public let sitePeers: [SiteConfig.SitePeer]

  /// Connecting (TCP and TLS) gives up after this long.
  public static let connectTimeout: TimeAmount = .seconds(3)
  /// A whole request (connection included) gives up after this long.
  public static let requestTimeout: TimeAmount = .seconds(10)
  /// Request and response bodies are refused beyond this size.
  public static let maximumBodySize = 4 << 20

  /// Index into `sitePeers` by lower-cased name: certificates carry DNS names, which
  /// compare without regard to case.
  let peerIndex: [String: Int]
  let serverTLS: TLSConfiguration
  let client: HTTPClient
  let counters: Mutex<SiteChannelStatistics>
  let logger: Logger
  /// Each site peer's requests held to `[peering] rate_limit`; nil when it is 0.
  public let requestLimiter: RequestRateLimiter?

  /// Reads the TLS files of `[peering]` and prepares the client; the server starts with
  /// `makeServer`. Fails without `[peering]`, when a file cannot be read or parsed, or when
  /// `tls_cert` does not name this site.
  public init(config: SiteConfig, logger: Logger = Logger(label: "vxswitch.peering"))
    throws(SiteChannelSetupError)
  {
    guard let peering = config.peering else {
      throw SiteChannelSetupError("the configuration has no [peering] table")
    }
    self.siteName = config.site.name
    self.peering = peering
    self.sitePeers = config.sitePeers
    self.logger = logger
    requestLimiter =
      peering.rateLimit > 0
      ? RequestRateLimiter(rate: Double(peering.rateLimit), burst: Double(2 * peering.rateLimit)) : nil
    guard SiteConfig.isValidPeerSiteName(config.site.name) else {
      throw SiteChannelSetupError(
        "site name \(config.site.name) must be \(SiteConfig.peerSiteNameRule): certificates carry it")
    }
    var index: [String: Int] = [:]
    for (position, peer) in config.sitePeers.enumerated() {
      guard SiteConfig.isValidPeerSiteName(peer.name) else {
        throw SiteChannelSetupError(
          "site peer \(peer.name) must be \(SiteConfig.peerSiteNameRule): certificates carry it")
      }
      guard index.updateValue(position, forKey: peer.name.lowercased()) == nil,
        peer.name.lowercased() != config.site.name.lowercased()
      else {
        throw SiteChannelSetupError("site peer \(peer.name) is listed twice, or is this site")
      }
    }
    peerIndex = index

    let chain: [NIOSSLCertificate]
    let key: NIOSSLPrivateKey
    let roots: [NIOSSLCertificate]
    do {
      chain = try NIOSSLCertificate.fromPEMFile(peering.tlsCert)
    } catch {
      throw SiteChannelSetupError("cannot read tls_cert \(peering.tlsCert): \(error)")
    }
    do {
      key = try NIOSSLPrivateKey(file: peering.tlsKey, format: .pem)
    } catch {
      throw SiteChannelSetupError("cannot read tls_key \(peering.tlsKey): \(error)")
    }
    do {
      roots = try NIOSSLCertificate.fromPEMFile(peering.tlsCA)
    } catch {
      throw SiteChannelSetupError("cannot read tls_ca \(peering.tlsCA): \(error)")
    }
    guard let leaf = chain.first, !roots.isEmpty else {
      throw SiteChannelSetupError(
        "tls_cert \(peering.tlsCert) or tls_ca \(peering.tlsCA) holds no certificate")
    }
    let names = PeerIdentity.dnsNames(of: leaf)
    guard names.contains(where: { $0.lowercased() == config.site.name.lowercased() }) else {
      throw SiteChannelSetupError(
        "tls_cert \(peering.tlsCert) names \(names.isEmpty ? "no site" : names.joined(separator: ", ")), "
          + "not this site (\(config.site.name)); other sites would refuse it")
    }

    var server = TLSConfiguration.makeServerConfiguration(
      certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    server.minimumTLSVersion = .tlsv12
    server.trustRoots = .certificates(roots)
    // A client certificate is required and its chain verified; its name is checked per
    // request against [[site_peer]], not against a host name.
    server.certificateVerification = .noHostnameVerification
    serverTLS = server

    var tls = TLSConfiguration.makeClientConfiguration()
    tls.minimumTLSVersion = .tlsv12
    tls.certificateChain = chain.map { .certificate($0) }
    tls.privateKey = .privateKey(key)
    tls.trustRoots = .certificates(roots)
    tls.certificateVerification = .fullVerification
    var configuration = HTTPClient.Configuration(
      tlsConfiguration: tls, redirectConfiguration: .disallow,
      timeout: .init(connect: Self.connectTimeout, read: Self.requestTimeout))
    configuration.httpVersion = .http1Only
    configuration.dnsOverride = Dictionary(
      uniqueKeysWithValues: config.sitePeers.map { ($0.name.lowercased(), $0.host) })
    client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    counters = Mutex(SiteChannelStatistics(peers: config.sitePeers.map { .init(site: $0.name) }))
  }

  /// Closes the client's connections; calls made afterwards fail as `unreachable`.
  public func shutdown() async {
    try? await client.shutdown()
  }

  public var statistics: SiteChannelStatistics { counters.withLock { $0 } }

  /// The `[[site_peer]]` entry for `site` (compared without regard to case).
  public func peer(named site: String) -> SiteConfig.SitePeer? {
    peerIndex[site.lowercased()].map { sitePeers[$0] }
  }

  // MARK: Client

  /// One request to `site`: `path` (with its query) over the channel, `body` as JSON.
  /// Answers 1xx-3xx come back as they are; 4xx/5xx are thrown as `refused`.
  public func send(to site: String, _ method: HTTPMethod, _ path: String, body: Data?)
    async throws(SiteChannelError) -> (status: Int, body: Data)
  {
    guard let position = peerIndex[site.lowercased()] else { throw .unknownSite(site) }
    let peer = sitePeers[position]
    counters.withLock { $0.peers[position].requestsSent += 1 }
    do {
      return try await execute(peer, method, path, body: body)
    } catch {
      if error != .cancelled { counters.withLock { $0.peers[position].errors += 1 } }
      logger.debug(
        "peering: \(method) \(path) to \(peer.name) failed: \(error)",
        metadata: ["site": "\(peer.name)"])
      throw error
    }
  }

  /// `send`, again after transient failures (`unreachable`, 5xx), for idempotent calls only:
  /// waits 0.2 s after the first failure, doubling up to 10 s, each wait jittered between
  /// half and all of it. Gives up after `maxAttempts` attempts (nil: only when the calling
  /// task is cancelled) with the last error; permanent errors (4xx, unknown site) are thrown
  /// at once.
  public func sendWithRetry(
    to site: String, _ method: HTTPMethod, _ path: String, body: Data?, maxAttempts: Int? = 10
  ) async throws(SiteChannelError) -> (status: Int, body: Data) {
    var attempt = 1
    while true {
      do {
        return try await send(to: site, method, path, body: body)
      } catch {
        guard error.isTransient, maxAttempts.map({ attempt < $0 }) ?? true else { throw error }
        let delay = Self.retryDelay(afterAttempt: attempt, jitter: Double.random(in: 0...1))
        logger.debug(
          "peering: \(method) \(path) to \(site): \(error); attempt \(attempt + 1) in \(delay)",
          metadata: ["site": "\(site)"])
        do {
          try await Task.sleep(for: delay)
        } catch {
          throw .cancelled
        }
        attempt += 1
      }
    }
  }

  /// The wait after failed attempt `attempt` (1-based): 0.2 s doubling up to 10 s, scaled
  /// into [half, all] of that by `jitter` in 0...1.
  public static func retryDelay(afterAttempt attempt: Int, jitter: Double) -> Duration {
    let base = min(0.2 * pow(2, Double(min(max(attempt, 1), 32) - 1)), 10)
    let seconds = base * (0.5 + 0.5 * min(max(jitter, 0), 1))
    return .milliseconds(Int64((seconds * 1000).rounded()))
  }

  private func execute(_ peer: SiteConfig.SitePeer, _ method: HTTPMethod, _ path: String, body: Data?)
    async throws(SiteChannelError) -> (status: Int, body: Data)
  {
    if Task.isCancelled { throw .cancelled }
    // The host is the site's name: TLS sends it as SNI and checks the server's certificate
    // against it; dnsOverride sends the connection to the configured host.
    let separator = path.hasPrefix("/") ? "" : "/"
    var request = HTTPClientRequest(url: "https://\(peer.name.lowercased()):\(peer.port)\(separator)\(path)")
    request.method = method
    request.headers.add(name: "Accept", value: "application/json")
    if let body {
      request.headers.add(name: "Content-Type", value: "application/json")
      request.body = .bytes(ByteBuffer(bytes: body))
    }
    let status: Int
    let data: Data
    do {
      let response = try await client.execute(request, timeout: Self.requestTimeout, logger: nil)
      status = Int(response.status.code)
      var buffer = try await response.body.collect(upTo: Self.maximumBodySize)
      data = buffer.readData(length: buffer.readableBytes) ?? Data()
    } catch {
      if Task.isCancelled || error is CancellationError { throw .cancelled }
      if let clientError = error as? HTTPClientError, clientError == .cancelled { throw .cancelled }
      throw .unreachable("\(peer.name) (\(peer.host):\(peer.port)): \(Self.describe(error))")
    }
    guard status < 400 else {
      let decoded = try? JSONDecoder().decode(ErrorBody.self, from: data)
      throw .refused(
        status: status, code: decoded?.error.code ?? "http_\(status)",
        message: decoded?.error.message ?? String(decoding: data.prefix(512), as: UTF8.self))
    }
    return (status, data)
  }

  /// `{"error": {"code", "message"}}`, as the API and the channel's server write errors.
  struct ErrorBody: Decodable {
    struct Inner: Decodable {
      var code: String
      var message: String
    }
    var error: Inner
  }

  static func describe(_ error: any Error) -> String {
    switch error {
    case let error as HTTPClientError where error == .deadlineExceeded:
      return "no answer within \(requestTimeout.nanoseconds / 1_000_000_000) s"
    case let error as HTTPClientError where error == .connectTimeout:
      return "no connection within \(connectTimeout.nanoseconds / 1_000_000_000) s"
    default:
      return String(describing: error)
    }
  }
}
