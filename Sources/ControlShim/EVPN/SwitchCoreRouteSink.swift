import Dataplane
import Synchronization

/// Applies what the EVPN speaker decided onto a `SwitchCore`: best type-2 routes become
/// FDB entries of origin control, withdrawals remove them, type-3 PMSI routes become
/// flood-list members, and IPv4 MAC/IP routes become ARP-suppression bindings. Remembers which peer and MAC-mobility sequence each entry came
/// from, so that `show fdb` can say so (`FDBAnnotator`).
///
/// Threading: the speaker calls in on its event-loop thread; `annotate` runs on the
/// control-socket thread. The table is behind a `Mutex`; `SwitchCore` is thread-safe.
/// Only control entries are touched: a static MAC is never replaced, and local
/// switching never depends on a session being up.
public final class SwitchCoreRouteSink: EVPNRouteSink, FDBAnnotator, @unchecked Sendable {
  public let core: SwitchCore

  struct Key: Hashable {
    var vni: UInt32
    var mac: UInt64
  }

  /// One installed route (MAC-only or MAC/IP) of a MAC.
  struct Route {
    var ip: IPAddress?
    var vtep: IPAddress
    var sequence: UInt32
    var peer: UInt16
  }

  /// Routes of one MAC; nearly always one, so the rest live in an array that stays
  /// empty (no allocation). The last installed route decides the VTEP.
  struct Routes {
    var current: Route
    var others: [Route] = []
  }

  struct Table {
    var routes: [Key: Routes] = [:]
    var peerNames: [String] = []
    var peerIndex: [String: UInt16] = [:]
    var installs = 0
    var removals = 0
  }

  private let table = Mutex(Table())

  public init(core: SwitchCore, expectedRoutes: Int = 0) {
    self.core = core
    if expectedRoutes > 0 { table.withLock { $0.routes.reserveCapacity(expectedRoutes) } }
  }

  // MARK: EVPNRouteSink

  public func installMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, sticky: Bool,
    peer: String
  ) {
    table.withLock { table in
      let peerIndex: UInt16
      if let known = table.peerIndex[peer] {
        peerIndex = known
      } else {
        peerIndex = UInt16(truncatingIfNeeded: table.peerNames.count)
        table.peerNames.append(peer)
        table.peerIndex[peer] = peerIndex
      }
      let route = Route(ip: ip, vtep: vtep, sequence: sequence, peer: peerIndex)
      let key = Key(vni: vni, mac: mac.rawValue)
      table.installs += 1
      if var routes = table.routes[key] {
        if routes.current.ip != ip {
          routes.others.removeAll { $0.ip == ip }
          routes.others.append(routes.current)
        }
        routes.current = route
        table.routes[key] = routes
      } else {
        table.routes[key] = Routes(current: route)
      }
    }
    // The speaker only calls this for a remote best path: it already beat any local one.
    core.installRemoteMAC(vni: vni, mac: mac, vtep: vtep, overrideLocal: true)
    // A MAC/IP route also binds the IP for ARP suppression (IPv4 only; the core ignores
    // others).
    if let ip { core.installARP(vni: vni, ip: ip, mac: mac) }
  }

  public func removeMAC(vni: UInt32, mac: MACAddress, ip: IPAddress?) {
    // Only while the IP is still bound to this MAC: a newer route may have moved it.
    if let ip { core.removeARP(vni: vni, ip: ip, mac: mac) }
    let remaining: IPAddress? = table.withLock { table in
      let key = Key(vni: vni, mac: mac.rawValue)
      guard var routes = table.routes[key] else { return nil }
      table.removals += 1
      if routes.current.ip == ip {
        guard let next = routes.others.popLast() else {
          table.routes[key] = nil
          return nil
        }
        routes.current = next
      } else {
        routes.others.removeAll { $0.ip == ip }
      }
      table.routes[key] = routes
      return routes.current.vtep
    }
    if let remaining {
      core.installRemoteMAC(vni: vni, mac: mac, vtep: remaining, overrideLocal: true)
    } else {
      core.removeRemoteMAC(vni: vni, mac: mac)
    }
  }

  public func addFloodMember(vni: UInt32, vtep: IPAddress) {
    core.addFloodMember(vni: vni, vtep: vtep)
  }

  public func removeFloodMember(vni: UInt32, vtep: IPAddress) {
    core.removeFloodMember(vni: vni, vtep: vtep)
  }

  // MARK: FDBAnnotator

  public func annotate(_ row: inout FDBRow, vni: UInt32, mac: MACAddress) {
    table.withLock { table in
      guard let route = table.routes[Key(vni: vni, mac: mac.rawValue)]?.current else { return }
      row.peer = Int(route.peer) < table.peerNames.count ? table.peerNames[Int(route.peer)] : nil
      row.sequence = route.sequence
    }
  }

  // MARK: introspection

  /// MACs (per VNI) the sink currently holds a remote route for.
  public var remoteMACCount: Int { table.withLock { $0.routes.count } }

  /// Approximate bytes of the peer/sequence table (hash buckets + overflow arrays).
  public var tableBytes: Int {
    table.withLock { table in
      let bucket = MemoryLayout<Key>.stride + MemoryLayout<Routes>.stride
      var overflow = 0
      for routes in table.routes.values where !routes.others.isEmpty {
        overflow += 32 + routes.others.capacity * MemoryLayout<Route>.stride
      }
      return table.routes.capacity * bucket + table.routes.capacity / 8 + overflow
    }
  }

  /// Calls the speaker made (installs, removals) since start.
  public var callCounts: (installs: Int, removals: Int) { table.withLock { ($0.installs, $0.removals) } }

  /// The peer and sequence of the route installed for `vni`/`mac`, if any.
  public func route(vni: UInt32, mac: MACAddress) -> (peer: String, sequence: UInt32, vtep: IPAddress)? {
    table.withLock { table in
      guard let route = table.routes[Key(vni: vni, mac: mac.rawValue)]?.current else { return nil }
      return (table.peerNames[Int(route.peer)], route.sequence, route.vtep)
    }
  }

  /// Forgets the routes of VNIs that no longer exist (their FDB entries went with the
  /// bridge domain).
  func forget(vnis: Set<UInt32>) {
    guard !vnis.isEmpty else { return }
    table.withLock { table in table.routes = table.routes.filter { !vnis.contains($0.key.vni) } }
  }
}
