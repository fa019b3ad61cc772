import Dataplane

/// RFC 4684 route target constraint on our side: the memberships (import route targets)
/// each peer is told, kept in line with the VNIs and, for peers whose export filter is
/// also their import filter (`PeerConfiguration.importOnlyExported`), with that filter.
extension EVPNSpeaker {
  /// The import route targets announced to `peer` as RT-constraint memberships: every
  /// import RT, or for a peer with `importOnlyExported` only those of the VNIs its
  /// export filter allows (none while it allows none: the peer then sends us nothing).
  func membershipTargets(for peer: BGPPeer) -> [RouteTarget] {
    guard peer.configuration.importOnlyExported else { return importTargets }
    var targets = Set<RouteTarget>()
    for (vni, settings) in vniSettings where peer.exports(vni) {
      targets.formUnion(settings.importRouteTargets)
    }
    return targets.sorted { $0.rawValue < $1.rawValue }
  }

  /// Announces the memberships `peer` lacks and withdraws those it should no longer have
  /// (after a change of the VNIs or of its filter), on an established session that uses
  /// RT constraint and was sent its initial memberships.
  func syncMemberships(of peer: BGPPeer) {
    guard peer.usesRouteTargetConstraint, peer.established != nil else { return }
    let wanted = Set(membershipTargets(for: peer))
    let added = wanted.subtracting(peer.announcedMemberships).sorted { $0.rawValue < $1.rawValue }
    let removed = peer.announcedMemberships.subtracting(wanted).sorted { $0.rawValue < $1.rawValue }
    guard !added.isEmpty || !removed.isEmpty else { return }
    peer.announcedMemberships = wanted
    sendMemberships(added, withdrawn: removed, to: peer)
  }

  /// A peer withdrew memberships (RFC 4684): our routes (type 2 and 3) of the VNIs none of
  /// whose export route targets its remaining memberships match are withdrawn from it,
  /// before the memberships go (`canSend` filters withdrawals as it filters
  /// announcements). A speaker that keeps what it was sent beside its VNIs' tables (FRR
  /// and GoBGP keep one EVPN table) would otherwise hold them, and bring them back as
  /// they were, gone MACs included, when it asks for the route target again.
  func withdrawMemberships(_ memberships: [RouteTargetMembership], of peer: BGPPeer) {
    let remaining = peer.routeTargetMemberships.subtracting(memberships)
    guard remaining != peer.routeTargetMemberships else { return }
    if !peer.configuration.importOnlyExported {
      let lost = Set(
        vniSettings.compactMap { vni, settings -> UInt32? in
          guard canSend(to: peer, vni: vni, targets: settings.exportRouteTargets) else { return nil }
          let matched = settings.exportRouteTargets.contains { target in
            remaining.contains { $0.matches(target) }
          }
          return matched ? nil : vni
        })
      if !lost.isEmpty { withdrawLocalRoutes(of: lost, from: peer) }
    }
    peer.routeTargetMemberships = remaining
  }

  /// Withdraws from `peer` our routes of `vnis` (type 2, but a frozen MAC's, already
  /// withdrawn, and type 3), through its filters as they stand: called before the change
  /// that takes those VNIs from it.
  func withdrawLocalRoutes(of vnis: Set<UInt32>, from peer: BGPPeer) {
    var keys: [MACRouteKey] = []
    for (key, set) in rib.macRoutes where vnis.contains(key.vni) && set.localIndex != nil {
      if !rib.detector.isFrozen(.init(vni: key.vni, mac: key.mac)) { keys.append(key) }
    }
    sendWithdrawals(keys, to: peer)
    for vni in vnis.sorted() where advertisedMulticastVNIs.contains(vni) {
      sendInclusiveMulticastWithdrawal(vni: vni, to: peer)
    }
  }

  /// One UPDATE withdrawing `withdrawn`, one announcing `targets` (as memberships of our AS).
  func sendMemberships(_ targets: [RouteTarget], withdrawn: [RouteTarget], to peer: BGPPeer) {
    guard let connection = peer.established else { return }
    func memberships(_ targets: [RouteTarget]) -> [RouteTargetMembership] {
      targets.map { RouteTargetMembership(originAS: configuration.asn, routeTarget: $0) }
    }
    if !withdrawn.isEmpty {
      var attributes = PathAttributes()
      attributes.mpUnreach = .routeTargetMembership(memberships(withdrawn))
      connection.send(.update(UpdateMessage(attributes: attributes)))
    }
    if !targets.isEmpty {
      var attributes = baseAttributes(for: peer)
      attributes.mpReach = MultiprotocolReach(
        nextHop: IPAddress.v4(configuration.routerID).bytes,
        nlri: .routeTargetMembership(memberships(targets)))
      connection.send(.update(UpdateMessage(attributes: attributes)))
    }
  }

  /// The import side of a filter change on a peer with `importOnlyExported`: the routes it
  /// sent in VNIs the filter no longer allows leave the RIB (and the FDB and flood lists);
  /// memberships follow the filter; when VNIs were added, the peer is asked for its routes
  /// again (ROUTE-REFRESH), so those it sent before and we ignored are imported now.
  func applyImportFilter(of peer: BGPPeer, dropped: Set<UInt32>, added: Set<UInt32>) {
    guard peer.configuration.importOnlyExported else { return }
    if !dropped.isEmpty {
      rib.sink?.beginBatch()
      var victims: [(MACRouteKey, UInt64)] = []
      for (key, set) in rib.macRoutes where dropped.contains(key.vni) && set.contains(peer: peer.index) {
        for path in set.all where path.peer == peer.index { victims.append((key, path.routeDistinguisher)) }
      }
      for (key, routeDistinguisher) in victims {
        _ = rib.remove(key, peer: peer.index, routeDistinguisher: routeDistinguisher)
      }
      for vni in dropped.sorted() {
        for key in (rib.floodRoutes[vni] ?? [:]).keys where key.peer == peer.index {
          rib.removeFlood(vni: vni, key: key)
        }
      }
      rib.sink?.endBatch()
    }
    syncMemberships(of: peer)
    if !added.isEmpty, peer.supportsEVPN {
      peer.established?.send(.routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN)))
    }
  }
}
