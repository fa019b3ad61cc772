import API
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import NIOTLS
import ServiceLifecycle

extension SiteChannel {
  /// The channel's server on `[peering] listen`: HTTP/1.1 over TLS 1.2 or later with this
  /// site's certificate, a client certificate required and verified against `tls_ca` only.
  /// `router`'s routes only see requests whose certificate names a site of `[[site_peer]]`
  /// (`PeerRequestContext.peerSite`); the others get 403 `unknown_site` and are counted, as
  /// are failed handshakes. `onRunning` gets the bound port (for `listen` port 0 in tests).
  public func makeServer(
    router: Router<PeerRequestContext>, logger: Logger,
    onRunning: @escaping @Sendable (Int) -> Void = { _ in }
  ) throws -> some Service {
    let tls = serverTLS
    let server = HTTPServerBuilder { [self] responder in
      try TLSChannel(
        PeerIdentityChannel(base: HTTP1Channel(responder: responder), channel: self, logger: logger),
        tlsConfiguration: tls)
    }
    let port = Int(peering.listenPort)
    return Application(
      responder: PeerIdentityResponder(base: router.buildResponder(), channel: self),
      server: server,
      configuration: .init(address: .hostname("\(peering.listenHost)", port: port), serverName: "vxswitch"),
      onServerRunning: { channel in onRunning(channel.localAddress?.port ?? port) },
      logger: logger)
  }

  /// The identity check: the certificate must name exactly one site, and one of `[[site_peer]]`.
  func acceptedSite(_ context: PeerRequestContext) -> Int? {
    guard !context.peerSite.isEmpty else { return nil }
    return peerIndex[context.peerSite.lowercased()]
  }

  func countHandshakeFailure(_ error: any Error, remote: String) {
    counters.withLock { $0.handshakeFailures += 1 }
    logger.notice("peering: TLS handshake from \(remote) failed: \(error)", metadata: ["remote": "\(remote)"])
  }
}

/// Refuses (403 `unknown_site`, counted) any request whose client certificate names no
/// site of `[[site_peer]]`; passes the others on with `peerSite` spelt as the file does.
struct PeerIdentityMiddleware: RouterMiddleware {
  typealias Context = PeerRequestContext
  let channel: SiteChannel

  func handle(
    _ request: Request, context: PeerRequestContext,
    next: (Request, PeerRequestContext) async throws -> Response
  ) async throws -> Response {
    guard let position = channel.acceptedSite(context) else {
      channel.counters.withLock { $0.identityRefusals += 1 }
      let shown = context.peerSite.isEmpty ? "no single site" : "site \(context.peerSite)"
      channel.logger.warning(
        "peering: refused \(request.method) \(request.uri.path): the client certificate names \(shown), not one of [[site_peer]]"
      )
      return try APIError(
        .forbidden, code: "unknown_site",
        "the client certificate names \(shown), which is not a site peer of \(channel.siteName)"
      ).response(from: request, context: context)
    }
    var context = context
    context.peerSite = channel.sitePeers[position].name
    if let limiter = channel.requestLimiter, case .refused(let retryAfter) = limiter.admit(context.peerSite) {
      channel.counters.withLock { $0.peers[position].rateLimited += 1 }
      return try APIError.rateLimited(retryAfter: retryAfter, rate: limiter.rate)
        .response(from: request, context: context)
    }
    channel.counters.withLock { $0.peers[position].requestsReceived += 1 }
    return try await next(request, context)
  }
}

/// The router's responder behind `PeerIdentityMiddleware`, so that the check comes first
/// whatever middleware the caller's router has.
struct PeerIdentityResponder<Base: HTTPResponder>: HTTPResponder where Base.Context == PeerRequestContext {
  typealias Context = PeerRequestContext
  let base: Base
  let middleware: PeerIdentityMiddleware

  init(base: Base, channel: SiteChannel) {
    self.base = base
    middleware = PeerIdentityMiddleware(channel: channel)
  }

  func respond(to request: Request, context: PeerRequestContext) async throws -> Response {
    try await middleware.handle(request, context: context) { request, context in
      try await base.respond(to: request, context: context)
    }
  }
}

/// The child channel inside `TLSChannel` (so after the TLS handler): adds
/// `PeerConnectionHandler`, and runs the connection's requests with its `PeerConnection`
/// as a task-local, where `PeerRequestContext` finds it.
struct PeerIdentityChannel<Base: ServerChildChannel>: ServerChildChannel {
  struct Value: ServerChildChannelValue {
    let base: Base.Value
    let connection: PeerConnection
    var channel: any Channel { base.channel }
  }

  let base: Base
  let channel: SiteChannel
  let logger: Logger

  func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
    let connection = PeerConnection()
    let site = self.channel
    return channel.eventLoop.makeCompletedFuture {
      try channel.pipeline.syncOperations.addHandler(
        PeerConnectionHandler(connection: connection, channel: site))
    }.flatMap {
      base.setup(channel: channel, logger: logger)
    }.map { Value(base: $0, connection: connection) }
  }

  func handle(value: Value, logger: Logger) async {
    await PeerConnection.$current.withValue(value.connection) {
      await base.handle(value: value.base, logger: logger)
    }
  }
}

/// Right after the TLS handler: on a completed handshake, reads the client certificate's
/// DNS names into the connection's `PeerConnection`; counts a handshake that fails (once
/// per connection).
final class PeerConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer

  let connection: PeerConnection
  let channel: SiteChannel
  var handshakeDone = false
  var failureCounted = false

  init(connection: PeerConnection, channel: SiteChannel) {
    self.connection = connection
    self.channel = channel
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if case .handshakeCompleted? = event as? TLSUserEvent {
      handshakeDone = true
      let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
      connection.set(certificate.map(PeerIdentity.dnsNames(of:)) ?? [])
    }
    context.fireUserInboundEventTriggered(event)
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if !handshakeDone, !failureCounted,
      error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError
    {
      failureCounted = true
      channel.countHandshakeFailure(error, remote: context.remoteAddress.map { "\($0)" } ?? "?")
    }
    context.fireErrorCaught(error)
  }
}
