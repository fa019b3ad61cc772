import API
import Foundation
import Hummingbird
import HummingbirdCore
import Management
import NIOCore

/// The site channel's routes: what an extension's owner asks its members. The caller is
/// the site its client certificate names (`PeerRequestContext.peerSite`), checked before
/// these run; the extension manager refuses what that site may not ask.
public enum PeerRoutes {
  static let identifiers = "/peer/v1/identifiers"
  static let reservations = "/peer/v1/reservations"
  static func extensionPath(_ id: ExtensionID) -> String {
    "/peer/v1/extensions/"
      + (id.rawValue.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id.rawValue)
  }

  public static func makeRouter(manager: ExtensionManager) -> Router<PeerRequestContext> {
    let router = Router(context: PeerRequestContext.self)
    router.get(RouterPath(identifiers)) { _, context in
      try APICoding.response(await manager.handleUsedIdentifiers(from: context.peerSite))
    }
    router.post(RouterPath(reservations)) { request, context in
      let reservation = try await decode(Reservation.self, request, context)
      return try await answer { try await manager.handleReserve(reservation, from: context.peerSite) }
    }
    router.put("/peer/v1/extensions/:id") { request, context in
      let description = try await decode(ExtensionDescription.self, request, context)
      guard description.id.rawValue == context.parameters.get("id") else {
        throw APIError.badRequest("the description's id is not the path's")
      }
      return try await answer { try await manager.handleJoin(description, from: context.peerSite) }
    }
    router.delete("/peer/v1/extensions/:id") { _, context in
      let id = ExtensionID(rawValue: context.parameters.get("id") ?? "")
      do {
        try await manager.handleLeave(id, from: context.peerSite)
      } catch let error as ManagementError {
        throw APIError(error)
      }
      return Response(status: .noContent)
    }
    return router
  }

  private static func answer<T: Encodable & Sendable>(_ body: () async throws -> T) async throws -> Response {
    do {
      return try APICoding.response(try await body())
    } catch let error as ManagementError {
      throw APIError(error)
    }
  }

  private static func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: PeerRequestContext)
    async throws -> T
  {
    do {
      return try await request.decode(as: type, context: context)
    } catch {
      throw APIError.badRequest("malformed peer message: \(error)")
    }
  }
}
