/// What `vxswitch show stats --json` and `vxswitch replay --json` print. Stable: keys are
/// only ever added.
public struct StatisticsReport: Codable, Equatable, Sendable {
  public struct Port: Codable, Equatable, Sendable {
    public var name: String
    public var rxFrames: UInt64
    public var rxBytes: UInt64
    public var txFrames: UInt64
    public var txBytes: UInt64
    /// Replay only: the pcap file the port's output went to.
    public var output: String?
  }
  public var ports: [Port]
  /// Drop reason name -> frames; reasons with no drops are omitted.
  public var drops: [String: UInt64]
  public var encapsulated: UInt64
  public var decapsulated: UInt64
  public var floodCopies: UInt64
  public var learned: UInt64
  public var moves: UInt64
  public var aged: UInt64
  public var fdbEntries: Int
  public var learnQueueOverflow: UInt64? = nil
  public var staticMACViolations: UInt64? = nil
  public var learnLimitDrops: UInt64? = nil
  /// ARP requests answered locally (ARP suppression).
  public var arpSuppressed: UInt64? = nil
  /// IPv6 bindings not stored because another address of the bridge domain owns their
  /// folded key in the ARP table: those addresses are not suppressed (their solicitations
  /// are forwarded).
  public var arpBindingCollisions: UInt64? = nil
  /// ICMP Fragmentation Needed / Packet Too Big sent to VMs whose frames did not fit the
  /// underlay, and those held back by the rate limit.
  public var pathMTUReplies: UInt64? = nil
  public var pathMTURateLimited: UInt64? = nil
  /// UDP GSO frames sent on the underlay (runs of VXLAN datagrams to one VTEP), the
  /// datagrams they carried (also counted in `encapsulated`), and underlay ports opened
  /// without UDP GSO because the kernel refused it.
  public var underlayGSOFrames: UInt64? = nil
  public var underlayGSODatagrams: UInt64? = nil
  public var underlayGSOFallbacks: UInt64? = nil
  /// UDP-tunnel GSO frames written to the underlay's tunnel tap and the segments they
  /// carried (also counted in `encapsulated`); writes to any of the switch's taps the
  /// kernel refused.
  public var underlayTunnelFrames: UInt64? = nil
  public var underlayTunnelSegments: UInt64? = nil
  public var tapRefusals: UInt64? = nil
  /// TCP super-frames coalesced toward access ports and the segments they held (each
  /// also counted in its port's `txFrames`).
  public var tcpCoalescedSuperFrames: UInt64? = nil
  public var tcpCoalescedSegments: UInt64? = nil
}

/// One row of `vxswitch show fdb --json`. Stable: keys are only ever added.
public struct FDBRow: Codable, Equatable, Sendable {
  public var mac: String
  public var vni: UInt32
  /// Local port member ("vm1", "trunk0.10"), when the MAC is local.
  public var port: String?
  /// Remote VTEP address, when the MAC is behind a VTEP.
  public var vtep: String?
  /// "forward" or "drop".
  public var action: String
  /// "static", "local", "decap" or "control".
  public var origin: String
  /// Seconds since the MAC was last seen (learned entries only).
  public var ageSeconds: UInt32?
  /// Control-plane details when the entry came from BGP EVPN (peer, MAC-mobility sequence).
  public var peer: String? = nil
  public var sequence: UInt32? = nil
  /// The MAC is frozen by BGP EVPN duplicate-MAC detection (only present when true):
  /// its routes are neither advertised nor imported until cleared.
  public var duplicate: Bool? = nil
}

/// FDB entries of one VNI and origin (`SwitchCore.fdbCounts`), for metrics. Stable:
/// keys are only ever added.
public struct FDBCount: Codable, Equatable, Sendable {
  public var vni: UInt32
  /// "static", "local", "decap" or "control".
  public var origin: String
  /// Current entries (flushed ones are not counted).
  public var entries: Int

  public init(vni: UInt32, origin: String, entries: Int) {
    self.vni = vni
    self.origin = origin
    self.entries = entries
  }
}

/// One row of `vxswitch show arp --json`: an IPv4 -> MAC binding of the ARP-suppression
/// table. Stable: keys are only ever added.
public struct ARPRow: Codable, Equatable, Sendable {
  public var vni: UInt32
  public var ip: String
  public var mac: String
  /// "local" (learnt from an ARP or neighbour discovery packet on a local port) or
  /// "evpn" (from a MAC/IP route).
  public var origin: String
  /// The BGP peer whose route installed an "evpn" binding.
  public var peer: String?
  /// "local" bindings: seconds since the bound MAC was last seen on its port (the
  /// binding lives as long as the MAC's local FDB entry). nil for "evpn" bindings.
  public var ageSeconds: UInt32?
  /// The MAC is frozen by duplicate-MAC detection (only when true).
  public var duplicate: Bool? = nil
  /// The IP is in an address conflict (several MACs claim it): not answered for by ARP
  /// suppression (only when true; `GET /v1/conflicts` says more).
  public var conflict: Bool? = nil
}

/// One row of `vxswitch show bd --json`. Stable: keys are only ever added.
public struct BridgeDomainRow: Codable, Equatable, Sendable {
  public var vni: UInt32
  public var index: UInt16
  public var ports: [String]
  /// Head-end replication list: static and control-plane VTEPs.
  public var flood: [String]
  public var learnLocal: Bool
  public var learnDecap: Bool
  public var macs: Int
}

extension SwitchCore {
  public func statisticsReport(outputDirectory: String? = nil) -> StatisticsReport {
    let statistics = self.statistics
    let ports = interfaces.enumerated().map { index, name in
      StatisticsReport.Port(
        name: name, rxFrames: statistics[Counter.rxFrames(index)],
        rxBytes: statistics[Counter.rxBytes(index)],
        txFrames: statistics[Counter.txFrames(index)], txBytes: statistics[Counter.txBytes(index)],
        output: outputDirectory.map { $0 + "/" + name + ".pcap" })
    }
    var drops: [String: UInt64] = [:]
    for (reason, count) in statistics.drops() where count > 0 { drops[reason.name] = count }
    let learn = learnStatistics
    return StatisticsReport(
      ports: ports, drops: drops, encapsulated: statistics[Counter.encapsulated],
      decapsulated: statistics[Counter.decapsulated], floodCopies: statistics[Counter.floodCopies],
      learned: learn.learned, moves: learn.moves, aged: learn.aged, fdbEntries: fdb.count,
      learnQueueOverflow: statistics[Counter.learnQueueOverflow],
      staticMACViolations: statistics[Counter.staticMACViolations], learnLimitDrops: learn.limitDrops,
      arpSuppressed: statistics[Counter.arpSuppressed], arpBindingCollisions: UInt64(arp.collisions),
      pathMTUReplies: statistics[Counter.pathMTUReplies],
      pathMTURateLimited: statistics[Counter.pathMTURateLimited],
      underlayGSOFrames: statistics[Counter.underlayGSOFrames],
      underlayGSODatagrams: statistics[Counter.underlayGSODatagrams],
      underlayGSOFallbacks: statistics[Counter.underlayGSOFallbacks],
      underlayTunnelFrames: statistics[Counter.underlayTunnelFrames],
      underlayTunnelSegments: statistics[Counter.underlayTunnelSegments],
      tapRefusals: statistics[Counter.tapRefusals],
      tcpCoalescedSuperFrames: statistics[Counter.coalescedSuperFrames],
      tcpCoalescedSegments: statistics[Counter.coalescedSegments])
  }

  /// Current entries (flushed ones are skipped), sorted by VNI then MAC. `annotator`
  /// adds the control plane's details (peer, sequence) to entries of origin control.
  ///
  /// Reads the table in lock-free pages (`ForwardingTable.scan`), so writers (learning,
  /// BGP route import) never wait for it; the result is not a snapshot. A MAC present for
  /// the whole call is listed once; one removed and re-added meanwhile is listed once,
  /// as last read, or not at all.
  public func fdbRows(vni: UInt32? = nil, now: UInt32, annotator: FDBAnnotator? = nil) -> [FDBRow] {
    let state = self.state
    var domain: UInt16?
    if let vni {
      guard let index = state.domainIndex(vni: vni) else { return [] }
      domain = index
    }
    // (VNI, MAC, position read) so that a key read twice keeps its later reading.
    var found: [(vni: UInt32, mac: UInt64, position: Int, key: FDBKey, entry: FDBEntry)] = []
    var read = 0
    var cursor: Int? = 0
    while let from = cursor {
      cursor = fdb.scan(from: from, maxEntries: Self.fdbPageScan) { key, entry in
        guard let vni = listedVNI(key, entry, state: state, domain: domain, origin: nil) else { return }
        found.append((vni, key.mac.rawValue, read, key, entry))
        read += 1
      }
    }
    found.sort { ($0.vni, $0.mac, $0.position) < ($1.vni, $1.mac, $1.position) }
    var rows: [FDBRow] = []
    rows.reserveCapacity(found.count)
    for (position, item) in found.enumerated() {
      // A key read twice (removed and re-added during the walk): keep its later reading.
      if position + 1 < found.count {
        let next = found[position + 1]
        if next.vni == item.vni && next.mac == item.mac { continue }
      }
      rows.append(fdbRow(item.key, item.entry, vni: item.vni, state: state, now: now, annotator: annotator))
    }
    return rows
  }

  /// Entries read per `scan` call by `fdbRows` and `fdbCounts`.
  static let fdbPageScan = 4096

  /// One page of the FDB listing, for a control API that pages: current entries
  /// matching every filter given, as rows, and the cursor of the next page (nil after the
  /// last). Start with cursor 0 and pass back each `next`; a cursor stays valid across
  /// calls (and configuration reloads), so a client may take its time between pages.
  ///
  /// Rows come in table order (not sorted) and are built outside any lock: the page is
  /// read with `ForwardingTable.scan`, so learning and route import never wait for a
  /// listing. A page ends at a bucket boundary once it holds `limit` rows, so it may hold
  /// up to `limit + 2`; it holds fewer only when it is the last (filters are applied while
  /// scanning, so a page with a narrow filter may read far into the table). Over a whole
  /// listing, a MAC present throughout is listed exactly once; one added or removed
  /// meanwhile at most once, unless it is removed and re-added (then possibly twice, or
  /// not at all).
  ///
  /// With `mac` given, the MAC is looked up directly (in `vni`'s bridge domain, or in
  /// each bridge domain when `vni` is nil) instead of scanning: the answer is one page,
  /// `next` is nil, and `cursor` is not used. An unknown `vni` gives no rows.
  public func fdbPage(
    vni: UInt32?, mac: MACAddress?, origin: FDBOrigin?, cursor: Int, limit: Int, now: UInt32,
    annotator: FDBAnnotator?
  ) -> (rows: [FDBRow], next: Int?) {
    let state = self.state
    var domain: UInt16?
    if let vni {
      guard let index = state.domainIndex(vni: vni) else { return ([], nil) }
      domain = index
    }
    if let mac {
      let domains = domain.map { $0...$0 } ?? 1...UInt16(max(1, state.domainCount - 1))
      var rows: [FDBRow] = []
      for index in domains where Int(index) < state.domainCount {
        let key = FDBKey(bridgeDomain: index, mac: mac.rawValue)
        let entry = fdb.lookup(key)
        if entry.isPresent, let vni = listedVNI(key, entry, state: state, domain: index, origin: origin) {
          rows.append(fdbRow(key, entry, vni: vni, state: state, now: now, annotator: annotator))
        }
      }
      return (rows, nil)
    }
    let limit = max(1, limit)
    var found: [(key: FDBKey, entry: FDBEntry, vni: UInt32)] = []
    var next: Int? = max(0, cursor)
    while let from = next, found.count < limit {
      next = fdb.scan(from: from, maxEntries: min(limit - found.count, Self.fdbPageScan)) { key, entry in
        if let vni = listedVNI(key, entry, state: state, domain: domain, origin: origin) {
          found.append((key, entry, vni))
        }
      }
    }
    return (
      found.map { fdbRow($0.key, $0.entry, vni: $0.vni, state: state, now: now, annotator: annotator) }, next
    )
  }

  /// Current entries per VNI and origin (flushed ones are not counted), sorted by VNI
  /// then origin; for metrics. Read with `ForwardingTable.scan` (no lock, no snapshot:
  /// entries changing meanwhile may be counted or not, and one removed and re-added
  /// meanwhile possibly twice).
  public func fdbCounts() -> [FDBCount] {
    let state = self.state
    let origins = FDBOrigin.allCases.count
    var counts = [Int](repeating: 0, count: max(1, state.domainCount) * origins)
    var cursor: Int? = 0
    while let from = cursor {
      cursor = fdb.scan(from: from, maxEntries: Self.fdbPageScan) { key, entry in
        guard listedVNI(key, entry, state: state, domain: nil, origin: nil) != nil else { return }
        counts[Int(key.bridgeDomain) * origins + Int(entry.origin.rawValue)] += 1
      }
    }
    var result: [FDBCount] = []
    for domain in 1..<max(1, state.domainCount) {
      guard let vni = state.vni(ofDomain: UInt16(domain)) else { continue }
      for origin in FDBOrigin.allCases where counts[domain * origins + Int(origin.rawValue)] > 0 {
        result.append(
          FDBCount(
            vni: vni, origin: origin.name,
            entries: counts[domain * origins + Int(origin.rawValue)]))
      }
    }
    return result.sorted { ($0.vni, $0.origin) < ($1.vni, $1.origin) }
  }

  /// The VNI under which `show fdb` lists the entry, or nil when it does not: its bridge
  /// domain must hold a VNI in `state`, the entry be current (not flushed), and match the
  /// filters given. (`package`: `Bench control --reader`.)
  package func listedVNI(
    _ key: FDBKey, _ entry: FDBEntry, state: ForwardingState, domain: UInt16?, origin: FDBOrigin?
  ) -> UInt32? {
    let entryDomain = key.bridgeDomain
    guard let vni = state.vni(ofDomain: entryDomain), fdb.isCurrent(entry, bridgeDomain: entryDomain) else {
      return nil
    }
    if let domain, domain != entryDomain { return nil }
    if let origin, origin != entry.origin { return nil }
    return vni
  }

  /// The `show fdb` row of an entry listed under `vni` (`listedVNI`, same `state`).
  /// (`package`: `Bench control --reader`.)
  package func fdbRow(
    _ key: FDBKey, _ entry: FDBEntry, vni entryVNI: UInt32, state: ForwardingState, now: UInt32,
    annotator: FDBAnnotator?
  ) -> FDBRow {
    var row = FDBRow(
      mac: key.mac.description, vni: entryVNI, port: nil, vtep: nil, action: "forward",
      origin: entry.origin.name, ageSeconds: nil)
    switch entry.kind {
    case .port: row.port = state.memberName(entry.index)
    case .vtep:
      row.vtep = Int(entry.index) < state.vtepCount ? "\(state.vtepAddresses[Int(entry.index)])" : "?"
    case .drop, .none: row.action = "drop"
    }
    if entry.origin == .local || entry.origin == .decap {
      row.ageSeconds = (now &- entry.stamp) & UInt32(FDBEntry.stampMask)
    }
    if entry.origin == .control, let annotator {
      annotator.annotate(&row, vni: entryVNI, mac: key.mac)
    }
    return row
  }

  /// The ARP-suppression table, sorted by VNI then IP. `peer` names the BGP peer of an
  /// EVPN binding (the control shim supplies it).
  public func arpRows(
    vni: UInt32? = nil, now: UInt32, peer: ((UInt32, MACAddress, IPAddress) -> String?)? = nil
  ) -> [ARPRow] {
    let state = self.state
    var rows: [(UInt32, IPAddress, ARPRow)] = []
    arp.forEach { domain, ip, value in
      let mac = MACAddress(rawValue: value & ARPTable.macMask)
      let control = value & ARPTable.controlBit != 0
      guard let entryVNI = state.vni(ofDomain: domain) else { return }
      if let vni, vni != entryVNI { return }
      var row = ARPRow(
        vni: entryVNI, ip: ip.description, mac: mac.description, origin: control ? "evpn" : "local",
        peer: nil, ageSeconds: nil)
      if value & ARPTable.conflictBit != 0 { row.conflict = true }
      if control {
        row.peer = peer?(entryVNI, mac, ip)
      } else {
        let entry = fdb.lookup(FDBKey(bridgeDomain: domain, mac: mac.rawValue))
        if entry.isPresent, entry.origin == .local, fdb.isCurrent(entry, bridgeDomain: domain) {
          row.ageSeconds = (now &- entry.stamp) & UInt32(FDBEntry.stampMask)
        }
      }
      rows.append((entryVNI, ip, row))
    }
    return rows.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }.map(\.2)
  }

  public func bridgeDomainRows() -> [BridgeDomainRow] {
    let state = self.state
    var macs: [UInt16: Int] = [:]
    var cursor: Int? = 0
    while let from = cursor {
      cursor = fdb.scan(from: from, maxEntries: Self.fdbPageScan) { key, entry in
        if fdb.isCurrent(entry, bridgeDomain: key.bridgeDomain) { macs[key.bridgeDomain, default: 0] += 1 }
      }
    }
    return config.bridgeDomains.compactMap { domain in
      guard let index = state.domainIndex(vni: domain.vni) else { return nil }
      let flags = state.learnFlags(domain: index)
      return BridgeDomainRow(
        vni: domain.vni, index: index, ports: state.memberList(domain: index).map(state.memberName),
        flood: state.floodVTEPList(domain: index).map(\.description),
        learnLocal: flags & LearnFlags.local != 0,
        learnDecap: flags & LearnFlags.decap != 0, macs: macs[index] ?? 0)
    }
  }
}
