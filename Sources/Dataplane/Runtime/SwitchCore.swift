import Synchronization

/// The control half of one switching instance: owns the FDB, the statistics, the
/// published forwarding state and the registries that keep interface, member, bridge
/// domain and VTEP indices stable across reconfiguration (FDB entries refer to them).
///
/// ## Thread-safety contract
/// All methods may be called from any thread. Every change (reconfiguration, control-plane
/// FDB and ARP writes, learning, aging) holds one internal lock, `control`, from
/// resolving a VNI to its bridge-domain index to the last table write: a reload, which
/// frees indices and gives them to other VNIs, can never come between the two. The FDB
/// and the ARP table also take their own writer locks, for their lock-free readers. Lock
/// order: `control`, then a table's writer lock or the snapshot cell's. Packet workers
/// never call into it: they read the FDB and the snapshot, and feed learn events through
/// their `LearnQueue`s, which `drainLearnQueues` (run by the learner thread, or
/// synchronously by replay) applies; an event switched under a snapshot older than its
/// domain's or member's last reassignment is dropped. Observers are called on the thread
/// that made the change, after `control` is released, outside the packet path.
// @unchecked: the mutable state is `control`'s and the other mutexes'; the tables and the
// cell are Sendable by their own contracts; `learnCounters` are atomics.
public final class SwitchCore: @unchecked Sendable {
  public let fdb: ForwardingTable
  /// IPv4 -> MAC bindings per bridge domain for ARP suppression (see `ARPTable`).
  public let arp: ARPTable
  public let statistics = SwitchStatistics()
  public let cell: SnapshotCell<ForwardingState>
  /// A pthread mutex, not `Synchronization.Mutex`: ThreadSanitizer sees its edges (see
  /// `WriterLock`), and the reload tests run under it in CI.
  let control: WriterLock<ControlState>
  private let learner = Mutex<[Pipeline]>([])
  private let learnCounters = LearnCounters()

  /// Changes of locally learned MACs, for the control shim to advertise.
  public enum LocalMACEvent: Sendable {
    case learned(vni: UInt32, mac: MACAddress, member: String)
    case removed(vni: UInt32, mac: MACAddress)
  }
  private let observers = Mutex<[@Sendable (LocalMACEvent) -> Void]>([])

  /// Changes of IPv4 bindings learnt from local ARP packets (`ARPTable` entries that
  /// are not the control plane's), for the control shim to advertise as MAC/IP routes.
  /// `.unbound` comes when the binding goes: its MAC aged out, the IP was re-bound to
  /// another MAC, or a control-plane binding replaced it. `.bound` also comes when a
  /// local host claims an IP that a control-plane binding gives another MAC: the claim
  /// is not stored, but the control plane hears of it (an address conflict).
  public enum LocalARPEvent: Sendable, Equatable {
    case bound(vni: UInt32, ip: IPAddress, mac: MACAddress)
    case unbound(vni: UInt32, ip: IPAddress, mac: MACAddress)
  }
  private let arpObservers = Mutex<[@Sendable (LocalARPEvent) -> Void]>([])
  /// IPs local hosts claimed over a control-plane binding of another MAC (reported as
  /// `.bound`, not stored), by the claiming MAC's FDB key: reported `.unbound` when
  /// that MAC ages out, as a stored binding would be.
  private let claims = Mutex<[UInt64: Set<IPAddress>]>([:])

  struct ControlState {
    var config: SiteConfig
    var interfaces: [String]
    var underlayMAC: MACAddress
    var domainByVNI: [UInt32: UInt16] = [:]
    var freeDomains: [UInt16] = []
    var nextDomain: UInt16 = 1
    var memberByName: [SiteConfig.PortMember: UInt16] = [:]
    var nextMember: UInt16 = 1
    var vtepByAddress: [IPAddress: UInt16] = [:]
    var vteps: [IPAddress] = []
    var nextHops: [IPAddress: MACAddress] = [:]
    /// Flood-list members added by the control plane, per VNI.
    var dynamicFlood: [UInt32: Set<IPAddress>] = [:]
    /// Bumped when the forwarding state must be rebuilt.
    var needsPublish = false
    /// The generation of the forwarding state last published.
    var publishedGeneration: UInt64 = 0
    /// Learn events switched under a snapshot of this generation or older no longer
    /// apply to the bridge domain (its index was freed or given to another VNI); `.max`
    /// while the index is free.
    var domainReassignedAfter: [UInt16: UInt64] = [:]
    /// The same for members: removed (`.max`, member indices are never reused) or moved
    /// to another bridge domain.
    var memberMovedAfter: [UInt16: UInt64] = [:]
    /// The bridge domain each member belongs to.
    var memberDomain: [UInt16: UInt16] = [:]

    /// Whether a learn event switched under snapshot `generation` in bridge domain
    /// `domain` (from access member `member`) still means the same domain and member.
    func stillApplies(domain: UInt16, member: UInt16?, generation: UInt64) -> Bool {
      guard generation > domainReassignedAfter[domain, default: 0] else { return false }
      guard let member else { return true }
      return generation > memberMovedAfter[member, default: 0] && memberDomain[member] == domain
    }
  }

  final class LearnCounters: Sendable {
    let learned = Atomic<UInt64>(0)
    let moves = Atomic<UInt64>(0)
    let limitDrops = Atomic<UInt64>(0)
    let tableFull = Atomic<UInt64>(0)
    let aged = Atomic<UInt64>(0)
  }

  /// - Parameters:
  ///   - interfaces: every interface the switch attaches to, underlay first or anywhere;
  ///     the same names the configuration uses.
  ///   - underlayMAC: source MAC for encapsulated frames.
  public init(config: SiteConfig, interfaces: [String]? = nil, underlayMAC: MACAddress? = nil) {
    let names = interfaces ?? Self.interfaceNames(of: config)
    fdb = ForwardingTable(capacity: config.site.fdbCapacity)
    arp = ARPTable(capacity: config.site.fdbCapacity)
    var state = ControlState(
      config: config, interfaces: names, underlayMAC: underlayMAC ?? config.site.underlayMAC ?? .zero)
    for neighbor in config.neighbors { state.nextHops[neighbor.ip] = neighbor.mac }
    let first = Self.makeBuilder(&state).build()
    state.publishedGeneration = first.generation
    cell = SnapshotCell(first)
    control = WriterLock(state)
    control.withLock { installStaticEntries(config, $0) }
  }

  /// Underlay first, then access interfaces in order of first appearance.
  public static func interfaceNames(of config: SiteConfig) -> [String] {
    var names = [config.site.underlay]
    for domain in config.bridgeDomains {
      for port in domain.ports where !names.contains(port.interface) { names.append(port.interface) }
    }
    return names
  }

  public var config: SiteConfig { control.withLock { $0.config } }
  public var interfaces: [String] { control.withLock { $0.interfaces } }
  public var state: ForwardingState { cell.value }

  /// A pipeline for one worker thread, registered with the learner.
  public func makePipeline() -> Pipeline {
    let pipeline = Pipeline(fdb: fdb, arp: arp, cell: cell, statistics: statistics)
    learner.withLock { $0.append(pipeline) }
    return pipeline
  }

  public func retire(_ pipeline: Pipeline) {
    learner.withLock { $0.removeAll { $0 === pipeline } }
  }

  public func observeLocalMACs(_ observer: @escaping @Sendable (LocalMACEvent) -> Void) {
    observers.withLock { $0.append(observer) }
  }

  public func observeLocalARP(_ observer: @escaping @Sendable (LocalARPEvent) -> Void) {
    arpObservers.withLock { $0.append(observer) }
  }

  func notify(_ events: [LocalARPEvent]) {
    guard !events.isEmpty else { return }
    let list = arpObservers.withLock { $0 }
    for event in events { for observer in list { observer(event) } }
  }

  func notify(_ events: [LocalMACEvent]) {
    guard !events.isEmpty else { return }
    let list = observers.withLock { $0 }
    for event in events { for observer in list { observer(event) } }
  }

  // MARK: Building the forwarding state

  private static func makeBuilder(_ state: inout ControlState) -> ForwardingStateBuilder {
    let config = state.config
    var builder = ForwardingStateBuilder(
      site: config.site, interfaces: state.interfaces, underlayMAC: state.underlayMAC)
    // Domains and members keep their indices while they exist.
    var usedDomains = Set<UInt16>()
    for domain in config.bridgeDomains {
      if state.domainByVNI[domain.vni] == nil {
        let index =
          state.freeDomains.popLast()
          ?? {
            defer { state.nextDomain += 1 }; return state.nextDomain
          }()
        state.domainByVNI[domain.vni] = index
        state.domainReassignedAfter[index] = state.publishedGeneration
      }
      usedDomains.insert(state.domainByVNI[domain.vni]!)
    }
    let highest = Int(usedDomains.max() ?? 0)
    builder.domains += Array(repeating: ForwardingStateBuilder.Domain.unassigned, count: highest)
    var highestMember = 0
    for domain in config.bridgeDomains {
      for port in domain.ports {
        if state.memberByName[port] == nil {
          state.memberByName[port] = state.nextMember
          state.nextMember += 1
        }
        highestMember = max(highestMember, Int(state.memberByName[port]!))
      }
    }
    builder.members += Array(
      repeating: ForwardingStateBuilder.Member(interface: 0, vlan: 0, domain: 0), count: highestMember)
    for domain in config.bridgeDomains {
      let index = Int(state.domainByVNI[domain.vni]!)
      var flags: UInt8 = 0
      // With a control plane (BGP EVPN, or the peering speaker) remote MACs come from routes.
      let controlPlane = config.bgp != nil || config.peering != nil
      if domain.learning { flags = LearnFlags.local | (controlPlane ? 0 : LearnFlags.decap) }
      var floodVTEPs: [UInt16] = []
      let flood = domain.flood + (state.dynamicFlood[domain.vni].map { Array($0).sorted() } ?? [])
      for address in flood where address != config.site.vtep {
        let vtep = Self.vtepIndex(&state, address)
        if !floodVTEPs.contains(vtep) { floodVTEPs.append(vtep) }
      }
      builder.domains[index] = ForwardingStateBuilder.Domain(
        vni: domain.vni, learnFlags: flags, members: [], floodVTEPs: floodVTEPs,
        arpSuppression: domain.arpSuppression)
      for port in domain.ports {
        guard let interface = state.interfaces.firstIndex(of: port.interface) else { continue }
        let member = Int(state.memberByName[port]!)
        let memberIndex = UInt16(member)
        if state.memberDomain[memberIndex] != UInt16(index) {
          if state.memberDomain[memberIndex] != nil {
            state.memberMovedAfter[memberIndex] = state.publishedGeneration
          }
          state.memberDomain[memberIndex] = UInt16(index)
        }
        builder.members[member] = .init(
          interface: UInt16(interface), vlan: port.vlan ?? 0, domain: UInt16(index))
        let column = port.vlan.map(Int.init) ?? ForwardingState.untaggedColumn
        builder.memberByVLAN[interface * ForwardingState.vlanColumns + column] = UInt16(member)
        builder.domains[index].members.append(UInt16(member))
      }
    }
    for staticMAC in config.staticMACs {
      if case .remote(let address) = staticMAC.target { _ = Self.vtepIndex(&state, address) }
    }
    builder.vteps = state.vteps.map { .init(address: $0, nextHopMAC: state.nextHops[$0]) }
    return builder
  }

  static func vtepIndex(_ state: inout ControlState, _ address: IPAddress) -> UInt16 {
    if let index = state.vtepByAddress[address] { return index }
    let index = UInt16(state.vteps.count)
    state.vteps.append(address)
    state.vtepByAddress[address] = index
    state.needsPublish = true
    return index
  }

  func publishLocked(_ state: inout ControlState) {
    let builder = Self.makeBuilder(&state)
    state.needsPublish = false
    let snapshot = builder.build()
    state.publishedGeneration = snapshot.generation
    cell.publish(snapshot)
  }

  /// Writes the configuration's static entries; with `control` held (or before it exists).
  private func installStaticEntries(_ config: SiteConfig, _ state: ControlState) {
    for staticMAC in config.staticMACs {
      guard let domain = state.domainByVNI[staticMAC.vni] else { continue }
      let kind: FDBTargetKind
      let index: UInt16
      switch staticMAC.target {
      case .port(let port):
        guard let member = state.memberByName[port] else { continue }
        (kind, index) = (.port, member)
      case .remote(let address):
        guard let vtep = state.vtepByAddress[address] else { continue }
        (kind, index) = (.vtep, vtep)
      }
      let (domainGeneration, targetGeneration) = fdb.currentGenerations(
        bridgeDomain: domain, kind: kind, index: index)
      let entry = FDBEntry(
        kind: kind, index: index, origin: .static, domainGeneration: domainGeneration,
        targetGeneration: targetGeneration, stamp: 0)
      fdb.update(FDBKey(bridgeDomain: domain, mac: staticMAC.mac.rawValue)) { _ in .set(entry) }
    }
  }

  // MARK: Reconfiguration

  /// Applies a new configuration without disturbing unchanged bridge domains: their
  /// indices, FDB entries and members stay; removed domains and members are flushed in
  /// O(1). Interfaces must be the same set (new interfaces need new sockets: restart).
  public func reload(_ newConfig: SiteConfig) {
    control.withLock { state in
      var removedDomains: [UInt16] = []
      var removedMembers: [UInt16] = []
      var changedDomains: [UInt16] = []
      let old = state.config
      let oldByVNI = Dictionary(uniqueKeysWithValues: old.bridgeDomains.map { ($0.vni, $0) })
      let newVNIs = Set(newConfig.bridgeDomains.map(\.vni))
      for domain in old.bridgeDomains where !newVNIs.contains(domain.vni) {
        if let index = state.domainByVNI.removeValue(forKey: domain.vni) {
          removedDomains.append(index)
          state.freeDomains.append(index)
          state.domainReassignedAfter[index] = .max
        }
      }
      // A domain whose settings or static MACs changed gets its static entries rewritten.
      let oldStatic = Dictionary(grouping: old.staticMACs, by: \.vni).mapValues(Set.init)
      let newStatic = Dictionary(grouping: newConfig.staticMACs, by: \.vni).mapValues(Set.init)
      for domain in newConfig.bridgeDomains {
        if let previous = oldByVNI[domain.vni], let index = state.domainByVNI[domain.vni],
          previous != domain || oldStatic[domain.vni] != newStatic[domain.vni]
        {
          changedDomains.append(index)
        }
      }
      let newMembers = Set(newConfig.bridgeDomains.flatMap(\.ports))
      for (port, index) in state.memberByName where !newMembers.contains(port) {
        removedMembers.append(index)
        state.memberByName.removeValue(forKey: port)
        state.memberDomain.removeValue(forKey: index)
        state.memberMovedAfter[index] = .max
      }
      // A member that moved to another domain keeps no entries from the old one.
      for domain in newConfig.bridgeDomains {
        guard let previous = oldByVNI[domain.vni] else { continue }
        for port in Set(previous.ports).subtracting(domain.ports) {
          if let index = state.memberByName[port], newMembers.contains(port) { removedMembers.append(index) }
        }
      }
      state.config = newConfig
      for neighbor in newConfig.neighbors { state.nextHops[neighbor.ip] = neighbor.mac }
      // Flushed before the new state is published, so that no worker sees a reused index
      // with the entries of its previous VNI.
      for domain in removedDomains {
        fdb.flush(bridgeDomain: domain)
        // The index may be reused by another VNI: its IP bindings must not follow.
        arp.removeAll(domain: domain)
      }
      for member in removedMembers { fdb.flush(port: member) }
      publishLocked(&state)
      // Static entries of changed domains are rewritten from the new configuration.
      for domain in changedDomains {
        fdb.removeAll { key, entry in key.bridgeDomain == domain && entry.origin == .static }
      }
      installStaticEntries(newConfig, state)
    }
  }

  // MARK: Control-plane API

  /// Sets (or clears) the underlay next-hop MAC for a remote VTEP address.
  public func setNextHop(_ address: IPAddress, mac: MACAddress?) {
    control.withLock { state in
      guard state.nextHops[address] != mac else { return }
      state.nextHops[address] = mac
      if state.vtepByAddress[address] != nil { publishLocked(&state) }
    }
  }

  public func setUnderlayMAC(_ mac: MACAddress) {
    control.withLock { state in
      guard state.underlayMAC != mac else { return }
      state.underlayMAC = mac
      publishLocked(&state)
    }
  }

  /// Remote VTEP addresses the switch sends to, for next-hop resolution.
  public var remoteVTEPs: [IPAddress] { control.withLock { $0.vteps } }

  public func addFloodMember(vni: UInt32, vtep: IPAddress) {
    control.withLock { state in
      guard state.dynamicFlood[vni, default: []].insert(vtep).inserted else { return }
      publishLocked(&state)
    }
  }

  /// Flood-list members the control plane added, per VNI.
  public var dynamicFloodMembers: [UInt32: [IPAddress]] {
    control.withLock { $0.dynamicFlood.mapValues { $0.sorted() } }
  }

  public func removeFloodMember(vni: UInt32, vtep: IPAddress) {
    control.withLock { state in
      guard state.dynamicFlood[vni]?.remove(vtep) != nil else { return }
      publishLocked(&state)
    }
  }

  /// Installs a control-plane entry (e.g. an EVPN type-2 route): `vni`/`mac` -> `vtep`.
  /// A static entry is never replaced; a locally learned one is replaced only when the
  /// control plane says so (`overrideLocal`, after MAC-mobility arbitration).
  @discardableResult
  public func installRemoteMAC(vni: UInt32, mac: MACAddress, vtep: IPAddress, overrideLocal: Bool = true)
    -> Bool
  {
    control.withLock { state in
      guard let domain = state.domainByVNI[vni] else { return false }
      let known = state.vtepByAddress[vtep] != nil
      let index = Self.vtepIndex(&state, vtep)
      if !known { publishLocked(&state) }
      let (domainGeneration, targetGeneration) = fdb.currentGenerations(
        bridgeDomain: domain, kind: .vtep, index: index)
      let entry = FDBEntry(
        kind: .vtep, index: index, origin: .control, domainGeneration: domainGeneration,
        targetGeneration: targetGeneration, stamp: 0)
      var installed = false
      fdb.update(FDBKey(bridgeDomain: domain, mac: mac.rawValue)) { existing in
        if let existing, existing.isPresent, self.fdb.isCurrent(existing, bridgeDomain: domain) {
          if existing.origin == .static { return .keep }
          if existing.origin == .local && !overrideLocal { return .keep }
        }
        installed = true
        return .set(entry)
      }
      return installed
    }
  }

  /// Removes a control-plane entry; entries of other origins stay.
  public func removeRemoteMAC(vni: UInt32, mac: MACAddress) {
    withDomain(vni: vni) { domain in
      fdb.update(FDBKey(bridgeDomain: domain, mac: mac.rawValue)) { existing in
        existing?.origin == .control ? .remove : .keep
      }
    }
  }

  /// Runs `body` with the VNI's bridge-domain index, holding `control` so that no reload
  /// frees or reuses the index before `body` is done; nil for an unknown VNI.
  @discardableResult
  func withDomain<Result>(vni: UInt32, _ body: (UInt16) -> Result) -> Result? {
    control.withLock { state in state.domainByVNI[vni].map(body) }
  }

  /// Binds `ip` (IPv4 or IPv6) to `mac` in the VNI's bridge domain for ARP and
  /// neighbour-discovery suppression (e.g. from an EVPN MAC/IP route); replaces any
  /// earlier binding of the IP. Returns whether a binding was stored. Off the packet
  /// path: takes the ARP table's writer lock. A locally learnt binding it replaces is
  /// reported as `.unbound`. An IP in an address conflict (`setARPConflict`) is left alone.
  @discardableResult
  public func installARP(vni: UInt32, ip: IPAddress, mac: MACAddress) -> Bool {
    guard
      let (stored, previous) = withDomain(
        vni: vni,
        { domain in
          arp.exchange(domain: domain, ip: ip, mac: mac, control: true)
        })
    else { return false }
    // A conflicted entry is left as it is (`clearARPConflict` settles it).
    if stored, previous & ARPTable.presentBit != 0, previous & ARPTable.controlBit == 0 {
      notify([LocalARPEvent.unbound(vni: vni, ip: ip, mac: MACAddress(rawValue: previous & ARPTable.macMask))]
      )
    }
    return stored
  }

  /// Marks `ip` in the VNI as an address conflict (several MACs claim it): suppression
  /// stops answering for it and nothing re-binds it until `clearARPConflict`. The
  /// binding held stays; without one, `mac` carries the mark.
  public func setARPConflict(vni: UInt32, ip: IPAddress, mac: MACAddress) {
    withDomain(vni: vni) { domain in arp.setConflict(domain: domain, ip: ip, mac: mac) }
  }

  /// Ends the conflict of `ip`: the binding left (`mac`, a control-plane one when
  /// `control`) is stored and answered for again; nil removes the entry.
  public func clearARPConflict(vni: UInt32, ip: IPAddress, mac: MACAddress?, control: Bool) {
    withDomain(vni: vni) { domain in arp.clearConflict(domain: domain, ip: ip, binding: mac, control: control)
    }
  }

  /// Whether `ip` is marked as an address conflict in the VNI's ARP table.
  public func isARPConflicted(vni: UInt32, ip: IPAddress) -> Bool {
    guard let domain = state.domainIndex(vni: vni) else { return false }
    return arp.isConflicted(domain: domain, ip: ip)
  }

  /// Removes the binding of `ip` in the VNI; with `mac`, only while the IP is still
  /// bound to that MAC (a withdrawal of an older MAC/IP route leaves a newer one).
  public func removeARP(vni: UInt32, ip: IPAddress, mac: MACAddress? = nil) {
    withDomain(vni: vni) { domain in arp.remove(domain: domain, ip: ip, mac: mac) }
  }

  /// The MAC `ip` is bound to in the VNI's ARP table, if any.
  public func arpBinding(vni: UInt32, ip: IPAddress) -> MACAddress? {
    guard let domain = state.domainIndex(vni: vni) else { return nil }
    return arp.mac(domain: domain, ip: ip)
  }

  /// Forgets every entry of a bridge domain in O(1).
  public func flush(vni: UInt32) {
    withDomain(vni: vni) { domain in fdb.flush(bridgeDomain: domain) }
  }

  // MARK: Learning and aging (learner side)

  /// True when no worker has a learn event queued (a snapshot: workers keep pushing).
  public var learnQueuesAreEmpty: Bool {
    learner.withLock { pipelines in pipelines.allSatisfy { $0.learnQueue.isEmpty } }
  }

  /// Events taken from one worker's queue per hold of `control`.
  static let learnBatch = 1024

  /// Applies every queued learn event of every worker (dropping those a reload made
  /// meaningless). Returns how many were taken from the queues.
  @discardableResult
  public func drainLearnQueues() -> Int {
    let pipelines = learner.withLock { $0 }
    if pipelines.allSatisfy({ $0.learnQueue.isEmpty }) { return 0 }
    var taken = 0
    var events: [LocalMACEvent] = []
    var arpEvents: [LocalARPEvent] = []
    var batch: [LearnEvent] = []
    batch.reserveCapacity(Self.learnBatch)
    for pipeline in pipelines {
      while true {
        while batch.count < Self.learnBatch, let event = pipeline.learnQueue.pop() { batch.append(event) }
        if batch.isEmpty { break }
        taken += batch.count
        control.withLock { control in
          let current = batch.filter { event in
            let isBinding = event.kind == LearnEvent.arpBinding || event.kind == LearnEvent.ndBinding
            let fromPort = isBinding || event.kind == UInt8(FDBTargetKind.port.rawValue)
            return control.stillApplies(
              domain: UInt16(truncatingIfNeeded: event.key &>> 48), member: fromPort ? event.member : nil,
              generation: event.snapshotGeneration)
          }
          apply(current, control: &control, events: &events)
          applyARPBindings(current, state: cell.value, events: &arpEvents)
        }
        batch.removeAll(keepingCapacity: true)
      }
    }
    notify(events)
    notify(arpEvents)
    return taken
  }

  /// Applies MAC learn events; with `control` held.
  private func apply(_ batch: [LearnEvent], control: inout ControlState, events: inout [LocalMACEvent]) {
    let globalLimit = control.config.site.learnLimit
    var domainLimits: [UInt16: Int] = [:]
    for domain in control.config.bridgeDomains {
      if let limit = domain.learnLimit, let index = control.domainByVNI[domain.vni] {
        domainLimits[index] = limit
      }
    }
    // VTEPs first seen in decapsulated frames join the VTEP table before their MACs.
    var vtepIndices: [Int: UInt16] = [:]
    var added = false
    for (position, event) in batch.enumerated() where event.kind == UInt8(FDBTargetKind.vtep.rawValue) {
      let address: IPAddress =
        control.config.site.vtep.isIPv4
        ? .v4(UInt32(truncatingIfNeeded: event.vtepLow)) : .v6(event.vtepHigh, event.vtepLow)
      if control.vtepByAddress[address] == nil { added = true }
      vtepIndices[position] = Self.vtepIndex(&control, address)
    }
    if added { publishLocked(&control) }
    let state = cell.value
    fdb.batch { access in
      for (position, event) in batch.enumerated()
      where event.kind != LearnEvent.arpBinding && event.kind != LearnEvent.ndBinding {
        let key = FDBKey(rawValue: event.key)
        let domain = key.bridgeDomain
        let kind: FDBTargetKind = event.kind == UInt8(FDBTargetKind.port.rawValue) ? .port : .vtep
        let index = kind == .port ? event.member : (vtepIndices[position] ?? 0)
        let origin: FDBOrigin = kind == .port ? .local : .decap
        let (domainGeneration, targetGeneration) = fdb.currentGenerations(
          bridgeDomain: domain, kind: kind, index: index)
        let entry = FDBEntry(
          kind: kind, index: index, origin: origin, domainGeneration: domainGeneration,
          targetGeneration: targetGeneration, stamp: event.stamp)
        var move = false
        // Over a flushed (not current) entry of the same key, a learn is a new MAC too.
        var replacedStale = false
        let limit = domainLimits[domain]
        let overLimit =
          access.learnedCount >= globalLimit
          || (limit.map { access.learnedCount(bridgeDomain: domain) >= $0 } ?? false)
        let outcome = access.update(key) { existing in
          if let existing, existing.isPresent, self.fdb.isCurrent(existing, bridgeDomain: domain) {
            if existing.origin == .static { return .keep }
            if existing.target == entry.target && existing.origin == origin {
              return .set(existing.withStamp(event.stamp))
            }
            move = true
            return .set(entry)
          }
          if existing == nil && overLimit { return .keep }
          replacedStale = existing != nil
          return .set(entry)
        }
        switch outcome {
        case .inserted:
          learnCounters.learned.add(1, ordering: .relaxed)
        case .updated:
          if move { learnCounters.moves.add(1, ordering: .relaxed) }
          if replacedStale { learnCounters.learned.add(1, ordering: .relaxed) }
        case .unchanged:
          if overLimit { learnCounters.limitDrops.add(1, ordering: .relaxed) }
        case .full:
          learnCounters.tableFull.add(1, ordering: .relaxed)
        case .removed:
          break
        }
        guard kind == .port, let vni = state.vni(ofDomain: domain) else { continue }
        // New here (inserted, or over a flushed entry) or moved to this port.
        var isNews = move || replacedStale
        if case .inserted = outcome { isNews = true }
        if isNews { events.append(.learned(vni: vni, mac: key.mac, member: state.memberName(index))) }
      }
    }
  }

  /// Applies ARP bindings seen in local ARP packets (after their MACs' FDB entries).
  /// New and changed bindings are reported (`LocalARPEvent`), refreshes are not.
  private func applyARPBindings(_ batch: [LearnEvent], state: ForwardingState, events: inout [LocalARPEvent])
  {
    for event in batch where event.kind == LearnEvent.arpBinding || event.kind == LearnEvent.ndBinding {
      let domain = UInt16(truncatingIfNeeded: event.key &>> 48)
      let ip: IPAddress
      let mac: MACAddress
      if event.kind == LearnEvent.arpBinding {
        ip = .v4(UInt32(truncatingIfNeeded: event.key))
        mac = MACAddress(rawValue: event.vtepLow & ARPTable.macMask)
      } else {
        ip = .v6(event.vtepHigh, event.vtepLow)
        mac = MACAddress(rawValue: event.key & ARPTable.macMask)
      }
      let (stored, previous) = arp.exchange(domain: domain, ip: ip, mac: mac, control: false)
      guard let vni = state.vni(ofDomain: domain) else { continue }
      if !stored {
        // A local host claims an IP a control-plane binding gives another MAC: reported
        // (not stored), so the control plane sees both claims (an address conflict).
        if previous & ARPTable.controlBit != 0, previous & ARPTable.conflictBit == 0,
          previous & ARPTable.macMask != mac.rawValue
        {
          events.append(.bound(vni: vni, ip: ip, mac: mac))
          let key = FDBKey(bridgeDomain: domain, mac: mac.rawValue).rawValue
          claims.withLock { _ = $0[key, default: []].insert(ip) }
        }
        continue
      }
      if previous & ARPTable.presentBit != 0 {
        if previous & ARPTable.macMask == mac.rawValue { continue }
        events.append(.unbound(vni: vni, ip: ip, mac: MACAddress(rawValue: previous & ARPTable.macMask)))
      }
      events.append(.bound(vni: vni, ip: ip, mac: mac))
    }
  }

  /// Removes learned entries not seen for `agingTime` seconds and entries made
  /// invisible by a flush. Runs on the learner thread (or replay), never in the packet
  /// loop; holds `control` (the VNIs it reports are those of the entries it removes) and
  /// takes the FDB writer lock in chunks.
  @discardableResult
  public func age(now: UInt32) -> Int {
    let (removed, events, arpEvents) = control.withLock { control in
      ageLocked(now: now, agingTime: UInt32(control.config.site.agingTime))
    }
    learnCounters.aged.add(UInt64(removed), ordering: .relaxed)
    notify(events)
    notify(arpEvents)
    return removed
  }

  private func ageLocked(now: UInt32, agingTime: UInt32) -> (Int, [LocalMACEvent], [LocalARPEvent]) {
    let state = self.state
    var events: [LocalMACEvent] = []
    var removedLocal = Set<UInt64>()
    let removed = fdb.removeAll { key, entry in
      let stale = !self.fdb.isCurrent(entry, bridgeDomain: key.bridgeDomain)
      let learned = entry.origin == .local || entry.origin == .decap
      let expired = learned && (now &- entry.stamp) & UInt32(FDBEntry.stampMask) > agingTime
      if (stale || expired) && entry.origin == .local {
        // An entry can outlive its bridge domain (a reload removed it): that VNI's
        // addresses went with it, nothing to report.
        if let vni = state.vni(ofDomain: key.bridgeDomain) { events.append(.removed(vni: vni, mac: key.mac)) }
        removedLocal.insert(key.rawValue)
      }
      return stale || expired
    }
    // Locally learnt IP bindings go with their MAC.
    var arpEvents: [LocalARPEvent] = []
    if !removedLocal.isEmpty && arp.count > 0 {
      arp.removeAll { domain, ip, mac, control in
        guard !control && removedLocal.contains(FDBKey(bridgeDomain: domain, mac: mac.rawValue).rawValue)
        else { return false }
        if let vni = state.vni(ofDomain: domain) { arpEvents.append(.unbound(vni: vni, ip: ip, mac: mac)) }
        return true
      }
    }
    // And the IPs they only claimed.
    if !removedLocal.isEmpty {
      let gone = claims.withLock { claims -> [(UInt64, Set<IPAddress>)] in
        guard !claims.isEmpty else { return [] }
        return removedLocal.compactMap { key in claims.removeValue(forKey: key).map { (key, $0) } }
      }
      for (raw, ips) in gone {
        let key = FDBKey(rawValue: raw)
        guard let vni = state.vni(ofDomain: key.bridgeDomain) else { continue }
        for ip in ips.sorted() { arpEvents.append(.unbound(vni: vni, ip: ip, mac: key.mac)) }
      }
    }
    return (removed, events, arpEvents)
  }

  public struct LearnStatistics: Sendable, Codable, Equatable {
    public var learned: UInt64
    public var moves: UInt64
    public var limitDrops: UInt64
    public var tableFull: UInt64
    public var aged: UInt64
  }

  public var learnStatistics: LearnStatistics {
    LearnStatistics(
      learned: learnCounters.learned.load(ordering: .relaxed),
      moves: learnCounters.moves.load(ordering: .relaxed),
      limitDrops: learnCounters.limitDrops.load(ordering: .relaxed),
      tableFull: learnCounters.tableFull.load(ordering: .relaxed),
      aged: learnCounters.aged.load(ordering: .relaxed))
  }
}
