import Foundation
import Synchronization

/// Sites in one process talking to each other without a network: each site's
/// `PeerChannel` calls the other site's `ExtensionManager` directly, authenticated by
/// construction (the caller's name is the channel's). For control-plane simulations (Bench
/// `extension`: hundreds of sites in one process) and tests; sites can be cut off.
///
/// Thread-safety: the registry is guarded by a mutex; calls go to the managers' actors.
public final class LoopbackPeerNetwork: Sendable {
  private let managers = Mutex<[String: ExtensionManager]>([:])
  private let unreachable = Mutex<Set<String>>([])
  private let messages = Mutex<Int>(0)
  /// Per site: messages and bytes (JSON, as the site channel would carry them) it handled
  /// as a receiver, and sent.
  private let traffic = Mutex<[String: SiteTraffic]>([:])

  public struct SiteTraffic: Sendable, Equatable, Codable {
    public init() {}
    public var messagesReceived = 0
    public var bytesReceived = 0
    public var messagesSent = 0
    public var bytesSent = 0
  }

  /// What each site handled so far.
  public var trafficBySite: [String: SiteTraffic] { traffic.withLock { $0 } }

  func account(from sender: String, to receiver: String, bytes: Int) {
    traffic.withLock { table in
      table[receiver, default: .init()].messagesReceived += 1
      table[receiver, default: .init()].bytesReceived += bytes
      table[sender, default: .init()].messagesSent += 1
      table[sender, default: .init()].bytesSent += bytes
    }
  }

  public init() {}

  public func register(_ manager: ExtensionManager, site: String) { managers.withLock { $0[site] = manager } }

  /// Cuts `site` off (calls to it fail as unreachable) or reconnects it.
  public func setReachable(_ site: String, _ reachable: Bool) {
    unreachable.withLock { cut in
      if reachable { cut.remove(site) } else { cut.insert(site) }
    }
  }

  public func channel(for site: String) -> any PeerChannel { LoopbackPeerChannel(site: site, network: self) }

  /// Calls made over the network so far.
  public var messageCount: Int { messages.withLock { $0 } }

  func manager(_ site: String) throws -> ExtensionManager {
    messages.withLock { $0 += 1 }
    if unreachable.withLock({ $0.contains(site) }) { throw LoopbackUnreachable(site: site) }
    guard let manager = managers.withLock({ $0[site] }) else { throw LoopbackUnreachable(site: site) }
    return manager
  }

  func isKnown(_ site: String) -> Bool { managers.withLock { $0[site] != nil } }
}

struct LoopbackUnreachable: Error, CustomStringConvertible {
  var site: String
  var description: String { "unreachable: \(site) does not answer" }
}

struct LoopbackPeerChannel: PeerChannel {
  let site: String
  let network: LoopbackPeerNetwork

  func isKnown(_ other: String) -> Bool { network.isKnown(other) }

  /// Counts a request and its reply at their JSON size.
  private func account<Request: Encodable, Reply: Encodable>(
    _ other: String, _ request: Request?, _ reply: Reply
  ) {
    let encoder = JSONEncoder()
    let requestBytes = request.flatMap { try? encoder.encode($0).count } ?? 0
    let replyBytes = (try? encoder.encode(reply).count) ?? 0
    network.account(from: site, to: other, bytes: requestBytes)
    network.account(from: other, to: site, bytes: replyBytes)
  }

  func usedIdentifiers(at other: String) async throws -> UsedIdentifiers {
    let reply = await (try network.manager(other)).handleUsedIdentifiers(from: site)
    account(other, String?.none, reply)
    return reply
  }

  func reserve(_ reservation: Reservation, at other: String) async throws -> ReservationReply {
    let reply = try await network.manager(other).handleReserve(reservation, from: site)
    account(other, reservation, reply)
    return reply
  }

  func join(_ description: ExtensionDescription, at other: String) async throws -> JoinReply {
    let reply = try await network.manager(other).handleJoin(description, from: site)
    account(other, description, reply)
    return reply
  }

  func leave(_ id: ExtensionID, owner: String, at other: String) async throws {
    try await network.manager(other).handleLeave(id, from: site)
    account(other, id, "")
  }
}
