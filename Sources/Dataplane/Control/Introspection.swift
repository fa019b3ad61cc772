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

/// One row of `vxswitch show arp --json`: an IPv4 -> MAC binding of the ARP-suppression
/// table. Stable: keys are only ever added.
public struct ARPRow: Codable, Equatable, Sendable {
  public var vni: UInt32
  public var ip: String
  public var mac: String
  /// "local" (learnt from an ARP packet on a local port) or "evpn" (from a MAC/IP route).
  public var origin: String
  /// The BGP peer whose route installed an "evpn" binding.
  public var peer: String?
  /// "local" bindings: seconds since the bound MAC was last seen on its port (the
  /// binding lives as long as the MAC's local FDB entry). nil for "evpn" bindings.
  public var ageSeconds: UInt32?
  /// The MAC is frozen by duplicate-MAC detection (only when true).
  public var duplicate: Bool? = nil
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
      arpSuppressed: statistics[Counter.arpSuppressed])
  }

  /// Current entries (flushed ones are skipped), sorted by VNI then MAC. `annotator`
  /// adds the control plane's details (peer, sequence) to entries of origin control.
  public func fdbRows(vni: UInt32? = nil, now: UInt32, annotator: FDBAnnotator? = nil) -> [FDBRow] {
    let state = self.state
    var rows: [FDBRow] = []
    fdb.forEach { key, entry in
      let domain = key.bridgeDomain
      guard Int(domain) < state.domainCount, fdb.isCurrent(entry, bridgeDomain: domain) else { return }
      let entryVNI = state.vni(ofDomain: domain)
      if let vni, vni != entryVNI { return }
      var row = FDBRow(
        mac: key.mac.description, vni: entryVNI, port: nil, vtep: nil, action: "forward",
        origin: entry.origin.name,
        ageSeconds: nil)
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
      rows.append(row)
    }
    return rows.sorted { ($0.vni, $0.mac) < ($1.vni, $1.mac) }
  }

  /// The ARP-suppression table, sorted by VNI then IP. `peer` names the BGP peer of an
  /// EVPN binding (the control shim supplies it).
  public func arpRows(
    vni: UInt32? = nil, now: UInt32, peer: ((UInt32, MACAddress, IPAddress) -> String?)? = nil
  ) -> [ARPRow] {
    let state = self.state
    var rows: [(UInt32, UInt32, ARPRow)] = []
    arp.forEach { domain, address, mac, control in
      guard Int(domain) < state.domainCount else { return }
      let entryVNI = state.vni(ofDomain: domain)
      if let vni, vni != entryVNI { return }
      let ip = IPAddress.v4(address)
      var row = ARPRow(
        vni: entryVNI, ip: ip.description, mac: mac.description, origin: control ? "evpn" : "local",
        peer: nil, ageSeconds: nil)
      if control {
        row.peer = peer?(entryVNI, mac, ip)
      } else {
        let entry = fdb.lookup(FDBKey(bridgeDomain: domain, mac: mac.rawValue))
        if entry.isPresent, entry.origin == .local, fdb.isCurrent(entry, bridgeDomain: domain) {
          row.ageSeconds = (now &- entry.stamp) & UInt32(FDBEntry.stampMask)
        }
      }
      rows.append((entryVNI, address, row))
    }
    return rows.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map(\.2)
  }

  public func bridgeDomainRows() -> [BridgeDomainRow] {
    let state = self.state
    var macs: [UInt16: Int] = [:]
    fdb.forEach { key, entry in
      if fdb.isCurrent(entry, bridgeDomain: key.bridgeDomain) { macs[key.bridgeDomain, default: 0] += 1 }
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
