import API
import Foundation
import Hummingbird

/// The request context of the channel's routes: who is calling, and the API's JSON coding.
public struct PeerRequestContext: RequestContext {
  public var coreContext: CoreRequestContextStorage
  /// The calling site: the DNS subject alternative name of the client certificate, spelt as
  /// `[[site_peer]] name` once the identity check has accepted it (routes only ever see
  /// accepted requests). Empty when the certificate has no DNS name, or several.
  public internal(set) var peerSite: String

  public init(source: ApplicationRequestContextSource) {
    coreContext = .init(source: source)
    let names = PeerConnection.current?.names ?? []
    peerSite = names.count == 1 ? names[0] : ""
  }

  public var requestDecoder: JSONDecoder { APICoding.decoder }
  public var responseEncoder: JSONEncoder { APICoding.encoder }
  public var maxUploadSize: Int { SiteChannel.maximumBodySize }
}
