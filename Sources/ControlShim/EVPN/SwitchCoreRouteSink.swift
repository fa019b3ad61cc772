import Dataplane
import Synchronization

/// Applies what the EVPN speaker decided onto a `SwitchCore`: best type-2 routes become
/// FDB entries of origin control, withdrawals remove them, type-3 PMSI routes become
/// flood-list members, and MAC/IP routes become ARP / neighbour-discovery suppression bindings. Remembers which peer and MAC-mobility sequence each entry came
/// from, so that `show fdb` can say so (`FDBAnnotator`).
///
/// Threading: the speaker calls in on its event-loop thread; `annotate` runs on the
/// control-socket thread. The table is behind a `Mutex`; `SwitchCore` is thread-safe.
/// Only control entries are touched: a static MAC is never replaced, and local
/// switching never depends on a session being up.
///
/// Batches: between `beginBatch()` and `endBatch()` (one UPDATE) the calls are queued;
/// `endBatch()` applies them in order to the table (one lock hold) and then to the
/// dataplane (`SwitchCore.applyRemoteMACs`: one FDB writer-lock hold).
///
/// Storage: a MAC with one MAC-only route (the bulk of any table) is one 16-byte hash
/// entry, its key and a packed word (sequence, VTEP, peer); MACs with MAC/IP routes or
/// several routes keep the full route list in a side table.
// @unchecked: the route table is behind a mutex; the open batch is touched only on the
// speaker's event loop (see the threading notes above).
public final class SwitchCoreRouteSink: EVPNRouteSink, FDBAnnotator, @unchecked Sendable {
  public let core: SwitchCore

  /// (VNI index, MAC) in one word: the sink's own index of the VNI in the top 16 bits.
  struct Key: Hashable {
    var raw: UInt64

    init(vniIndex: UInt16, mac: UInt64) { raw = UInt64(vniIndex) << 48 | mac & 0xFFFF_FFFF_FFFF }
    init(raw: UInt64) { self.raw = raw }

    var vniIndex: UInt16 { UInt16(truncatingIfNeeded: raw >> 48) }
    var mac: UInt64 { raw & 0xFFFF_FFFF_FFFF }

    func hash(into hasher: inout Hasher) { hasher.combine(raw) }
    // Dictionary hashes with this: one multiply-xorshift instead of SipHash per lookup.
    func _rawHashValue(seed: Int) -> Int { fastHash(raw, seed: seed) }
  }

  /// One installed route (MAC-only or MAC/IP) of a MAC.
  struct Route {
    var ip: IPAddress?
    var vtep: UInt16
    var sequence: UInt32
    var peer: UInt16
  }

  /// Routes of one MAC; the last installed route decides the VTEP.
  struct Routes {
    var current: Route
    var others: [Route] = []
  }

  /// A single MAC-only route packed in a word: sequence (32 bits), VTEP (16), peer
  /// (15), and the low bit set when the routes are in `Table.multi` instead.
  struct Packed {
    static let multi = Packed(raw: 1)
    var raw: UInt64

    init(raw: UInt64) { self.raw = raw }
    init?(_ route: Route) {
      guard route.ip == nil, route.peer < 0x8000 else { return nil }
      raw = UInt64(route.sequence) << 32 | UInt64(route.vtep) << 16 | UInt64(route.peer) << 1
    }

    var isMulti: Bool { raw & 1 != 0 }
    var route: Route {
      Route(
        ip: nil, vtep: UInt16(truncatingIfNeeded: raw >> 16), sequence: UInt32(truncatingIfNeeded: raw >> 32),
        peer: UInt16(truncatingIfNeeded: raw >> 1) & 0x7FFF)
    }
  }

  /// Dataplane changes queued during a batch.
  enum Change {
    case mac(SwitchCore.RemoteMACChange)
    case installARP(vni: UInt32, ip: IPAddress, mac: MACAddress)
    case removeARP(vni: UInt32, ip: IPAddress, mac: MACAddress)
    case setARPConflict(vni: UInt32, ip: IPAddress, mac: MACAddress)
    case clearARPConflict(vni: UInt32, ip: IPAddress, mac: MACAddress?, control: Bool)
  }

  struct Table {
    /// Key.raw -> Packed.raw, one 16-byte slot per MAC.
    let routes = PackedRouteTable()
    var multi: [Key: Routes] = [:]
    var vnis: [UInt32] = []
    var vniIndex: [UInt32: UInt16] = [:]
    var vteps: [IPAddress] = []
    var vtepIndex: [IPAddress: UInt16] = [:]
    var peerNames: [String] = []
    var peerIndex: [String: UInt16] = [:]
    var installs = 0
    var removals = 0
    // One-entry caches: the routes of one UPDATE share VNI, VTEP and peer.
    var lastVNI: (vni: UInt32, index: UInt16)?
    var lastVTEP: (IPAddress, UInt16)?
    var lastPeer: (String, UInt16)?
    /// Dataplane changes of the operations applied, not yet handed to the core.
    var pending: [Change] = []

    mutating func key(vni: UInt32, mac: MACAddress, create: Bool) -> Key? {
      if let last = lastVNI, last.vni == vni { return Key(vniIndex: last.index, mac: mac.rawValue) }
      let index: UInt16
      if let known = vniIndex[vni] {
        index = known
      } else {
        guard create else { return nil }
        // Index 0 is never used, so no key is all zero in its top bits by accident.
        index = UInt16(truncatingIfNeeded: vnis.count + 1)
        vnis.append(vni)
        vniIndex[vni] = index
      }
      lastVNI = (vni, index)
      return Key(vniIndex: index, mac: mac.rawValue)
    }

    mutating func vtep(_ address: IPAddress) -> UInt16 {
      Self.intern(address, last: &lastVTEP, values: &vteps, indices: &vtepIndex)
    }

    mutating func peer(_ name: String) -> UInt16 {
      Self.intern(name, last: &lastPeer, values: &peerNames, indices: &peerIndex)
    }

    /// A small dense index for a value seen in routes (a VTEP address, a peer name),
    /// the last one remembered: an UPDATE's routes nearly always share both.
    private static func intern<Value: Hashable>(
      _ value: Value, last: inout (Value, UInt16)?, values: inout [Value], indices: inout [Value: UInt16]
    ) -> UInt16 {
      if let (lastValue, lastIndex) = last, lastValue == value { return lastIndex }
      let index: UInt16
      if let known = indices[value] {
        index = known
      } else {
        index = UInt16(truncatingIfNeeded: values.count)
        values.append(value)
        indices[value] = index
      }
      last = (value, index)
      return index
    }

    func current(_ key: Key) -> Route? {
      guard let raw = routes[key.raw] else { return nil }
      let packed = Packed(raw: raw)
      return packed.isMulti ? multi[key]?.current : packed.route
    }

    /// Stores `routes` for `key`, packed when it is a single MAC-only route.
    mutating func store(_ key: Key, _ list: Routes) {
      if list.others.isEmpty, let packed = Packed(list.current) {
        if let previous = routes.updateValue(packed.raw, forKey: key.raw), Packed(raw: previous).isMulti {
          multi[key] = nil
        }
      } else {
        routes[key.raw] = Packed.multi.raw
        multi[key] = list
      }
    }

    /// The general case: `route` becomes current, replacing the route with its IP.
    mutating func installInList(_ key: Key, _ route: Route) {
      if var routes = list(key) {
        if routes.current.ip != route.ip {
          routes.others.removeAll { $0.ip == route.ip }
          routes.others.append(routes.current)
        }
        routes.current = route
        store(key, routes)
      } else {
        store(key, Routes(current: route))
      }
    }

    func list(_ key: Key) -> Routes? {
      guard let raw = routes[key.raw] else { return nil }
      let packed = Packed(raw: raw)
      return packed.isMulti ? multi[key] : Routes(current: packed.route)
    }

    mutating func remove(_ key: Key) {
      if let previous = routes.removeValue(forKey: key.raw), Packed(raw: previous).isMulti {
        multi[key] = nil
      }
    }
  }

  /// One speaker call, as queued during a batch. Plain data (copied without reference
  /// counting): the peer is an index into `Batch.peerNames`.
  enum Operation {
    case install(
      vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, peer: UInt16)
    case remove(vni: UInt32, mac: MACAddress, ip: IPAddress?)
    /// An address conflict started (`set`) or ended; applied in order with the routes.
    case conflict(Change)
  }

  /// Calls queued by an open batch. Only the speaker's thread touches it (the sink
  /// protocol's calls come one at a time from there), so it needs no lock; a per-call
  /// lock would also make every call wait for the table's cache misses.
  final class Batch {
    @exclusivity(unchecked) var depth = 0
    @exclusivity(unchecked) var operations: [Operation] = []
    @exclusivity(unchecked) var peerNames: [String] = []

    /// The batch-local index of a peer name (nearly always the last one).
    func peer(_ name: String) -> UInt16 {
      if let last = peerNames.last, last == name { return UInt16(truncatingIfNeeded: peerNames.count - 1) }
      if let known = peerNames.firstIndex(of: name) { return UInt16(truncatingIfNeeded: known) }
      peerNames.append(name)
      return UInt16(truncatingIfNeeded: peerNames.count - 1)
    }
  }

  private let table = Mutex(Table())
  private let batch = Batch()

  public init(core: SwitchCore, expectedRoutes: Int = 0) {
    self.core = core
    // Sized (and its memory touched) now, not while a session's table streams in.
    if expectedRoutes > 0 { table.withLock { $0.routes.reserveCapacity(expectedRoutes) } }
  }

  // MARK: EVPNRouteSink

  public func beginBatch() { batch.depth += 1 }

  public func endBatch() {
    guard batch.depth > 0 else { return }
    batch.depth -= 1
    guard batch.depth == 0, !batch.operations.isEmpty else { return }
    var operations: [Operation] = []
    swap(&operations, &batch.operations)
    let peerNames = batch.peerNames
    let changes = table.withLock { table in
      // Touch every slot first: the misses of a whole UPDATE overlap instead of
      // being paid one route at a time.
      var keys: [UInt64] = []
      keys.reserveCapacity(operations.count)
      for operation in operations {
        if case .install(let vni, let mac, _, _, _, _) = operation,
          let key = table.key(vni: vni, mac: mac, create: true)
        {
          keys.append(key.raw)
        }
      }
      keys.withUnsafeBufferPointer { table.routes.warm($0) }
      for operation in operations { table.apply(operation, peerNames: peerNames) }
      return table.takePending()
    }
    operations.removeAll(keepingCapacity: true)
    swap(&operations, &batch.operations)
    apply(changes)
  }

  public func installMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, sticky: Bool,
    peer: String
  ) {
    if batch.depth > 0 {
      batch.operations.append(
        .install(vni: vni, mac: mac, ip: ip, vtep: vtep, sequence: sequence, peer: batch.peer(peer)))
    } else {
      let operation = Operation.install(vni: vni, mac: mac, ip: ip, vtep: vtep, sequence: sequence, peer: 0)
      apply(
        table.withLock { table in
          table.apply(operation, peerNames: [peer])
          return table.takePending()
        })
    }
  }

  public func removeMAC(vni: UInt32, mac: MACAddress, ip: IPAddress?) {
    let operation = Operation.remove(vni: vni, mac: mac, ip: ip)
    if batch.depth > 0 {
      batch.operations.append(operation)
    } else {
      apply(
        table.withLock { table in
          table.apply(operation, peerNames: [])
          return table.takePending()
        })
    }
  }

  public func addressConflictStarted(vni: UInt32, ip: IPAddress, mac: MACAddress) {
    queueConflict(.setARPConflict(vni: vni, ip: ip, mac: mac))
  }

  public func addressConflictCleared(vni: UInt32, ip: IPAddress, mac: MACAddress?, local: Bool) {
    queueConflict(.clearARPConflict(vni: vni, ip: ip, mac: mac, control: !local))
  }

  private func queueConflict(_ change: Change) {
    if batch.depth > 0 {
      batch.operations.append(.conflict(change))
    } else {
      apply([change])
    }
  }

  public func addFloodMember(vni: UInt32, vtep: IPAddress) {
    core.addFloodMember(vni: vni, vtep: vtep)
  }

  public func removeFloodMember(vni: UInt32, vtep: IPAddress) {
    core.removeFloodMember(vni: vni, vtep: vtep)
  }

  /// Applies dataplane changes in order; consecutive FDB changes go in one batch.
  private func apply(_ changes: [Change]) {
    guard !changes.isEmpty else { return }
    var macs: [SwitchCore.RemoteMACChange] = []
    macs.reserveCapacity(changes.count)
    for change in changes {
      switch change {
      case .mac(let change): macs.append(change)
      case .installARP(let vni, let ip, let mac):
        core.installARP(vni: vni, ip: ip, mac: mac)
      case .removeARP(let vni, let ip, let mac):
        core.removeARP(vni: vni, ip: ip, mac: mac)
      case .setARPConflict(let vni, let ip, let mac):
        core.setARPConflict(vni: vni, ip: ip, mac: mac)
      case .clearARPConflict(let vni, let ip, let mac, let control):
        core.clearARPConflict(vni: vni, ip: ip, mac: mac, control: control)
      }
    }
    core.applyRemoteMACs(macs)
  }

  // MARK: FDBAnnotator

  public func annotate(_ row: inout FDBRow, vni: UInt32, mac: MACAddress) {
    table.withLock { table in
      guard let index = table.vniIndex[vni],
        let route = table.current(Key(vniIndex: index, mac: mac.rawValue))
      else { return }
      row.peer = Int(route.peer) < table.peerNames.count ? table.peerNames[Int(route.peer)] : nil
      row.sequence = route.sequence
    }
  }

  // MARK: introspection

  /// MACs (per VNI) the sink currently holds a remote route for.
  public var remoteMACCount: Int { table.withLock { $0.routes.count } }

  /// Bytes of the peer/sequence table: hash buckets (key + value, at the table's real
  /// bucket count, plus the occupancy bitmap) and the side table of multi-route MACs.
  public var tableBytes: Int {
    table.withLock { table in
      var bytes = table.routes.memoryBytes
      bytes += dictionaryBytes(
        buckets: table.multi.capacity, entry: MemoryLayout<Key>.stride + MemoryLayout<Routes>.stride)
      for routes in table.multi.values where !routes.others.isEmpty {
        bytes += 32 + routes.others.capacity * MemoryLayout<Route>.stride
      }
      return bytes
    }
  }

  /// Calls the speaker made (installs, removals) since start.
  public var callCounts: (installs: Int, removals: Int) { table.withLock { ($0.installs, $0.removals) } }

  /// The peer and sequence of the route installed for `vni`/`mac`, if any.
  public func route(vni: UInt32, mac: MACAddress) -> (peer: String, sequence: UInt32, vtep: IPAddress)? {
    table.withLock { table in
      guard let index = table.vniIndex[vni],
        let route = table.current(Key(vniIndex: index, mac: mac.rawValue))
      else { return nil }
      return (table.peerNames[Int(route.peer)], route.sequence, table.vteps[Int(route.vtep)])
    }
  }

  /// Forgets the routes of VNIs that no longer exist (their FDB entries went with the
  /// bridge domain).
  func forget(vnis: Set<UInt32>) {
    guard !vnis.isEmpty else { return }
    table.withLock { table in
      let indices = Set(vnis.compactMap { table.vniIndex[$0] })
      guard !indices.isEmpty else { return }
      table.routes.removeAll { key, _ in indices.contains(Key(raw: key).vniIndex) }
      table.multi = table.multi.filter { !indices.contains($0.key.vniIndex) }
    }
  }
}

extension SwitchCoreRouteSink.Table {
  fileprivate mutating func takePending() -> [SwitchCoreRouteSink.Change] {
    defer { pending.removeAll(keepingCapacity: true) }
    return pending
  }

  /// Records one speaker call and queues its dataplane changes in `pending`.
  fileprivate mutating func apply(_ operation: SwitchCoreRouteSink.Operation, peerNames: [String]) {
    switch operation {
    case .install(let vni, let mac, let ip, let vtep, let sequence, let peer):
      let route = SwitchCoreRouteSink.Route(
        ip: ip, vtep: self.vtep(vtep), sequence: sequence, peer: self.peer(peerNames[Int(peer)]))
      let key = key(vni: vni, mac: mac, create: true)!
      installs += 1
      if let packed = SwitchCoreRouteSink.Packed(route) {
        // A MAC-only route over nothing or over one MAC-only route: one hash lookup.
        if let previous = routes.updateValue(packed.raw, forKey: key.raw),
          SwitchCoreRouteSink.Packed(raw: previous).isMulti
        {
          routes[key.raw] = previous
          installInList(key, route)
        }
      } else {
        installInList(key, route)
      }
      // The speaker only calls this for a remote best path: it already beat any local one.
      pending.append(.mac(.install(vni: vni, mac: mac, vtep: vtep)))
      // A MAC/IP route also binds the IP for ARP (IPv4) or neighbour discovery (IPv6)
      // suppression.
      if let ip { pending.append(.installARP(vni: vni, ip: ip, mac: mac)) }
    case .remove(let vni, let mac, let ip):
      // Only while the IP is still bound to this MAC: a newer route may have moved it.
      if let ip { pending.append(.removeARP(vni: vni, ip: ip, mac: mac)) }
      var remaining: IPAddress?
      if let key = key(vni: vni, mac: mac, create: false), var list = list(key) {
        removals += 1
        if list.current.ip == ip {
          if let next = list.others.popLast() {
            list.current = next
            store(key, list)
            remaining = vteps[Int(next.vtep)]
          } else {
            remove(key)
          }
        } else {
          list.others.removeAll { $0.ip == ip }
          store(key, list)
          remaining = vteps[Int(list.current.vtep)]
        }
      }
      pending.append(.mac(SwitchCore.RemoteMACChange(vni: vni, mac: mac, vtep: remaining)))
    case .conflict(let change):
      pending.append(change)
    }
  }
}

/// Bytes a Swift dictionary of `capacity` takes: its power-of-two bucket count (the
/// maximum load is 3/4, so `capacity` is 3/4 of the buckets) times the entry size, plus
/// one bit per bucket.
func dictionaryBytes(buckets capacity: Int, entry: Int) -> Int {
  guard capacity > 0 else { return 0 }
  var buckets = 1
  while buckets * 3 / 4 < capacity { buckets <<= 1 }
  return buckets * entry + buckets / 8
}

/// Per-process secret for `fastHash`, so hash positions differ between runs.
private let fastHashSecret = UInt64.random(in: 1...UInt64.max)

/// A cheap 64-bit mixer for hash tables keyed by packed integers (MAC, VNI, IP words):
/// two multiply-xorshift rounds with a per-process secret and the table's seed.
@inline(__always)
func fastHash(_ value: UInt64, seed: Int) -> Int {
  var h = (value ^ fastHashSecret ^ UInt64(UInt(bitPattern: seed))) &* 0x9E37_79B9_7F4A_7C15
  h ^= h >> 29
  h = h &* 0xBF58_476D_1CE4_E5B9
  h ^= h >> 32
  return Int(Int64(bitPattern: h))
}

@inline(__always)
func fastHash(_ a: UInt64, _ b: UInt64, seed: Int) -> Int {
  fastHash(a ^ (b &* 0x94D0_49BB_1331_11EB).rotated(by: 31), seed: seed)
}

extension UInt64 {
  @inline(__always)
  fileprivate func rotated(by count: UInt64) -> UInt64 { self << count | self >> (64 - count) }
}
