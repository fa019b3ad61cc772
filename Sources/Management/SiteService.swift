import ControlShim
import Dataplane
import Foundation
import Logging
import Synchronization

/// One typed service over a running site: the queries and changes every transport (the
/// HTTP API on the control socket and on TCP, SIGHUP, the site-to-site channel) goes
/// through. No transport and no encoding here: typed keys in, rows out.
///
/// ## Thread-safety
/// Every method may be called from any thread or task. Changes (static MACs, flood
/// entries, reloads, duplicate-MAC releases) serialise on one mutex, which also guards
/// the runtime overlay and the file configuration last applied; a change validates
/// everything before it applies anything, so a refused request leaves no trace. Queries
/// take no lock of their own: they read the core's lock-free tables and published state,
/// so a large listing never stalls learning, BGP import or forwarding.
public final class SiteService: Sendable {
  public let core: SwitchCore
  public let controlPlane: EVPNControlPlane?
  public let live: LiveSwitch?
  /// The file `reload()` reads; nil for a site built in memory (tests, replay).
  public let configPath: String?
  let clock: @Sendable () -> UInt32
  let logger: Logger
  /// Where the runtime overlay is kept across restarts; nil: in memory only.
  public let state: StateStore?

  struct Changes: Sendable {
    /// The configuration as the file said at the last successful load.
    var file: SiteConfig
    var overlay = RuntimeOverlay()
  }
  let changes: Mutex<Changes>

  public init(
    core: SwitchCore, controlPlane: EVPNControlPlane? = nil, live: LiveSwitch? = nil,
    configPath: String? = nil, clock: @escaping @Sendable () -> UInt32,
    logger: Logger = Logger(label: "vxswitch"), state: StateStore? = nil
  ) {
    self.state = state
    self.core = core
    self.controlPlane = controlPlane
    self.live = live
    self.configPath = configPath
    self.clock = clock
    self.logger = logger
    changes = Mutex(Changes(file: core.config))
  }

  public var siteName: String { core.config.site.name }

  /// Applies the runtime overlay the state file held at start-up (networks, static MACs,
  /// flood entries, extension bindings) on top of the file's configuration; entries that
  /// no longer fit the file are dropped and logged, as on a reload. Call once, before
  /// forwarding starts.
  public func restoreRuntimeState() {
    guard let state else { return }
    let restored = state.restoredOverlay
    guard restored != RuntimeOverlay() else { return }
    changes.withLock { changes in
      var next = changes
      next.overlay = restored
      apply(&changes, next)
    }
    logger.info(
      "runtime state restored",
      metadata: [
        "file": "\(state.path)", "networks": "\(restored.networks.count)",
        "static_macs": "\(restored.staticMACs.count)", "flood": "\(restored.flood.count)",
        "bindings": "\(restored.bindings.count)",
      ])
  }

  // MARK: FDB and ARP

  /// One page of current FDB entries matching `query`, with the control plane's details
  /// (peer, MAC-mobility sequence) and duplicate marks.
  public func fdb(_ query: FDBQuery) -> FDBPage {
    let limit = max(1, min(query.limit, FDBQuery.maximumLimit))
    let page = core.fdbPage(
      vni: query.vni, mac: query.mac, origin: query.origin, cursor: max(query.cursor, 0), limit: limit,
      now: clock(), annotator: controlPlane?.sink)
    return FDBPage(entries: markingDuplicates(page.rows), nextCursor: page.next.map { String($0) })
  }

  /// Every current FDB entry matching the filters (all pages).
  public func allFDB(vni: UInt32? = nil, mac: MACAddress? = nil, origin: FDBOrigin? = nil) -> [FDBRow] {
    var query = FDBQuery(vni: vni, mac: mac, origin: origin, limit: FDBQuery.maximumLimit)
    var rows: [FDBRow] = []
    while true {
      let page = fdb(query)
      rows += page.entries
      guard let next = page.nextCursor.flatMap(Int.init) else { return rows }
      query.cursor = next
    }
  }

  /// Current FDB entries per VNI and origin (for metrics).
  public func fdbCounts() -> [FDBCount] { core.fdbCounts() }

  /// The ARP-suppression table (IPv4 -> MAC), sorted by VNI then IP.
  public func arp(vni: UInt32? = nil) -> [ARPRow] {
    let sink = controlPlane?.sink
    return markingDuplicates(
      core.arpRows(vni: vni, now: clock(), peer: { vni, mac, _ in sink?.route(vni: vni, mac: mac)?.peer }))
  }

  /// `rows` with `duplicate` set on those whose MAC the control plane has frozen.
  func markingDuplicates<Row: DuplicateMarkable>(_ rows: [Row]) -> [Row] {
    guard let frozen = controlPlane?.speaker.duplicateMACs, !frozen.isEmpty else { return rows }
    // Rows spell MACs as `MACAddress.description` does: compare in that spelling.
    let spelled = Set(frozen.map { RowKey(vni: $0.vni, mac: $0.mac.description) })
    var rows = rows
    for index in rows.indices
    where spelled.contains(RowKey(vni: rows[index].vni, mac: rows[index].mac)) {
      rows[index].duplicate = true
    }
    return rows
  }

  // MARK: Bridge domains, ports, neighbours, statistics

  public func bridgeDomains() -> [BridgeDomainRow] { core.bridgeDomainRows() }

  public func statistics() -> StatisticsReport { core.statisticsReport() }

  public func ports() -> [PortRow] {
    let config = core.config
    let statistics = core.statistics
    let live = self.live
    let perWorker = live?.portStatistics ?? []
    let portTypes = live?.portTypes ?? []
    return core.interfaces.enumerated().map { index, name in
      var members: [String] = []
      for domain in config.bridgeDomains {
        for port in domain.ports where port.interface == name { members.append(port.description) }
      }
      var ring: RingStatistics?
      let workers = perWorker.filter { index < $0.count }.map { $0[index] }
      if var sum = workers.first {
        for port in workers.dropFirst() { sum.add(port) }
        ring = RingStatistics(
          receivedFrames: sum.receivedFrames, receivedBlocks: sum.receivedBlocks,
          truncatedDrops: sum.truncatedDrops, kernelDrops: sum.kernelDrops,
          checksumsCompleted: sum.checksumsCompleted, transmitKicks: sum.transmitKicks,
          transmitBusy: sum.transmitBusy, transmitErrors: sum.transmitErrors, superFrames: sum.superFrames,
          segments: sum.segments, offloadDrops: sum.offloadDrops, sentInPlace: sum.sentInPlace)
      }
      let isUnderlay = name == config.site.underlay
      let overhead = config.site.vtep.isIPv4 ? 50 : 70
      var row = PortRow(
        role: isUnderlay ? "underlay" : "access", name: name, members: members,
        operState: live == nil ? nil : Self.sysfs(name, "operstate"),
        mtu: live == nil ? nil : Self.sysfs(name, "mtu").flatMap(Int.init),
        vmMTU: isUnderlay ? nil : config.site.mtu - overhead,
        rxFrames: statistics[Counter.rxFrames(index)], rxBytes: statistics[Counter.rxBytes(index)],
        txFrames: statistics[Counter.txFrames(index)], txBytes: statistics[Counter.txBytes(index)],
        ring: ring)
      row.io = portTypes.indices.contains(index) ? portTypes[index].rawValue : nil
      if isUnderlay && row.io == PortIO.afPacket.rawValue { row.stackBypass = live?.bypassesStackForVXLAN }
      row.offloadTap = live?.offloadTap(interface: index)
      return row
    }
  }

  private static func sysfs(_ interface: String, _ attribute: String) -> String? {
    (try? String(contentsOfFile: "/sys/class/net/\(interface)/\(attribute)", encoding: .utf8))?
      .trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Remote VTEPs and how their underlay next hops are known.
  public func neighbors() -> [NeighborRow] {
    let config = core.config
    let configured = Dictionary(
      config.neighbors.map { ($0.ip, $0.mac) }, uniquingKeysWith: { first, _ in first })
    let resolved = Dictionary(
      (live?.resolver?.entries ?? []).map { ($0.vtep, $0) }, uniquingKeysWith: { first, _ in first })
    return core.remoteVTEPs.sorted().map { vtep in
      if let mac = configured[vtep] {
        return NeighborRow(
          vtep: "\(vtep)", nextHop: "\(vtep)", mac: "\(mac)", resolution: .configured, nudState: nil)
      }
      if let entry = resolved[vtep], let mac = entry.mac {
        return NeighborRow(
          vtep: "\(vtep)", nextHop: entry.nextHop.map { "\($0)" }, mac: "\(mac)",
          resolution: entry.isStatic ? .configured : .kernel, nudState: NUDState.names(entry.state))
      }
      let entry = resolved[vtep]
      return NeighborRow(
        vtep: "\(vtep)", nextHop: entry?.nextHop.map { "\($0)" }, mac: nil, resolution: .unresolved,
        nudState: entry.map { NUDState.names($0.state) })
    }
  }

  // MARK: BGP

  public func bgp() async throws(ManagementError) -> SpeakerStatus {
    guard let controlPlane else {
      throw .unavailable("BGP is not configured (no [bgp] in the configuration)")
    }
    return await controlPlane.speaker.status()
  }

  public func duplicateMACs() async throws(ManagementError) -> [DuplicateMACStatus] {
    try await bgp().duplicateMACs
  }

  // MARK: Address conflicts

  /// The address conflicts the control plane sees now (see `ConflictRule`), matching
  /// `query`, sorted by kind, VNI, then IP or MAC. A site without a BGP speaker has none.
  public func conflicts(_ query: ConflictQuery = ConflictQuery()) async -> [AddressConflict] {
    guard let controlPlane else { return [] }
    return await controlPlane.speaker.conflictReport().conflicts.filter { conflict in
      (query.vni == nil || conflict.vni == query.vni) && (query.kind == nil || conflict.kind == query.kind)
    }
  }

  /// Conflicts now and started since start, per kind (for metrics).
  public func conflictReport() async -> ConflictReport {
    guard let controlPlane else { return ConflictReport() }
    return await controlPlane.speaker.conflictReport()
  }
}

/// A `show` row that names a MAC of a VNI and can say the MAC is frozen as a duplicate.
/// A row's VNI and MAC as the row spells them.
private struct RowKey: Hashable {
  var vni: UInt32
  var mac: String
}

protocol DuplicateMarkable {
  var vni: UInt32 { get }
  var mac: String { get }
  var duplicate: Bool? { get set }
}

extension FDBRow: DuplicateMarkable {}
extension ARPRow: DuplicateMarkable {}

/// Kernel neighbour states (`NUD_*` in linux/neighbour.h), named as `ip neigh` names them.
enum NUDState {
  static let bits: [(UInt16, String)] = [
    (0x01, "incomplete"), (0x02, "reachable"), (0x04, "stale"), (0x08, "delay"), (0x10, "probe"),
    (0x20, "failed"), (0x40, "noarp"), (0x80, "permanent"),
  ]
  static func names(_ state: UInt16) -> [String] { bits.filter { state & $0.0 != 0 }.map(\.1) }
}
