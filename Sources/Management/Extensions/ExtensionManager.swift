import ControlShim
import Dataplane
import Foundation
import Logging

/// The inter-site extension protocol: the site that receives a request owns the extension,
/// negotiates a VNI and a route target free at every member, asks each member to join and
/// keeps retrying (with backoff) until every reachable member is in the state the owner
/// wants; members apply what their owner describes and nothing else.
///
/// Who may change what: only the owner adds or removes members or deletes an extension;
/// a member refuses such requests (403) and answers only its owner over the site channel.
/// When the owner is cut off, members keep the extension as last described (forwarding
/// among them goes on); membership changes wait until the owner can reach them again.
///
/// Thread-safety: an actor. Site-to-site calls are made outside the actor's state changes
/// (each result is checked against the extension's current generation when it returns), so
/// a slow or unreachable site never blocks the API, other extensions or forwarding.
public actor ExtensionManager {
  let service: SiteService
  let site: String
  let channel: any PeerChannel
  let logger: Logger
  /// The AS number of negotiated route targets ("64512:VNI").
  static let routeTargetAS: UInt32 = 64512
  /// Where VNI candidates start when the network's own VNI is taken somewhere.
  static let firstCandidateVNI: UInt32 = 10_000
  static let maximumBackoff: Double = 10

  struct Owned {
    var status: ExtensionStatus
    /// The MD5 key of the members' BGP sessions for this extension.
    var sessionKey = ExtensionManager.randomKey()
    /// What each member said it uses (identifier negotiation).
    var used: [String: UsedIdentifiers] = [:]
    /// The generation each member last acknowledged.
    var acknowledged: [String: Int] = [:]
    /// Members that accepted the current VNI/RT reservation.
    var reserved: Set<String> = []
  }
  struct Joined {
    var description: ExtensionDescription
    var network: String
    var created: Bool
  }
  var owned: [ExtensionID: Owned] = [:]
  var joined: [ExtensionID: Joined] = [:]
  var reservations: [ExtensionID: Reservation] = [:]
  var workers: [ExtensionID: Task<Void, Never>] = [:]
  /// Messages handled per peer site (the scale benchmark reads it).
  public private(set) var messagesHandled: [String: Int] = [:]

  /// `service.state`: where the records are kept across restarts (nil: in memory only).
  public init(service: SiteService, channel: any PeerChannel, logger: Logger) {
    self.service = service
    self.site = service.siteName
    self.channel = channel
    self.logger = logger
  }

  // MARK: Restarts

  /// Takes back the records the state file held at start-up (the extensions this site
  /// owns, with every member's state; those it joined; its reservations), then resumes:
  /// the owner's work on every extension it owns (pending members are retried, leaving
  /// ones removed, a deletion finished) and the BGP sessions with the other members.
  /// Call once, after the BGP speaker started. The bindings themselves come back with the
  /// site service's overlay (`SiteService.restoreRuntimeState`).
  public func resume() {
    if let records = service.state?.restoredExtensions, owned.isEmpty, joined.isEmpty {
      for record in records.owned {
        var extensionState = Owned(status: record.status)
        extensionState.sessionKey = record.sessionKey
        extensionState.used = Dictionary(
          record.used.map { ($0.site, $0.used) }, uniquingKeysWith: { _, last in last })
        extensionState.acknowledged = Dictionary(
          record.acknowledged.map { ($0.site, $0.generation) }, uniquingKeysWith: { _, last in last })
        extensionState.reserved = Set(record.reserved)
        owned[record.status.id] = extensionState
      }
      for record in records.joined {
        joined[record.description.id] = Joined(
          description: record.description, network: record.network, created: record.created)
      }
      reservations = Dictionary(
        records.reservations.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
      if !records.owned.isEmpty || !records.joined.isEmpty {
        logger.info(
          "extensions restored",
          metadata: ["owned": "\(records.owned.count)", "joined": "\(records.joined.count)"])
      }
    }
    if !observing, let controlPlane = service.controlPlane {
      observing = true
      controlPlane.speaker.addObserver { [weak self] event in
        switch event {
        case .established(let peer): Task { await self?.sessionChanged(peer, up: true) }
        case .sessionDown(let peer, _): Task { await self?.sessionChanged(peer, up: false) }
        default: break
        }
      }
    }
    for id in owned.keys.sorted() { wake(id) }
    sessionsDirty = true
    scheduleSessionPlan()
  }
  var observing = false

  // MARK: EVPN-only members

  /// A member configured as `[[site_peer]] evpn_only = true` (FRR, GoBGP): no site channel;
  /// it takes part through its BGP EVPN session only, with the VNI and route target its
  /// operator configures there.
  func evpnSite(_ name: String) -> SiteConfig.EVPNSite? {
    service.core.config.evpnSites.first { $0.name.lowercased() == name.lowercased() }
  }

  /// BGP sessions currently Established, by peer name (the speaker's events).
  var establishedSessions = Set<String>()

  func sessionChanged(_ peer: String, up: Bool) {
    if up { establishedSessions.insert(peer) } else { establishedSessions.remove(peer) }
    guard evpnSite(peer) != nil else { return }
    var changed = false
    for id in owned.keys {
      guard let extensionState = owned[id], extensionState.reserved.contains(peer) else { continue }
      let before = extensionState.status.members.first { $0.site == peer }
      updateEVPNOnlyMember(id, peer)
      changed = changed || owned[id]?.status.members.first { $0.site == peer } != before
    }
    if changed { persist() }
  }

  /// An EVPN-only member is joined while its BGP session is Established, else pending
  /// with what its operator must configure.
  func updateEVPNOnlyMember(_ id: ExtensionID, _ member: String) {
    guard let status = owned[id]?.status, let vni = status.vni, let routeTarget = status.routeTarget else {
      return
    }
    if establishedSessions.contains(member) {
      setState(id, member, .joined, nil)
    } else {
      setState(
        id, member, .pending,
        "EVPN-only site: waiting for its BGP EVPN session (configure VNI \(vni) and route target "
          + "\(routeTarget) there)")
    }
  }

  /// Stops the background work (the daemon is stopping): no more calls, no more writes.
  public func stop() {
    stopped = true
    for worker in workers.values { worker.cancel() }
    sessionPlanner?.cancel()
  }
  var stopped = false

  /// Writes the records to the state file when they changed (after every change).
  func persist() {
    guard let state = service.state, !stopped else { return }
    state.save(
      extensions: ExtensionRecords(
        owned: owned.values.sorted { $0.status.id < $1.status.id }.map { extensionState in
          ExtensionRecords.Owned(
            status: extensionState.status, sessionKey: extensionState.sessionKey,
            used: extensionState.used.sorted { $0.key < $1.key }.map { .init(site: $0.key, used: $0.value) },
            acknowledged: extensionState.acknowledged.sorted { $0.key < $1.key }.map {
              .init(site: $0.key, generation: $0.value)
            },
            reserved: extensionState.reserved.sorted())
        },
        joined: joined.values.sorted { $0.description.id < $1.description.id }.map {
          ExtensionRecords.Joined(description: $0.description, network: $0.network, created: $0.created)
        },
        reservations: reservations.values.sorted { $0.id < $1.id }))
  }

  // MARK: North-bound

  public func list() -> [ExtensionStatus] {
    (owned.values.map(\.status) + joined.values.map(memberStatus)).sorted { $0.id < $1.id }
  }

  public func status(_ id: ExtensionID) throws(ManagementError) -> ExtensionStatus {
    if let extensionState = owned[id] { return extensionState.status }
    if let membership = joined[id] { return memberStatus(membership) }
    throw .notFound("no extension \(id)")
  }

  /// Extends the local network `network` to `sites`; returns at once (state pending),
  /// the negotiation and joins go on in the background.
  public func create(network: String, sites: [String]) throws(ManagementError) -> ExtensionStatus {
    guard service.networks().contains(where: { $0.name == network }) else {
      throw .notFound("no network named \(network)")
    }
    let members = try validated(sites)
    if let existing = owned.values.first(where: { $0.status.network == network && !$0.status.deleting }) {
      throw .conflict("network \(network) is already extended (\(existing.status.id))")
    }
    if joined.values.contains(where: { $0.network == network }) {
      throw .conflict("network \(network) is a member of another site's extension")
    }
    let id = ExtensionID.make(owner: site)
    let status = ExtensionStatus(
      id: id, owner: site, network: network, vni: nil, routeTarget: nil,
      members: [
        ExtensionMember(site: site, state: .pending, reason: nil, vtep: service.usedIdentifiers().vtep)
      ]
        + members.map {
          ExtensionMember(site: $0, state: .pending, reason: "negotiating identifiers", vtep: nil)
        },
      role: "owner", generation: 0, deleting: false)
    owned[id] = Owned(status: status)
    persist()
    logger.info(
      "extension created", metadata: ["extension": "\(id)", "network": "\(network)", "sites": "\(members)"])
    wake(id)
    return status
  }

  public func addMembers(_ id: ExtensionID, sites: [String]) throws(ManagementError) -> ExtensionStatus {
    guard var extensionState = try ownedOrRefuse(id) else { throw .notFound("no extension \(id)") }
    let fresh = try validated(sites).filter { site in
      !extensionState.status.members.contains { $0.site == site }
    }
    extensionState.status.members += fresh.map {
      ExtensionMember(site: $0, state: .pending, reason: "joining", vtep: nil)
    }
    owned[id] = extensionState
    persist()
    wake(id)
    return extensionState.status
  }

  public func removeMember(_ id: ExtensionID, site member: String) throws(ManagementError) -> ExtensionStatus
  {
    guard var extensionState = try ownedOrRefuse(id) else { throw .notFound("no extension \(id)") }
    guard member != site else { throw .invalidRequest("the owner cannot leave its extension: delete it") }
    guard let index = extensionState.status.members.firstIndex(where: { $0.site == member }) else {
      throw .notFound("\(member) is not a member of \(id)")
    }
    extensionState.status.members[index].state = .leaving
    extensionState.status.members[index].reason = nil
    extensionState.status.generation += 1
    owned[id] = extensionState
    persist()
    wake(id)
    return extensionState.status
  }

  public func delete(_ id: ExtensionID) throws(ManagementError) -> ExtensionStatus {
    guard var extensionState = try ownedOrRefuse(id) else { throw .notFound("no extension \(id)") }
    extensionState.status.deleting = true
    for index in extensionState.status.members.indices where extensionState.status.members[index].site != site
    {
      extensionState.status.members[index].state = .leaving
    }
    owned[id] = extensionState
    persist()
    wake(id)
    return extensionState.status
  }

  private func ownedOrRefuse(_ id: ExtensionID) throws(ManagementError) -> Owned? {
    if let membership = joined[id] {
      throw .forbidden("extension \(id) is owned by \(membership.description.owner): change it there")
    }
    return owned[id]
  }

  private func validated(_ sites: [String]) throws(ManagementError) -> [String] {
    var seen = Set<String>()
    var result: [String] = []
    for name in sites {
      guard ConfigSyntax.isValidSiteName(name) else { throw .invalidRequest("not a site name: \(name)") }
      guard name != site else { throw .invalidRequest("\(name) is this site") }
      if seen.insert(name).inserted { result.append(name) }
    }
    guard !result.isEmpty else { throw .invalidRequest("give at least one other site") }
    return result
  }

  private func memberStatus(_ membership: Joined) -> ExtensionStatus {
    let description = membership.description
    return ExtensionStatus(
      id: description.id, owner: description.owner, network: membership.network, vni: description.vni,
      routeTarget: description.routeTarget,
      members: description.members.map {
        ExtensionMember(site: $0.site, state: .joined, reason: nil, vtep: $0.vtep)
      },
      role: "member", generation: description.generation, deleting: false)
  }

  // MARK: South-bound: requests from owners

  public func handleUsedIdentifiers(from peer: String) -> UsedIdentifiers {
    count(peer)
    var used = service.usedIdentifiers()
    used.vnis = Array(Set(used.vnis + reservations.values.map(\.vni))).sorted()
    used.routeTargets = Array(Set(used.routeTargets + reservations.values.map(\.routeTarget))).sorted()
    return used
  }

  public func handleReserve(_ reservation: Reservation, from peer: String) throws(ManagementError)
    -> ReservationReply
  {
    count(peer)
    guard reservation.owner == peer, reservation.id.rawValue.hasPrefix(peer + ".") else {
      throw .forbidden("\(peer) cannot reserve for an extension of \(reservation.owner)")
    }
    var used = service.usedIdentifiers(excludingNetwork: reservation.network)
    let others = reservations.filter { $0.key != reservation.id }.values
    used.vnis = Array(Set(used.vnis + others.map(\.vni))).sorted()
    used.routeTargets = Array(Set(used.routeTargets + others.map(\.routeTarget))).sorted()
    // The extension's own binding (a renegotiation) does not count against it.
    if let current = joined[reservation.id] {
      used.vnis.removeAll { $0 == current.description.vni }
      used.routeTargets.removeAll { $0 == current.description.routeTarget }
    }
    guard !used.vnis.contains(reservation.vni), !used.routeTargets.contains(reservation.routeTarget) else {
      return ReservationReply(accepted: false, vtep: used.vtep, used: used)
    }
    reservations[reservation.id] = reservation
    persist()
    return ReservationReply(accepted: true, vtep: used.vtep, used: nil)
  }

  public func handleJoin(_ description: ExtensionDescription, from peer: String) throws(ManagementError)
    -> JoinReply
  {
    count(peer)
    guard description.owner == peer, description.id.rawValue.hasPrefix(peer + ".") else {
      throw .forbidden("\(peer) does not own extension \(description.id)")
    }
    guard let me = description.members.first(where: { $0.site == site }) else {
      throw .invalidRequest("\(site) is not a member of \(description.id)")
    }
    let vtep = service.usedIdentifiers().vtep
    if let current = joined[description.id], current.description.generation >= description.generation {
      return JoinReply(vtep: vtep, network: current.network)
    }
    let remote = description.members.filter { $0.site != site }.compactMap { IPAddress($0.vtep) }
    let created = try service.bindExtension(
      network: me.network, vni: description.vni, routeTarget: description.routeTarget, remoteVTEPs: remote,
      create: true)
    let wasCreated = created || (joined[description.id]?.created ?? false)
    joined[description.id] = Joined(description: description, network: me.network, created: wasCreated)
    reservations[description.id] = nil
    persist()
    sessionsDirty = true
    scheduleSessionPlan()
    logger.info(
      "joined extension",
      metadata: [
        "extension": "\(description.id)", "owner": "\(peer)", "network": "\(me.network)",
        "vni": "\(description.vni)",
        "generation": "\(description.generation)",
      ])
    return JoinReply(vtep: vtep, network: me.network)
  }

  public func handleLeave(_ id: ExtensionID, from peer: String) throws(ManagementError) {
    count(peer)
    if reservations.removeValue(forKey: id) != nil { persist() }
    guard let membership = joined[id] else { return }
    guard membership.description.owner == peer else {
      throw .forbidden("\(peer) does not own extension \(id)")
    }
    service.unbindExtension(network: membership.network, delete: membership.created)
    joined[id] = nil
    persist()
    sessionsDirty = true
    scheduleSessionPlan()
    logger.info("left extension", metadata: ["extension": "\(id)", "owner": "\(peer)"])
  }

  private func count(_ peer: String) { messagesHandled[peer, default: 0] += 1 }

  // MARK: The owner's reconciliation

  /// Starts the extension's worker unless one runs; it works until every member is where
  /// the owner wants it, retrying unreachable sites with backoff.
  func wake(_ id: ExtensionID) {
    guard !stopped else { return }
    if let worker = workers[id], !worker.isCancelled {
      pending.insert(id)
      return
    }
    workers[id] = Task { await self.work(id) }
  }
  var pending = Set<ExtensionID>()

  private func work(_ id: ExtensionID) async {
    var backoff = 0.2
    while !Task.isCancelled {
      pending.remove(id)
      let settled = await step(id)
      persist()
      if settled && !pending.contains(id) { break }
      if !settled {
        try? await Task.sleep(for: .milliseconds(Int(backoff * 1000 * Double.random(in: 0.8...1.2))))
        backoff = min(backoff * 2, Self.maximumBackoff)
      }
    }
    workers[id] = nil
  }

  /// One pass over an extension; true when nothing is left to do. The BGP sessions follow.
  private func step(_ id: ExtensionID) async -> Bool {
    let settled = await reconcile(id)
    await planSessions()
    return settled
  }

  private func reconcile(_ id: ExtensionID) async -> Bool {
    guard let snapshot = owned[id] else { return true }
    var settled = true
    // Members leaving (or everyone, when deleting).
    for member in snapshot.status.members where member.state == .leaving {
      do {
        if channel.isKnown(member.site) { try await channel.leave(id, owner: site, at: member.site) }
        owned[id]?.status.members.removeAll { $0.site == member.site }
        owned[id]?.status.generation += 1
        owned[id]?.acknowledged[member.site] = nil
        owned[id]?.reserved.remove(member.site)
      } catch {
        settled = false
        setReason(id, member.site, "leaving: \(error)")
      }
    }
    if owned[id]?.status.deleting == true {
      guard settled else { return false }
      service.unbindExtension(network: snapshot.status.network, delete: false)
      owned[id] = nil
      logger.info("extension deleted", metadata: ["extension": "\(id)"])
      return true
    }
    if owned[id]?.status.vni == nil {
      guard await negotiate(id) else { return false }
    }
    guard let current = owned[id], let vni = current.status.vni, let routeTarget = current.status.routeTarget
    else {
      return false
    }
    // Late members reserve the negotiated identifiers first; a refusal renegotiates. A new
    // participant is a new generation: every member hears of its VTEP.
    var grew = false
    for member in current.status.members where member.site != site && !current.reserved.contains(member.site)
    {
      if let external = evpnSite(member.site) {
        owned[id]?.reserved.insert(member.site)
        setVTEP(id, member.site, "\(external.vtep)")
        updateEVPNOnlyMember(id, member.site)
        grew = true
        continue
      }
      guard channel.isKnown(member.site) else {
        settled = false
        setState(id, member.site, .failed, "unknown site: not in [[site_peer]]")
        continue
      }
      do {
        let reply = try await channel.reserve(
          Reservation(
            id: id, owner: site, network: current.status.network, vni: vni, routeTarget: routeTarget),
          at: member.site)
        if reply.accepted {
          owned[id]?.reserved.insert(member.site)
          setVTEP(id, member.site, reply.vtep)
          grew = true
        } else {
          if let used = reply.used { owned[id]?.used[member.site] = used }
          owned[id]?.status.vni = nil
          owned[id]?.status.routeTarget = nil
          owned[id]?.reserved = []
          logger.info(
            "renegotiating identifiers", metadata: ["extension": "\(id)", "refused_by": "\(member.site)"])
          return false
        }
      } catch {
        settled = false
        setState(id, member.site, .pending, "\(error)")
      }
    }
    if grew { owned[id]?.status.generation += 1 }
    // Bind locally with the VTEPs of the members that reserved, then describe it to them.
    guard let ready = owned[id] else { return true }
    let participants = ready.status.members.filter { $0.site == site || ready.reserved.contains($0.site) }
    let description = ExtensionDescription(
      id: id, owner: site, network: ready.status.network, vni: vni, routeTarget: routeTarget,
      generation: ready.status.generation,
      members: participants.compactMap { member in
        member.vtep.map {
          .init(
            site: member.site, vtep: $0, network: ready.status.network,
            evpnOnly: evpnSite(member.site) != nil ? true : nil)
        }
      }, sessionKey: ready.sessionKey)
    do {
      try service.bindExtension(
        network: ready.status.network, vni: vni, routeTarget: routeTarget,
        remoteVTEPs: description.members.filter { $0.site != site }.compactMap { IPAddress($0.vtep) },
        create: false)
      setState(id, site, .joined, nil)
    } catch {
      setState(id, site, .failed, "\(error)")
      return false
    }
    for member in participants
    where member.site != site && ready.acknowledged[member.site] != ready.status.generation {
      if evpnSite(member.site) != nil {
        updateEVPNOnlyMember(id, member.site)
        continue
      }
      do {
        let reply = try await channel.join(description, at: member.site)
        guard owned[id]?.status.generation == description.generation else { return false }
        owned[id]?.acknowledged[member.site] = description.generation
        setVTEP(id, member.site, reply.vtep)
        setState(id, member.site, .joined, nil)
      } catch {
        settled = false
        setState(id, member.site, .pending, "\(error)")
      }
    }
    return settled
  }

  /// Picks a VNI and route target free at every reachable member and reserves them there.
  private func negotiate(_ id: ExtensionID) async -> Bool {
    guard let snapshot = owned[id] else { return false }
    let others = snapshot.status.members.map(\.site).filter { $0 != site }
    for member in others {
      if evpnSite(member) != nil { continue }
      guard channel.isKnown(member) else {
        setState(id, member, .failed, "unknown site: not in [[site_peer]]")
        continue
      }
      do {
        let used = try await channel.usedIdentifiers(at: member)
        owned[id]?.used[member] = used
        setVTEP(id, member, used.vtep)
        setReason(id, member, "negotiating identifiers")
      } catch {
        setState(id, member, .pending, "\(error)")
      }
    }
    guard let current = owned[id] else { return false }
    let reachable = others.filter { current.used[$0] != nil && evpnSite($0) == nil }
    // EVPN-only members cannot be asked: their operator configures what is negotiated.
    let evpnOnly = others.contains { evpnSite($0) != nil }
    guard !reachable.isEmpty || evpnOnly else { return false }
    var local = service.usedIdentifiers(excludingNetwork: current.status.network)
    local.vnis += reservations.values.map(\.vni)
    for _ in 0..<8 {
      guard let latest = owned[id] else { return false }
      let sets = [local] + reachable.compactMap { latest.used[$0] }
      let usedVNIs = Set(sets.flatMap(\.vnis))
      let usedRTs = Set(sets.flatMap(\.routeTargets))
      let own = service.networks().first { $0.name == latest.status.network }?.vni
      let candidates = (own.map { [$0] } ?? []) + Array(Self.firstCandidateVNI..<(1 << 24))
      guard let vni = candidates.first(where: { !usedVNIs.contains($0) }) else { return false }
      var routeTarget = "\(Self.routeTargetAS):\(vni)"
      var asn = Self.routeTargetAS
      while usedRTs.contains(routeTarget) {
        asn += 1
        routeTarget = "\(asn):\(vni)"
      }
      var accepted = Set<String>()
      var refused = false
      for member in reachable {
        do {
          let reply = try await channel.reserve(
            Reservation(
              id: id, owner: site, network: latest.status.network, vni: vni, routeTarget: routeTarget),
            at: member)
          if reply.accepted {
            accepted.insert(member)
          } else {
            refused = true
            if let used = reply.used { owned[id]?.used[member] = used }
          }
        } catch {
          setState(id, member, .pending, "\(error)")
        }
      }
      if refused { continue }
      guard !accepted.isEmpty || reachable.isEmpty else { return false }
      owned[id]?.status.vni = vni
      owned[id]?.status.routeTarget = routeTarget
      owned[id]?.reserved = accepted
      owned[id]?.status.generation += 1
      logger.info(
        "identifiers negotiated",
        metadata: [
          "extension": "\(id)", "vni": "\(vni)", "rt": "\(routeTarget)", "members": "\(accepted.sorted())",
        ])
      return true
    }
    return false
  }

  private func setState(_ id: ExtensionID, _ member: String, _ state: MemberState, _ reason: String?) {
    guard let index = owned[id]?.status.members.firstIndex(where: { $0.site == member }) else { return }
    if owned[id]?.status.members[index].state == .leaving { return }
    owned[id]?.status.members[index].state = state
    owned[id]?.status.members[index].reason = reason
  }

  private func setReason(_ id: ExtensionID, _ member: String, _ reason: String) {
    guard let index = owned[id]?.status.members.firstIndex(where: { $0.site == member }) else { return }
    owned[id]?.status.members[index].reason = reason
  }

  private func setVTEP(_ id: ExtensionID, _ member: String, _ vtep: String) {
    guard let index = owned[id]?.status.members.firstIndex(where: { $0.site == member }) else { return }
    owned[id]?.status.members[index].vtep = vtep
  }

  // MARK: BGP EVPN sessions between members

  var sessionsDirty = false
  var sessionPlanner: Task<Void, Never>?
  /// BGP peers this manager added: site -> (VTEP, exported VNIs, key).
  var sessions: [String: PlannedSession] = [:]
  /// The VNIs last given to `EVPNControlPlane.setExtendedVNIs` (nil: not yet).
  var extendedVNIs: Set<UInt32>?

  struct PlannedSession: Equatable {
    var address: String
    var vnis: Set<UInt32>
    /// TCP MD5 key; nil: none (an EVPN-only member without `password`).
    var key: String?
    /// The peer's AS; nil: this speaker's (iBGP).
    var remoteAS: UInt32? = nil
    /// An EVPN-only member: this side always connects (the other side may too).
    var evpnOnly = false
  }

  private func scheduleSessionPlan() {
    guard sessionPlanner == nil else { return }
    sessionPlanner = Task {
      await self.planSessions()
      self.sessionPlanner = nil
    }
  }

  /// The sessions members need: one per other member site, exporting exactly the VNIs of
  /// the extensions shared with it (a site's other networks stay local), keyed with the
  /// key of the shared extension with the smallest identifier (the same at both ends).
  func desiredSessions() -> [String: PlannedSession] {
    var shared: [String: (address: String, vnis: Set<UInt32>, key: (ExtensionID, String))] = [:]
    func note(_ other: String, _ vtep: String, _ vni: UInt32, _ id: ExtensionID, _ key: String) {
      guard other != site else { return }
      var entry = shared[other] ?? (vtep, [], (id, key))
      entry.vnis.insert(vni)
      if id < entry.key.0 { entry.key = (id, key) }
      shared[other] = entry
    }
    for extensionState in owned.values where !extensionState.status.deleting {
      guard let vni = extensionState.status.vni else { continue }
      for member in extensionState.status.members where member.site != site && member.vtep != nil {
        // An EVPN-only member's session is what joins it: up as soon as it is a participant.
        let external = evpnSite(member.site) != nil && extensionState.reserved.contains(member.site)
        guard member.state == .joined || (external && member.state != .leaving) else { continue }
        note(member.site, member.vtep!, vni, extensionState.status.id, extensionState.sessionKey)
      }
    }
    var flaggedEVPNOnly = Set<String>()
    for membership in joined.values {
      let description = membership.description
      for member in description.members {
        note(member.site, member.vtep, description.vni, description.id, description.sessionKey)
        if member.evpnOnly == true { flaggedEVPNOnly.insert(member.site) }
      }
    }
    var planned: [String: PlannedSession] = [:]
    for (other, entry) in shared {
      if let external = evpnSite(other) {
        // Its own key and AS, from this site's configuration (the extension's key is for
        // sites that received it over the site channel).
        planned[other] = PlannedSession(
          address: "\(external.vtep)", vnis: entry.vnis, key: external.password, remoteAS: external.asn,
          evpnOnly: true)
      } else if flaggedEVPNOnly.contains(other) {
        planned[other] = PlannedSession(address: entry.address, vnis: entry.vnis, key: nil, evpnOnly: true)
      } else {
        planned[other] = PlannedSession(address: entry.address, vnis: entry.vnis, key: entry.key.1)
      }
    }
    return planned
  }

  /// Brings the BGP sessions in line with the extensions (sites without a speaker switch
  /// extended networks by flooding and learning only).
  func planSessions() async {
    guard let controlPlane = service.controlPlane else { return }
    sessionsDirty = false
    let desired = desiredSessions()
    for peer in sessions.keys where desired[peer] == nil {
      try? await controlPlane.removePeer(name: peer)
      sessions[peer] = nil
      logger.info("bgp session to member removed", metadata: ["peer": "\(peer)"])
    }
    for (peer, planned) in desired.sorted(by: { $0.key < $1.key }) where sessions[peer] != planned {
      // One side connects, the other listens (the site with the smaller name connects), so
      // that both ends never race into a connection collision.
      let configuration = PeerConfiguration(
        name: peer, address: planned.address, remoteAS: planned.remoteAS ?? controlPlane.localAS,
        passive: planned.evpnOnly ? false : site > peer,
        password: planned.key, staleRoutePolicy: .always, exportVNIs: planned.vnis,
        localAddress: service.usedIdentifiers().vtep)
      do {
        if let current = sessions[peer], current.address == planned.address, current.key == planned.key,
          current.remoteAS == planned.remoteAS
        {
          try await controlPlane.setExportVNIs(peer: peer, planned.vnis)
        } else if sessions[peer] != nil {
          try await controlPlane.updatePeer(configuration)
        } else {
          try await controlPlane.addPeer(configuration)
        }
        sessions[peer] = planned
        logger.info(
          "bgp session to member",
          metadata: ["peer": "\(peer)", "address": "\(planned.address)", "vnis": "\(planned.vnis.sorted())"])
      } catch {
        logger.warning(
          "bgp session to member not set up", metadata: ["peer": "\(peer)", "error": "\(error)"])
      }
    }
    // The configured peers (route reflectors) of a [peering] site carry the extended
    // networks only: the VNIs shared with at least one other member.
    let extended = desired.values.reduce(into: Set<UInt32>()) { $0.formUnion($1.vnis) }
    if extended != extendedVNIs {
      do {
        try await controlPlane.setExtendedVNIs(extended)
        extendedVNIs = extended
      } catch {
        logger.warning(
          "extended networks not set on the configured bgp peers", metadata: ["error": "\(error)"])
      }
    }
  }

  static func randomKey() -> String {
    (0..<4).map { _ in String(UInt64.random(in: .min ... .max), radix: 16) }.joined()
  }

  /// Waits until no extension has work left (tests, the lab, the benchmark).
  public func settle(timeout: Duration = .seconds(60)) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if workers.isEmpty && pending.isEmpty && sessionPlanner == nil { return true }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return false
  }
}
