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
