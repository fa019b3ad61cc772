import Dataplane

/// Packed key of a MAC/IP route: 24-bit VNI and IP family in one word, the MAC, and
/// the IP as two words (zero when absent). 32 bytes, no heap storage.
struct MACRouteKey: Hashable {
  /// VNI in the low 24 bits, IP kind (0 none, 4, 6) above.
  let vniAndKind: UInt32
  let mac: UInt64
  let ipHigh: UInt64
  let ipLow: UInt64

  init(vni: UInt32, mac: UInt64, ip: IPAddress?) {
    switch ip {
    case nil:
      vniAndKind = vni & 0xFF_FFFF
      ipHigh = 0
      ipLow = 0
    case .v4(let address)?:
      vniAndKind = vni & 0xFF_FFFF | 4 << 24
      ipHigh = 0
      ipLow = UInt64(address)
    case .v6(let high, let low)?:
      vniAndKind = vni & 0xFF_FFFF | 6 << 24
      ipHigh = high
      ipLow = low
    }
    self.mac = mac
  }

  var vni: UInt32 { vniAndKind & 0xFF_FFFF }
  var ip: IPAddress? {
    switch vniAndKind >> 24 {
    case 4: return .v4(UInt32(truncatingIfNeeded: ipLow))
    case 6: return .v6(ipHigh, ipLow)
    default: return nil
    }
  }
  var macOnly: MACRouteKey { MACRouteKey(vni: vni, mac: mac, ip: nil) }

  func hash(into hasher: inout Hasher) {
    // MAC and VNI almost always tell entries apart; the IP words rarely add entropy.
    hasher.combine(mac ^ UInt64(vniAndKind) << 48)
    hasher.combine(ipLow)
  }

  // What Dictionary hashes with: a multiply-xorshift mix instead of SipHash (a third
  // of the import's time went to Hasher). Equal keys hash equal: same words.
  func _rawHashValue(seed: Int) -> Int {
    fastHash(mac ^ UInt64(vniAndKind) << 48, ipLow ^ ipHigh, seed: seed)
  }
}

/// One peer's (or our own) route for a key. 24 bytes.
struct MACPath: Equatable {
  static let localPeer: UInt16 = 0
  static let stickyFlag: UInt8 = 1, staleFlag: UInt8 = 2
  /// RFC 9494: long-lived stale (the LLGR phase, or received with LLGR_STALE): least
  /// preferred. `noLongLivedFlag`: received with NO_LLGR, removed when LLGR starts.
  static let longLivedStaleFlag: UInt8 = 4, noLongLivedFlag: UInt8 = 8

  var routeDistinguisher: UInt64
  /// Index into `EVPNRIB.vteps`.
  var vtepID: UInt32
  var sequence: UInt32
  /// 0 for locally learnt MACs, else the peer index.
  var peer: UInt16
  var flags: UInt8

  var isSticky: Bool { flags & Self.stickyFlag != 0 }
  var isStale: Bool { flags & Self.staleFlag != 0 }
  var isLongLivedStale: Bool { flags & Self.longLivedStaleFlag != 0 }
  var isLocal: Bool { peer == Self.localPeer }
}

/// The paths of one key: the first inline (the common case of one VTEP announcing a
/// MAC costs no allocation), others in an array that stays empty otherwise.
struct MACPathSet {
  var first: MACPath
  var others: [MACPath] = []

  var count: Int { 1 + others.count }
  var all: [MACPath] { [first] + others }

  var localIndex: Int? {
    if first.isLocal { return 0 }
    return others.firstIndex(where: \.isLocal).map { $0 + 1 }
  }

  func contains(peer: UInt16) -> Bool { first.peer == peer || others.contains { $0.peer == peer } }

  func index(peer: UInt16, routeDistinguisher: UInt64) -> Int? {
    if first.peer == peer && first.routeDistinguisher == routeDistinguisher { return 0 }
    if let index = others.firstIndex(where: { $0.peer == peer && $0.routeDistinguisher == routeDistinguisher }
    ) {
      return index + 1
    }
    return nil
  }

  subscript(index: Int) -> MACPath {
    get { index == 0 ? first : others[index - 1] }
    set { if index == 0 { first = newValue } else { others[index - 1] = newValue } }
  }

  /// Removes a path; returns false when the set became empty (caller drops the entry).
  mutating func remove(at index: Int) -> Bool {
    if index == 0 {
      guard !others.isEmpty else { return false }
      first = others.removeFirst()
    } else {
      others.remove(at: index - 1)
    }
    return true
  }
}

/// Remembers MAC moves and freezes MACs that move too often (RFC 7432 section 15.1).
struct DuplicateMACDetector {
  struct Key: Hashable {
    let vni: UInt32
    let mac: UInt64
  }

  /// Why and since when a MAC is frozen.
  struct Freeze: Equatable {
    var moves: Int
    /// Clock time (seconds) of the move that froze it.
    var since: Double
  }

  var maxMoves: Int
  var window: Double
  private(set) var moves: [Key: [Double]] = [:]
  private(set) var frozen: [Key: Freeze] = [:]

  /// Records a move; returns the number of moves in the window when this one froze the MAC.
  mutating func recordMove(_ key: Key, at now: Double) -> Int? {
    guard frozen[key] == nil else { return nil }
    var history = moves[key, default: []].filter { now - $0 < window }
    history.append(now)
    moves[key] = history
    if history.count >= maxMoves {
      frozen[key] = Freeze(moves: history.count, since: now)
      return history.count
    }
    return nil
  }

  /// Cheap when nothing is frozen (the common case on the route-install path): no hashing.
  func isFrozen(_ key: Key) -> Bool { !frozen.isEmpty && frozen[key] != nil }

  /// Lifts a freeze and forgets the MAC's move history; returns whether it was frozen.
  @discardableResult
  mutating func unfreeze(_ key: Key) -> Bool {
    moves[key] = nil
    return frozen.removeValue(forKey: key) != nil
  }
}

/// The EVPN Loc-RIB: every peer's type-2 route per (VNI, MAC, IP) plus our own, best
/// path by RFC 7432 section 15, and type-3 flood lists per VNI. Not thread-safe: the
/// speaker confines it to its event loop.
final class EVPNRIB {
  private(set) var macRoutes: [MACRouteKey: MACPathSet] = [:]
  // Read once per reported route; never accessed re-entrantly.
  @exclusivity(unchecked) private(set) var vteps: [IPAddress] = []
  private var vtepIDs: [IPAddress: UInt32] = [:]

  struct FloodKey: Hashable {
    let peer: UInt16
    let routeDistinguisher: UInt64
    let ethernetTag: UInt32
    let originatingRouter: IPAddress
  }
  /// Per VNI: each type-3 route and the VTEP it adds.
  private(set) var floodRoutes: [UInt32: [FloodKey: IPAddress]] = [:]
  private var floodRefCounts: [UInt32: [IPAddress: Int]] = [:]

  /// Which VNI a peer's RD (and Ethernet tag) was imported into, so withdrawals, which
  /// carry no route targets, find their entry.
  struct PeerRDKey: Hashable {
    let peer: UInt16
    let routeDistinguisher: UInt64
    let ethernetTag: UInt32
  }
  private var importedVNIByRD: [PeerRDKey: UInt32] = [:]

  /// Routes held per peer index (type 2 + type 3), for max-prefix and status.
  private let routeCounts = PeerRouteCounts()

  var detector: DuplicateMACDetector
  /// Called when a move freezes a MAC, after the sink heard of it (the speaker
  /// withdraws its own advertisement). Must not change the RIB.
  var onFreeze: ((DuplicateMACDetector.Key, Int) -> Void)?
  /// Address conflicts (one IP claimed by several MACs, one MAC tied between two
  /// VTEPs): see `EVPNRIB+Conflicts.swift`.
  var conflicts = ConflictTracker()
  /// Called when a conflict starts or ends, after the sink heard of it. Must not change
  /// the RIB (the speaker defers what it does).
  var onConflict: ((ConflictChange) -> Void)?
  /// Keys of frozen MACs whose best path changed while frozen: the best path the sink
  /// was last told about (nil: none), to catch the sink up when the freeze is lifted.
  private var heldBest: [MACRouteKey: MACPath?] = [:]
  let sink: EVPNRouteSink?
  let peerName: (UInt16) -> String
  let clock: () -> Double

  init(
    sink: EVPNRouteSink?, maxMoves: Int, moveWindow: Double, peerName: @escaping (UInt16) -> String,
    clock: @escaping () -> Double
  ) {
    self.sink = sink
    self.detector = DuplicateMACDetector(maxMoves: maxMoves, window: moveWindow)
    self.peerName = peerName
    self.clock = clock
  }

  func reserveCapacity(_ count: Int) { macRoutes.reserveCapacity(count) }

  /// Bytes the type-2 table occupies: hash-table buckets (key + inline path set, at the
  /// real power-of-two bucket count, plus the occupancy bitmap) and the overflow arrays
  /// of keys with several paths.
  var macTableBytes: Int {
    let bucket = MemoryLayout<MACRouteKey>.stride + MemoryLayout<MACPathSet>.stride
    var overflow = 0
    for set in macRoutes.values where !set.others.isEmpty {
      overflow += 32 + set.others.capacity * MemoryLayout<MACPath>.stride
    }
    return dictionaryBytes(buckets: macRoutes.capacity, entry: bucket) + overflow
  }

  func vtepID(_ address: IPAddress) -> UInt32 {
    if let id = vtepIDs[address] { return id }
    let id = UInt32(vteps.count)
    vteps.append(address)
    vtepIDs[address] = id
    return id
  }

  func vtep(_ id: UInt32) -> IPAddress { vteps[Int(id)] }

  // MARK: best path

  /// RFC 9494 section 4.3: any path that is not long-lived stale first; then RFC 7432
  /// section 15: sticky first, then the higher sequence, then the lower VTEP address;
  /// ties (same VTEP) prefer the local route, then the lower peer index.
  func isBetter(_ a: MACPath, than b: MACPath) -> Bool {
    if a.isLongLivedStale != b.isLongLivedStale { return b.isLongLivedStale }
    if a.isSticky != b.isSticky { return a.isSticky }
    if a.sequence != b.sequence { return a.sequence > b.sequence }
    if a.vtepID != b.vtepID { return vtep(a.vtepID) < vtep(b.vtepID) }
    return a.peer < b.peer
  }

  func best(_ set: MACPathSet) -> MACPath {
    var winner = set.first
    for path in set.others where isBetter(path, than: winner) { winner = path }
    return winner
  }

  func best(for key: MACRouteKey) -> MACPath? { macRoutes[key].map(best) }

  /// Highest sequence any remote peer holds for this MAC (with or without IP).
  func highestRemoteSequence(_ key: MACRouteKey) -> UInt32? {
    var highest: UInt32?
    for candidate in [key, key.macOnly] {
      guard let set = macRoutes[candidate] else { continue }
      for path in set.all where !path.isLocal { highest = max(highest ?? 0, path.sequence) }
    }
    return highest
  }

  // MARK: type 2 changes

  /// Outcome of a change, for the speaker to advertise or withdraw our own route.
  enum LocalOutcome: Equatable {
    case unchanged
    /// Our local route no longer wins and was removed: withdraw it from peers.
    case localLost(MACPath)
  }

  /// Adds or replaces a path and reports the best-path change to the sink. The common
  /// cases cost one or two hash lookups: the entry is edited in place.
  @discardableResult
  func upsert(_ key: MACRouteKey, path: MACPath) -> LocalOutcome {
    // A new key (the bulk of a table load) costs one hash lookup: find-or-insert.
    var created = false
    Self.touch(&macRoutes[key, default: Self.created(path, &created)])
    if created {
      if !path.isLocal { adjustCount(peer: path.peer, by: 1) }
      report(key, previousBest: nil, newBest: path)
      return .unchanged
    }
    let position = macRoutes.index(forKey: key)!
    let previousBest = best(macRoutes.values[position])
    if let index = macRoutes.values[position].index(
      peer: path.peer, routeDistinguisher: path.routeDistinguisher)
    {
      macRoutes.values[position][index] = path
    } else {
      macRoutes.values[position].others.append(path)
      if !path.isLocal { adjustCount(peer: path.peer, by: 1) }
    }
    return settle(key, position: position, previousBest: previousBest)
  }

  @inline(__always) private static func touch(_ set: inout MACPathSet) {}
  @inline(__always) private static func created(_ path: MACPath, _ flag: inout Bool) -> MACPathSet {
    flag = true
    return MACPathSet(first: path)
  }

  /// Removes one path; reports to the sink when the best changed.
  @discardableResult
  func remove(_ key: MACRouteKey, peer: UInt16, routeDistinguisher: UInt64) -> LocalOutcome {
    guard let position = macRoutes.index(forKey: key),
      let index = macRoutes.values[position].index(peer: peer, routeDistinguisher: routeDistinguisher)
    else { return .unchanged }
    let previousBest = best(macRoutes.values[position])
    if !macRoutes.values[position][index].isLocal { adjustCount(peer: peer, by: -1) }
    if macRoutes.values[position].remove(at: index) {
      return settle(key, position: position, previousBest: previousBest)
    }
    macRoutes.remove(at: position)
    return settle(key, position: nil, previousBest: previousBest)
  }

  private func adjustCount(peer: UInt16, by delta: Int) { routeCounts.adjust(peer, by: delta) }

  /// Routes held from `peer` (type 2 + type 3).
  func routeCount(peer: UInt16) -> Int { routeCounts[peer] }

  /// Compares old and new best, tells the sink, counts moves, and drops a local route
  /// that a remote one now beats (the loser withdraws, RFC 7432 section 15).
  /// `position` is the entry's index, nil when the entry is gone or was just created.
  private func settle(
    _ key: MACRouteKey, position: Dictionary<MACRouteKey, MACPathSet>.Index?, previousBest: MACPath?
  ) -> LocalOutcome {
    var outcome = LocalOutcome.unchanged
    var newBest: MACPath?
    // A frozen MAC keeps its local route: remote routes are not processed until the
    // freeze is lifted (RFC 7432 section 15.1).
    if let position, !detector.isFrozen(.init(vni: key.vni, mac: key.mac)) {
      newBest = best(macRoutes.values[position])
      if let current = newBest, !current.isLocal, let localIndex = macRoutes.values[position].localIndex {
        let local = macRoutes.values[position][localIndex]
        outcome = .localLost(local)
        _ = macRoutes.values[position].remove(at: localIndex)
        newBest = best(macRoutes.values[position])
        if key.ip == nil { noteLostTie(key, local: local, winner: current) }
      }
    } else {
      newBest = macRoutes[key].map(best)
    }
    report(key, previousBest: previousBest, newBest: newBest)
    // Ties need two paths (or a conflict already recorded): no lookup otherwise.
    if key.ip == nil,
      !conflicts.macConflicts.isEmpty || (position.map { macRoutes.values[$0].count } ?? 0) > 1
    {
      evaluateMACConflict(key)
    }
    return outcome
  }

  /// Tells the sink about a best-path change and feeds duplicate detection. While a
  /// MAC is frozen the sink hears of no new location (the dataplane stays as it was);
  /// only the last route going away is applied, so no entry points at a VTEP that has
  /// given the MAC up.
  private func report(
    _ key: MACRouteKey, previousBest: MACPath?, newBest: MACPath?, countMoves: Bool = true
  ) {
    guard newBest != previousBest else { return }
    // IP conflicts are decided (and the sink told) before the route itself reaches the
    // sink: a conflicted IP's ARP binding is never replaced by either claim.
    if key.ip != nil { noteIPClaim(key, previousBest: previousBest, newBest: newBest) }
    let macKey = DuplicateMACDetector.Key(vni: key.vni, mac: key.mac)
    if detector.isFrozen(macKey) {
      let held = heldBest.index(forKey: key) != nil
      if newBest == nil {
        let told = held ? heldBest[key]! : previousBest
        if let told, !told.isLocal {
          sink?.removeMAC(vni: key.vni, mac: MACAddress(rawValue: key.mac), ip: key.ip)
        }
        heldBest[key] = .some(nil)
      } else if !held {
        heldBest[key] = .some(previousBest)
      }
      return
    }
    // Moves are counted on the MAC-only route so a MAC+IP pair moving counts once. The
    // move that freezes the MAC is still applied: it stays where that move put it.
    var froze: Int?
    if countMoves, key.ip == nil, let previous = previousBest, let current = newBest,
      previous.vtepID != current.vtepID
    {
      froze = detector.recordMove(macKey, at: clock())
    }
    defer {
      if let moves = froze {
        sink?.macFrozen(vni: key.vni, mac: MACAddress(rawValue: key.mac), moves: moves)
        onFreeze?(macKey, moves)
      }
    }
    if let current = newBest, !current.isLocal {
      let previousRemote = previousBest.flatMap { $0.isLocal ? nil : $0 }
      // Only flags changing (e.g. stale) is invisible to the dataplane.
      if previousRemote.map({
        $0.vtepID != current.vtepID || $0.sequence != current.sequence || $0.isSticky != current.isSticky
          || $0.peer != current.peer
      }) ?? true {
        sink?.installMAC(
          vni: key.vni, mac: MACAddress(rawValue: key.mac), ip: key.ip, vtep: vtep(current.vtepID),
          sequence: current.sequence, sticky: current.isSticky, peer: peerName(current.peer))
      }
    } else if let previous = previousBest, !previous.isLocal {
      sink?.removeMAC(vni: key.vni, mac: MACAddress(rawValue: key.mac), ip: key.ip)
    }
  }

  // MARK: duplicate MACs

  /// Lifts the freeze of a MAC (operator action or freeze timer) and catches up with
  /// what happened meanwhile: a local route that a remote one now beats is dropped
  /// (returned, for the speaker to withdraw), and the sink is told the current best
  /// path of every key that changed. Returns nil when the MAC was not frozen.
  func unfreeze(_ macKey: DuplicateMACDetector.Key) -> [MACRouteKey]? {
    guard detector.unfreeze(macKey) else { return nil }
    var keys = Set(heldBest.keys.filter { $0.vni == macKey.vni && $0.mac == macKey.mac })
    for ip in localIPKeys(macKey) { keys.insert(ip) }
    keys.insert(MACRouteKey(vni: macKey.vni, mac: macKey.mac, ip: nil))
    var lost: [MACRouteKey] = []
    for key in keys {
      var held: MACPath?? = heldBest.removeValue(forKey: key)
      if let position = macRoutes.index(forKey: key), let localIndex = macRoutes.values[position].localIndex,
        !best(macRoutes.values[position]).isLocal
      {
        if held == nil { held = .some(best(macRoutes.values[position])) }
        lost.append(key)
        if !macRoutes.values[position].remove(at: localIndex) { macRoutes.remove(at: position) }
      }
      if let held { report(key, previousBest: held, newBest: macRoutes[key].map(best), countMoves: false) }
    }
    return lost
  }

  /// The MAC/IP keys (with an IP) of a MAC that hold a local path. Scans the table:
  /// for rare events (freeze, unfreeze) only.
  func localIPKeys(_ macKey: DuplicateMACDetector.Key) -> [MACRouteKey] {
    macRoutes.compactMap { key, set in
      key.vni == macKey.vni && key.mac == macKey.mac && key.ip != nil && set.localIndex != nil ? key : nil
    }
  }

  // MARK: type 3

  func addFlood(vni: UInt32, key: FloodKey, vtep: IPAddress) {
    if let existing = floodRoutes[vni]?[key] {
      if existing == vtep { return }
      removeFlood(vni: vni, key: key)
    }
    floodRoutes[vni, default: [:]][key] = vtep
    adjustCount(peer: key.peer, by: 1)
    let count = floodRefCounts[vni, default: [:]][vtep, default: 0] + 1
    floodRefCounts[vni, default: [:]][vtep] = count
    if count == 1 { sink?.addFloodMember(vni: vni, vtep: vtep) }
  }

  func removeFlood(vni: UInt32, key: FloodKey) {
    guard let vtep = floodRoutes[vni]?[key] else { return }
    floodRoutes[vni]?[key] = nil
    if !longLivedFloodKeys.isEmpty { longLivedFloodKeys.remove(key) }
    if !noLongLivedFloodKeys.isEmpty { noLongLivedFloodKeys.remove(key) }
    adjustCount(peer: key.peer, by: -1)
    let count = floodRefCounts[vni, default: [:]][vtep, default: 1] - 1
    floodRefCounts[vni]?[vtep] = count > 0 ? count : nil
    if count == 0 { sink?.removeFloodMember(vni: vni, vtep: vtep) }
  }

  func floodMembers(vni: UInt32) -> [IPAddress] { floodRefCounts[vni].map { Array($0.keys).sorted() } ?? [] }

  // MARK: RD bookkeeping

  func rememberImport(peer: UInt16, routeDistinguisher: UInt64, ethernetTag: UInt32, vni: UInt32) {
    importedVNIByRD[PeerRDKey(peer: peer, routeDistinguisher: routeDistinguisher, ethernetTag: ethernetTag)] =
      vni
  }

  func importedVNI(peer: UInt16, routeDistinguisher: UInt64, ethernetTag: UInt32) -> UInt32? {
    importedVNIByRD[PeerRDKey(peer: peer, routeDistinguisher: routeDistinguisher, ethernetTag: ethernetTag)]
  }

  // MARK: graceful restart and session loss

  /// Marks every route of `peer` stale (RFC 4724 helper): they stay installed.
  func markStale(peer: UInt16) {
    for (key, var set) in macRoutes where set.contains(peer: peer) {
      for index in 0..<set.count where set[index].peer == peer { set[index].flags |= MACPath.staleFlag }
      macRoutes[key] = set
    }
    for (vni, routes) in floodRoutes {
      for key in routes.keys where key.peer == peer { staleFloodKeys[vni, default: []].insert(key) }
    }
  }

  private var staleFloodKeys: [UInt32: Set<FloodKey>] = [:]
  /// Type-3 routes in the long-lived stale phase (RFC 9494).
  private var longLivedFloodKeys: Set<FloodKey> = []
  /// Type-3 routes received with NO_LLGR.
  private var noLongLivedFloodKeys: Set<FloodKey> = []

  /// A type-3 route arrived (again, after a session loss); `noLongLived`: it carries NO_LLGR.
  func refreshFlood(vni: UInt32, key: FloodKey, noLongLived: Bool = false) {
    staleFloodKeys[vni]?.remove(key)
    if !longLivedFloodKeys.isEmpty { longLivedFloodKeys.remove(key) }
    if noLongLived {
      noLongLivedFloodKeys.insert(key)
    } else if !noLongLivedFloodKeys.isEmpty {
      noLongLivedFloodKeys.remove(key)
    }
  }

  /// RFC 9494 section 4.2: the graceful-restart phase of `peer`'s stale routes ended and
  /// the long-lived one starts. Stale routes with NO_LLGR are removed; the others are
  /// marked long-lived stale, which makes them least preferred (any other path wins),
  /// and stay installed. Returns how many routes were kept.
  @discardableResult
  func enterLongLivedStale(peer: UInt16) -> Int {
    var kept = 0
    for (vni, keys) in staleFloodKeys {
      for key in keys where key.peer == peer {
        if noLongLivedFloodKeys.contains(key) {
          removeFlood(vni: vni, key: key)
          staleFloodKeys[vni]?.remove(key)
        } else {
          longLivedFloodKeys.insert(key)
          kept += 1
        }
      }
    }
    var dropped: [(MACRouteKey, UInt64)] = []
    var demoted: Set<MACRouteKey> = []
    for (key, set) in macRoutes where set.contains(peer: peer) {
      for path in set.all where path.peer == peer && path.isStale {
        if path.flags & MACPath.noLongLivedFlag != 0 {
          dropped.append((key, path.routeDistinguisher))
        } else {
          demoted.insert(key)
        }
      }
    }
    for (key, rd) in dropped { remove(key, peer: peer, routeDistinguisher: rd) }
    for key in demoted {
      guard let position = macRoutes.index(forKey: key) else { continue }
      let previousBest = best(macRoutes.values[position])
      for index in 0..<macRoutes.values[position].count {
        let path = macRoutes.values[position][index]
        guard path.peer == peer, path.isStale else { continue }
        macRoutes.values[position][index].flags |= MACPath.longLivedStaleFlag
        kept += 1
      }
      _ = settle(key, position: position, previousBest: previousBest)
    }
    return kept
  }

  /// Removes the routes of `peer` still marked stale (End-of-RIB or stale timer).
  func sweepStale(peer: UInt16) -> [LocalOutcome] {
    for (vni, keys) in staleFloodKeys {
      for key in keys where key.peer == peer { removeFlood(vni: vni, key: key) }
    }
    return removeMACRoutes(peer: peer) { $0.isStale }
  }

  /// Removes every route of `peer` (session down without graceful restart).
  func removeAll(peer: UInt16) -> [LocalOutcome] {
    for (vni, routes) in floodRoutes {
      for key in routes.keys where key.peer == peer { removeFlood(vni: vni, key: key) }
    }
    importedVNIByRD = importedVNIByRD.filter { $0.key.peer != peer }
    return removeMACRoutes(peer: peer) { _ in true }
  }

  private func removeMACRoutes(peer: UInt16, where predicate: (MACPath) -> Bool) -> [LocalOutcome] {
    staleFloodKeys = staleFloodKeys.mapValues { $0.filter { $0.peer != peer } }
    longLivedFloodKeys = longLivedFloodKeys.filter { $0.peer != peer }
    var victims: [(MACRouteKey, UInt64)] = []
    for (key, set) in macRoutes where set.contains(peer: peer) {
      for path in set.all where path.peer == peer && predicate(path) {
        victims.append((key, path.routeDistinguisher))
      }
    }
    return victims.map { remove($0.0, peer: peer, routeDistinguisher: $0.1) }
  }

  func staleCount(peer: UInt16) -> Int {
    var count = 0
    for set in macRoutes.values where set.contains(peer: peer) {
      for path in set.all where path.peer == peer && path.isStale { count += 1 }
    }
    return count + staleFloodKeys.values.reduce(0) { $0 + $1.filter { $0.peer == peer }.count }
  }

  /// Routes of `peer` that are long-lived stale (RFC 9494).
  func longLivedStaleCount(peer: UInt16) -> Int {
    var count = longLivedFloodKeys.count { $0.peer == peer }
    for set in macRoutes.values where set.contains(peer: peer) {
      for path in set.all where path.peer == peer && path.isLongLivedStale { count += 1 }
    }
    return count
  }
}

/// Route counts per peer index, in storage that a `let` holds: counting a route costs
/// no exclusivity check of a class property (the import does it once per route).
final class PeerRouteCounts {
  private var counts: UnsafeMutablePointer<Int>
  private var capacity: Int

  init() {
    capacity = 16
    counts = .allocate(capacity: capacity)
    counts.initialize(repeating: 0, count: capacity)
  }

  deinit { counts.deallocate() }

  subscript(peer: UInt16) -> Int { Int(peer) < capacity ? counts[Int(peer)] : 0 }

  func adjust(_ peer: UInt16, by delta: Int) {
    let index = Int(peer)
    if index >= capacity {
      var grown = capacity
      while grown <= index { grown *= 2 }
      let storage = UnsafeMutablePointer<Int>.allocate(capacity: grown)
      storage.moveInitialize(from: counts, count: capacity)
      (storage + capacity).initialize(repeating: 0, count: grown - capacity)
      counts.deallocate()
      counts = storage
      capacity = grown
    }
    counts[index] += delta
  }
}
