import Hummingbird
import Management

@testable import Peering

/// The site-to-site messages as the channel's server receives them after TLS and the
/// identity check: the peer routes (reservations, extension descriptions, leaves, used
/// identifiers) with their JSON bodies and path parameters, from site `site-b`, handled
/// by the extension manager of site `fuzz`. Input: `METHOD PATH\nBODY`.
final class PeeringFuzzTarget: FuzzTarget {
  let responder: RouterResponder<PeerRequestContext>

  init() {
    responder = PeerRoutes.makeRouter(manager: FuzzSites.shared.localExtensions).buildResponder()
  }

  func run(_ input: UnsafeRawBufferPointer) {
    guard let request = FuzzHTTPRequest(input)?.makeRequest() else { return }
    let responder = self.responder
    FuzzHTTPDriver.respond(
      request,
      context: {
        var context = PeerRequestContext(
          source: ApplicationRequestContextSource(
            channel: FuzzHTTPDriver.channel, logger: FuzzHTTPDriver.logger))
        // What `PeerIdentityMiddleware` sets once the client certificate named a site peer.
        context.peerSite = "site-b"
        return context
      },
      responder: { try await responder.respond(to: $0, context: $1) })
  }
}
