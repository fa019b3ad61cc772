import Dataplane

/// Export side: our MACs and flood-list membership to the peers.
extension EVPNSpeaker {
  // MARK: public API

  /// Advertises a locally learnt MAC (with an optional IP). Without an explicit
  /// `sequence`, a MAC that peers know elsewhere gets their highest sequence + 1
  /// (RFC 7432 section 15), otherwise it keeps its current one (0 at first).
  public func advertiseMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress? = nil, sequence: UInt32? = nil, sticky: Bool = false
  ) {
    eventLoop.execute {
      self.advertiseLocalMAC(vni: vni, mac: mac, ip: ip, sequence: sequence, sticky: sticky)
    }
  }

  /// Withdraws a local MAC (aged out or moved away).
  public func withdrawMAC(vni: UInt32, mac: MACAddress, ip: IPAddress? = nil) {
    eventLoop.execute { self.withdrawLocalRoute(MACRouteKey(vni: vni, mac: mac.rawValue, ip: ip)) }
  }

  /// Advertises this VTEP as a flood-list member of `vni` (type 3, ingress replication).
  public func advertiseInclusiveMulticast(vni: UInt32) {
    eventLoop.execute {
      guard self.vniSettings[vni] != nil, self.advertisedMulticastVNIs.insert(vni).inserted else { return }
      for peer in self.peers { self.sendInclusiveMulticast(vnis: [vni], to: peer) }
    }
  }

  public func withdrawInclusiveMulticast(vni: UInt32) {
    eventLoop.execute { self.withdrawInclusiveMulticastNow(vni: vni) }
  }

  /// Advertises `ip` bound to the local `mac` (learnt from local ARP) as a MAC/IP route
  /// (RFC 7432 section 7.2) with the RD, route targets, label, encapsulation and
  /// MAC-mobility sequence of the MAC's own route, next to it. The binding is held
  /// while the MAC is not local (or frozen) and advertised when it is again.
  public func bindLocalIP(vni: UInt32, mac: MACAddress, ip: IPAddress) {
    eventLoop.execute { self.bindLocalIPNow(vni: vni, mac: mac, ip: ip) }
  }

  /// Withdraws the MAC/IP route of a binding that went (MAC aged out, IP re-bound to
  /// another MAC, or replaced by a remote binding).
  public func unbindLocalIP(vni: UInt32, mac: MACAddress, ip: IPAddress) {
    eventLoop.execute {
      let macKey = DuplicateMACDetector.Key(vni: vni, mac: mac.rawValue)
      if self.localBindings[macKey]?.remove(ip) != nil, self.localBindings[macKey]?.isEmpty == true {
        self.localBindings[macKey] = nil
      }
      self.withdrawLocalRoute(MACRouteKey(vni: vni, mac: mac.rawValue, ip: ip))
    }
  }

  /// Lifts a duplicate-MAC freeze (the corrective action of RFC 7432 section 15.1):
  /// the MAC's routes are processed again and ours, if it is still local, advertised.
  public func unfreezeMAC(vni: UInt32, mac: MACAddress) {
    eventLoop.execute { self.liftFreeze(.init(vni: vni, mac: mac.rawValue), reason: "cleared") }
  }

  /// Lifts the freeze of every frozen MAC matching `vni` and `mac` (nil: any); returns
  /// the MACs released. Must not be called on the speaker's event loop.
  public func clearDuplicateMACsBlocking(vni: UInt32? = nil, mac: MACAddress? = nil) -> [DuplicateMAC] {
    let released = try? eventLoop.submit { () -> [DuplicateMAC] in
      let keys = self.rib.detector.frozen.keys.filter {
        (vni == nil || $0.vni == vni) && (mac == nil || $0.mac == mac?.rawValue)
      }
      return keys.sorted { ($0.vni, $0.mac) < ($1.vni, $1.mac) }.compactMap { key in
        self.liftFreeze(key, reason: "cleared")
          ? DuplicateMAC(vni: key.vni, mac: MACAddress(rawValue: key.mac)) : nil
      }
    }.wait()
    return released ?? []
  }

  /// The frozen MACs (any thread): the copy `publishFrozenMACs` makes of the detector's.
  public var duplicateMACs: Set<DuplicateMAC> { frozenMACs.withLock { $0 } }

  /// Publishes the detector's frozen MACs (which only the event loop may read) for other
  /// threads; called after every freeze and every lift, so the copy never drifts.
  func publishFrozenMACs() {
    let frozen = Set(
      rib.detector.frozen.keys.map { DuplicateMAC(vni: $0.vni, mac: MACAddress(rawValue: $0.mac)) })
    frozenMACs.withLock { $0 = frozen }
  }

  // MARK: internals

  private func bindLocalIPNow(vni: UInt32, mac: MACAddress, ip: IPAddress) {
    guard vniSettings[vni] != nil else { return }
    let macKey = DuplicateMACDetector.Key(vni: vni, mac: mac.rawValue)
    localBindings[macKey, default: []].insert(ip)
    // Only next to the MAC's own route, with its sequence.
    guard let set = rib.macRoutes[MACRouteKey(vni: vni, mac: mac.rawValue, ip: nil)],
      let index = set.localIndex
    else { return }
    let routes = upsertBindings(macKey, ips: [ip], like: set[index])
    guard !routes.isEmpty, !rib.detector.isFrozen(macKey) else { return }
    for peer in peers { sendMACRoutes(routes, to: peer) }
  }

  /// Puts MAC/IP local paths for `ips` next to the MAC's local path `macPath`; returns
  /// those that stand (a remote route that beats one makes us withdraw it instead).
  private func upsertBindings(_ macKey: DuplicateMACDetector.Key, ips: Set<IPAddress>, like macPath: MACPath)
    -> [(MACRouteKey, MACPath)]
  {
    var routes: [(MACRouteKey, MACPath)] = []
    var lost: [MACRouteKey] = []
    for ip in ips.sorted() {
      let key = MACRouteKey(vni: macKey.vni, mac: macKey.mac, ip: ip)
      if let set = rib.macRoutes[key], let index = set.localIndex, set[index] == macPath {
        routes.append((key, macPath))
        continue
      }
      if case .localLost = rib.upsert(key, path: macPath) {
        lost.append(key)
      } else {
        routes.append((key, macPath))
      }
    }
    if !lost.isEmpty { sendLocalWithdrawals(lost) }
    return routes
  }

  /// Removes our route for `key` and withdraws it (and, for a MAC-only key, the MAC/IP
  /// routes that go with it).
  func withdrawLocalRoute(_ key: MACRouteKey) {
    if key.ip == nil { rib.localMACWithdrawn(key) }
    guard let settings = vniSettings[key.vni], rib.macRoutes[key]?.localIndex != nil else { return }
    rib.remove(key, peer: MACPath.localPeer, routeDistinguisher: settings.routeDistinguisher.rawValue)
    sendLocalWithdrawals([key])
  }

  /// Duplicate detection froze a MAC (called from inside the RIB): withdraw our routes
  /// for it, MAC and MAC/IP, from every peer. They stay in the RIB, unadvertised, to be
  /// sent again when the freeze is lifted.
  func macFroze(_ macKey: DuplicateMACDetector.Key, moves: Int) {
    var keys = rib.localIPKeys(macKey)
    let macOnly = MACRouteKey(vni: macKey.vni, mac: macKey.mac, ip: nil)
    if rib.macRoutes[macOnly]?.localIndex != nil { keys.append(macOnly) }
    if !keys.isEmpty { sendWithdrawals(keys) }
    let mac = MACAddress(rawValue: macKey.mac)
    publishFrozenMACs()
    emit(.macFrozen(vni: macKey.vni, mac: mac, moves: moves))
    if let hold = configuration.duplicateMACFreezeTime, let since = rib.detector.frozen[macKey]?.since {
      eventLoop.scheduleTask(in: .nanoseconds(Int64(hold * 1e9))) {
        // Only the freeze this timer was set for (not one cleared and frozen again).
        guard self.rib.detector.frozen[macKey]?.since == since else { return }
        self.liftFreeze(macKey, reason: "freeze time elapsed")
      }
    }
  }

  /// Lifts a freeze: the RIB catches up with routes that arrived meanwhile, and our
  /// routes for the MAC that still win are advertised again. Returns false when the
  /// MAC was not frozen.
  @discardableResult
  func liftFreeze(_ macKey: DuplicateMACDetector.Key, reason: String) -> Bool {
    guard let lost = rib.unfreeze(macKey) else { return false }
    if !lost.isEmpty { sendLocalWithdrawals(lost) }
    let macOnly = MACRouteKey(vni: macKey.vni, mac: macKey.mac, ip: nil)
    var routes: [(MACRouteKey, MACPath)] = []
    if let set = rib.macRoutes[macOnly], let index = set.localIndex {
      routes.append((macOnly, set[index]))
      routes += upsertBindings(macKey, ips: localBindings[macKey] ?? [], like: set[index])
    }
    if !routes.isEmpty { for peer in peers { sendMACRoutes(routes, to: peer) } }
    let mac = MACAddress(rawValue: macKey.mac)
    publishFrozenMACs()
    emit(.macUnfrozen(vni: macKey.vni, mac: mac, reason: reason))
    return true
  }

  func duplicateMACStatus() -> [DuplicateMACStatus] {
    let now = rib.clock()
    return rib.detector.frozen.sorted { ($0.key.vni, $0.key.mac) < ($1.key.vni, $1.key.mac) }.map {
      key, freeze in
      DuplicateMACStatus(
        vni: key.vni, mac: MACAddress(rawValue: key.mac).description, moves: freeze.moves,
        frozenFor: now - freeze.since,
        releaseIn: configuration.duplicateMACFreezeTime.map { max(0, freeze.since + $0 - now) })
    }
  }

  private func advertiseLocalMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, sequence: UInt32?, sticky: Bool
  ) {
    guard let settings = vniSettings[vni] else { return }
    // A MAC conflict this site lost (RFC 7432 section 15 tie): not re-announced with a
    // higher sequence while the winner's route stands (see `EVPNRIB+Conflicts.swift`).
    guard ip != nil || sequence != nil || rib.mayAnnounceLocalMAC(.init(vni: vni, mac: mac.rawValue)) else {
      return
    }
    let key = MACRouteKey(vni: vni, mac: mac.rawValue, ip: ip)
    var chosen = sequence ?? 0
    if sequence == nil {
      let current = rib.macRoutes[key].flatMap { set in set.localIndex.map { set[$0].sequence } }
      if let highest = rib.highestRemoteSequence(key) {
        chosen = max(current ?? 0, highest &+ 1)
      } else {
        chosen = current ?? 0
      }
    }
    let path = MACPath(
      routeDistinguisher: settings.routeDistinguisher.rawValue, vtepID: localVTEPID, sequence: chosen,
      peer: MACPath.localPeer, flags: sticky ? MACPath.stickyFlag : 0)
    if case .localLost = rib.upsert(key, path: path) {
      // A sticky or newer remote route beats ours: nothing to announce.
      sendLocalWithdrawals([key])
      return
    }
    let macKey = DuplicateMACDetector.Key(vni: vni, mac: mac.rawValue)
    var routes = [(key, path)]
    // The MAC's IP bindings go (again) with its route, with the same sequence.
    if ip == nil, let ips = localBindings[macKey] { routes += upsertBindings(macKey, ips: ips, like: path) }
    guard !rib.detector.isFrozen(macKey) else { return }
    for peer in peers { sendMACRoutes(routes, to: peer) }
  }

  /// Attributes common to everything we send a peer: iBGP gets LOCAL_PREF and an empty
  /// AS_PATH, eBGP our AS prepended (we originate, so the path is just us).
  func baseAttributes(for peer: BGPPeer) -> PathAttributes {
    var attributes = PathAttributes()
    attributes.origin = .igp
    if peer.isInternal {
      attributes.asPath = []
      attributes.localPreference = 100
    } else {
      attributes.asPath = [ASPathSegment(kind: .sequence, asns: [configuration.asn])]
      // RFC 6793: a 2-octet peer sees AS_TRANS in AS_PATH and the real AS in AS4_PATH.
      if configuration.asn > 0xFFFF, peer.established?.context.fourOctetAS == false {
        attributes.as4Path = attributes.asPath
      }
    }
    return attributes
  }

  /// Whether routes of `vni` with these export `targets` go to `peer`: its export filter
  /// (`PeerConfiguration.exportVNIs`) allows the VNI, and with RT constraint (RFC 4684)
  /// the peer asked for one of the targets. Toward a peer with `importOnlyExported` (a
  /// route reflector of a `[peering]` site) the export filter alone decides, from the
  /// start of the session: a route reflector such as gobgpd reflects a membership to the
  /// other clients but not back to the one whose path it chose, announces no default
  /// membership and sends no RTC End-of-RIB without graceful restart, so the members of
  /// an extension would otherwise never send it their routes.
  func canSend(to peer: BGPPeer, vni: UInt32, targets: [RouteTarget]) -> Bool {
    guard peer.established != nil, peer.supportsEVPN, peer.exports(vni) else { return false }
    guard peer.usesRouteTargetConstraint else { return true }
    guard peer.routeTargetConstraintSynced else { return false }
    if peer.configuration.importOnlyExported { return true }
    return targets.contains { target in peer.routeTargetMemberships.contains { $0.matches(target) } }
  }

  /// UPDATEs (about 4 KiB each) written between two flushes of a bulk announcement.
  static var updatesPerFlush: Int { 8 }
  /// Local routes grouped and sent at a time by `sendAllRoutes` (about 20 UPDATEs).
  static var routesPerSlice: Int { 2048 }

  /// Announces local MAC routes, grouped by the attributes they share.
  func sendMACRoutes(_ routes: [(MACRouteKey, MACPath)], to peer: BGPPeer) {
    guard let connection = peer.established else { return }
    struct Group: Hashable {
      let vni: UInt32
      let sequence: UInt32
      let sticky: Bool
    }
    var groups: [Group: [EVPNNLRI]] = [:]
    var current: (group: Group, routes: [EVPNNLRI])?
    // Routes come in runs of one VNI: its settings and RT check are looked up once a run.
    var last: (vni: UInt32, settings: ResolvedVNI?)?
    for (key, path) in routes {
      if last?.vni != key.vni {
        let settings = vniSettings[key.vni]
        last = (
          key.vni,
          settings.flatMap { canSend(to: peer, vni: key.vni, targets: $0.exportRouteTargets) ? $0 : nil }
        )
      }
      guard let settings = last?.settings else { continue }
      let route = MACIPAdvertisementRoute(
        routeDistinguisher: settings.routeDistinguisher, mac: MACAddress(rawValue: key.mac), ip: key.ip,
        label1: key.vni)
      // Consecutive routes nearly always share a group: hash only when it changes.
      let group = Group(vni: key.vni, sequence: path.sequence, sticky: path.isSticky)
      if group != current?.group {
        if let current { groups[current.group, default: []] += current.routes }
        current = (group, [])
      }
      current!.routes.append(.macIP(route))
    }
    if let current { groups[current.group, default: []] += current.routes }
    let base = baseAttributes(for: peer)
    let nextHop = configuration.vtep.bytes
    var unflushed = 0
    for (group, nlri) in groups {
      guard let settings = vniSettings[group.vni] else { continue }
      var attributes = base
      attributes.extendedCommunities = settings.exportRouteTargets.map(ExtendedCommunity.routeTarget)
      attributes.extendedCommunities.append(.vxlanEncapsulation)
      if group.sequence > 0 || group.sticky {
        attributes.extendedCommunities.append(.macMobility(sticky: group.sticky, sequence: group.sequence))
      }
      // Flushed every few UPDATEs: the peer decodes the first ones while we encode
      // the rest of a large table.
      UpdateBuilder.announcements(nlri, attributes: attributes, nextHop: nextHop, context: connection.context)
      {
        message in
        unflushed += 1
        connection.sendRaw(message, flush: unflushed % Self.updatesPerFlush == 0)
      }
      peer.routesAdvertised += nlri.count
    }
    connection.flush()
  }

  func sendInclusiveMulticast(vnis: [UInt32], to peer: BGPPeer) {
    guard let connection = peer.established else { return }
    for vni in vnis.sorted() {
      guard let settings = vniSettings[vni], canSend(to: peer, vni: vni, targets: settings.exportRouteTargets)
      else {
        continue
      }
      var attributes = baseAttributes(for: peer)
      attributes.extendedCommunities = settings.exportRouteTargets.map(ExtendedCommunity.routeTarget)
      attributes.extendedCommunities.append(.vxlanEncapsulation)
      attributes.pmsiTunnel = .ingressReplication(vni: vni, vtep: configuration.vtep)
      let route = EVPNNLRI.inclusiveMulticast(
        InclusiveMulticastRoute(
          routeDistinguisher: settings.routeDistinguisher, originatingRouter: configuration.vtep))
      for message in UpdateBuilder.announcements(
        [route], attributes: attributes, nextHop: configuration.vtep.bytes, context: connection.context)
      {
        connection.sendRaw(message)
      }
      peer.routesAdvertised += 1
    }
  }

  /// Withdraws local MAC routes from every peer. A MAC-only route takes the MAC's
  /// MAC/IP routes with it: they are removed from the RIB and withdrawn too (the
  /// bindings are kept, to go out again when the MAC is local again).
  func sendLocalWithdrawals(_ keys: [MACRouteKey]) {
    var all = keys
    let listed = Set(keys)
    for key in keys where key.ip == nil {
      guard let ips = localBindings[.init(vni: key.vni, mac: key.mac)], let settings = vniSettings[key.vni]
      else { continue }
      for ip in ips.sorted() {
        let ipKey = MACRouteKey(vni: key.vni, mac: key.mac, ip: ip)
        guard !listed.contains(ipKey), rib.macRoutes[ipKey]?.localIndex != nil else { continue }
        rib.remove(ipKey, peer: MACPath.localPeer, routeDistinguisher: settings.routeDistinguisher.rawValue)
        all.append(ipKey)
      }
    }
    sendWithdrawals(all)
  }

  /// Sends withdrawals of our routes for `keys` to every peer; the RIB is not touched.
  func sendWithdrawals(_ keys: [MACRouteKey]) {
    for peer in peers { sendWithdrawals(keys, to: peer) }
  }

  /// Withdrawals of our routes for `keys` to one peer, those its filters let through.
  func sendWithdrawals(_ keys: [MACRouteKey], to peer: BGPPeer) {
    guard let connection = peer.established else { return }
    var nlri: [EVPNNLRI] = []
    for key in keys {
      guard let settings = vniSettings[key.vni],
        canSend(to: peer, vni: key.vni, targets: settings.exportRouteTargets)
      else { continue }
      nlri.append(
        .macIP(
          MACIPAdvertisementRoute(
            routeDistinguisher: settings.routeDistinguisher, mac: MACAddress(rawValue: key.mac), ip: key.ip,
            label1: key.vni)))
    }
    for message in UpdateBuilder.withdrawals(nlri, context: connection.context) {
      connection.sendRaw(message)
    }
  }

  /// Full table to one peer: after Established, RTC sync or a ROUTE-REFRESH; with
  /// `vnis`, only the routes of those VNIs (a widened export filter).
  func sendAllRoutes(to peer: BGPPeer, vnis: Set<UInt32>? = nil) {
    // In slices: the first UPDATEs leave (and the peer installs them) while the rest of
    // a large table is still being encoded.
    var local: [(MACRouteKey, MACPath)] = []
    local.reserveCapacity(Self.routesPerSlice)
    for (key, set) in rib.macRoutes {
      guard let index = set.localIndex, vnis?.contains(key.vni) ?? true,
        !rib.detector.isFrozen(.init(vni: key.vni, mac: key.mac))
      else {
        continue
      }
      local.append((key, set[index]))
      if local.count == Self.routesPerSlice {
        sendMACRoutes(local, to: peer)
        local.removeAll(keepingCapacity: true)
      }
    }
    sendMACRoutes(local, to: peer)
    sendInclusiveMulticast(
      vnis: Array(advertisedMulticastVNIs.filter { vnis?.contains($0) ?? true }), to: peer)
  }
}
