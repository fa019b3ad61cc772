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
    eventLoop.execute {
      guard let settings = self.vniSettings[vni] else { return }
      let key = MACRouteKey(vni: vni, mac: mac.rawValue, ip: ip)
      guard self.rib.macRoutes[key]?.localIndex != nil else { return }
      self.rib.remove(key, peer: MACPath.localPeer, routeDistinguisher: settings.routeDistinguisher.rawValue)
      self.sendLocalWithdrawals([key])
    }
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

  /// Lifts a duplicate-MAC freeze; the next `advertiseMAC` is sent again.
  public func unfreezeMAC(vni: UInt32, mac: MACAddress) {
    eventLoop.execute { self.rib.detector.unfreeze(.init(vni: vni, mac: mac.rawValue)) }
  }

  // MARK: internals

  private func advertiseLocalMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, sequence: UInt32?, sticky: Bool
  ) {
    guard let settings = vniSettings[vni] else { return }
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
    guard !rib.detector.isFrozen(.init(vni: vni, mac: mac.rawValue)) else { return }
    for peer in peers { sendMACRoutes([(key, path)], to: peer) }
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

  /// RFC 4684: with RT constraint, send only what the peer asked for.
  func canSend(to peer: BGPPeer, targets: [RouteTarget]) -> Bool {
    guard peer.established != nil, peer.supportsEVPN else { return false }
    guard peer.usesRouteTargetConstraint else { return true }
    guard peer.routeTargetConstraintSynced else { return false }
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
        last = (key.vni, settings.flatMap { canSend(to: peer, targets: $0.exportRouteTargets) ? $0 : nil })
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
      guard let settings = vniSettings[vni], canSend(to: peer, targets: settings.exportRouteTargets) else {
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

  /// Withdraws local MAC routes from every peer.
  func sendLocalWithdrawals(_ keys: [MACRouteKey]) {
    for peer in peers {
      guard let connection = peer.established else { continue }
      var nlri: [EVPNNLRI] = []
      for key in keys {
        guard let settings = vniSettings[key.vni], canSend(to: peer, targets: settings.exportRouteTargets)
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
  }

  /// Full table to one peer: after Established, RTC sync or a ROUTE-REFRESH.
  func sendAllRoutes(to peer: BGPPeer) {
    // In slices: the first UPDATEs leave (and the peer installs them) while the rest of
    // a large table is still being encoded.
    var local: [(MACRouteKey, MACPath)] = []
    local.reserveCapacity(Self.routesPerSlice)
    for (key, set) in rib.macRoutes {
      guard let index = set.localIndex, !rib.detector.isFrozen(.init(vni: key.vni, mac: key.mac)) else {
        continue
      }
      local.append((key, set[index]))
      if local.count == Self.routesPerSlice {
        sendMACRoutes(local, to: peer)
        local.removeAll(keepingCapacity: true)
      }
    }
    sendMACRoutes(local, to: peer)
    sendInclusiveMulticast(vnis: Array(advertisedMulticastVNIs), to: peer)
  }
}
