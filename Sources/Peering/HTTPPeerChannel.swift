import API
import Foundation
import Management
import NIOHTTP1

/// The extension protocol's calls (`PeerChannel`) over the mutual-TLS site channel, as
/// JSON under `/peer/v1` (`PeerRoutes` serves them). Every call is idempotent; the
/// extension manager retries with backoff, so each call is one attempt.
public struct HTTPPeerChannel: PeerChannel {
  let channel: SiteChannel

  public init(channel: SiteChannel) { self.channel = channel }

  public func isKnown(_ site: String) -> Bool { channel.peer(named: site) != nil }

  public func usedIdentifiers(at site: String) async throws -> UsedIdentifiers {
    try await call(site, .GET, PeerRoutes.identifiers, Optional<Reservation>.none, as: UsedIdentifiers.self)
  }

  public func reserve(_ reservation: Reservation, at site: String) async throws -> ReservationReply {
    try await call(site, .POST, PeerRoutes.reservations, reservation, as: ReservationReply.self)
  }

  public func join(_ description: ExtensionDescription, at site: String) async throws -> JoinReply {
    try await call(site, .PUT, PeerRoutes.extensionPath(description.id), description, as: JoinReply.self)
  }

  public func leave(_ id: ExtensionID, owner: String, at site: String) async throws {
    _ = try await channel.send(to: site, .DELETE, PeerRoutes.extensionPath(id), body: nil)
  }

  private func call<Body: Encodable, Reply: Decodable>(
    _ site: String, _ method: HTTPMethod, _ path: String, _ body: Body?, as type: Reply.Type
  ) async throws -> Reply {
    let data = try body.map { try APICoding.encoder.encode($0) }
    let reply = try await channel.send(to: site, method, path, body: data)
    do {
      return try APICoding.decoder.decode(type, from: reply.body)
    } catch {
      throw SiteChannelError.refused(status: reply.status, code: "malformed_reply", message: "\(error)")
    }
  }
}
