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

  func usedIdentifiers(at other: String) async throws -> UsedIdentifiers {
    await (try network.manager(other)).handleUsedIdentifiers(from: site)
  }

  func reserve(_ reservation: Reservation, at other: String) async throws -> ReservationReply {
    try await network.manager(other).handleReserve(reservation, from: site)
  }

  func join(_ description: ExtensionDescription, at other: String) async throws -> JoinReply {
    try await network.manager(other).handleJoin(description, from: site)
  }

  func leave(_ id: ExtensionID, owner: String, at other: String) async throws {
    try await network.manager(other).handleLeave(id, from: site)
  }
}
