import Dataplane

/// Reconfiguration of the VNI list (configuration reload) without touching sessions.
extension EVPNSpeaker {
  /// Replaces the VNI list. A VNI that disappeared, or whose RD or route targets
  /// changed, loses everything the speaker held for it: our routes are withdrawn from
  /// the peers (type 2 and type 3) and remote routes are removed (the sink is told).
  /// New or changed VNIs start empty: advertise their local MACs and type-3 route
  /// again (they go out with the new RD and export RTs); peers are asked for their
  /// routes again (ROUTE-REFRESH) so that routes they sent before and we ignored are
  /// imported now under the new import RTs. Peers using RT constraint (RFC 4684) are
  /// sent the import RTs that appeared and withdrawals of those that went.
  public func updateVNIs(_ vnis: [VNIConfiguration]) {
    eventLoop.execute { self.applyVNIs(vnis) }
  }

  private func applyVNIs(_ vnis: [VNIConfiguration]) {
    var next = configuration
    next.vnis = vnis
    let (settings, byTarget, targets) = Self.importTables(next.resolvedVNIs())
    let gone = Set(vniSettings.keys.filter { settings[$0] != vniSettings[$0] })
    let added = Set(settings.keys.filter { vniSettings[$0] != settings[$0] })
    guard !gone.isEmpty || !added.isEmpty else { return }
    // Withdraw with the old settings (RD, RTs) while they are still in place.
    for vni in gone where advertisedMulticastVNIs.contains(vni) { withdrawInclusiveMulticastNow(vni: vni) }
    var local: [MACRouteKey] = []
    var victims: [(MACRouteKey, UInt16, UInt64)] = []
    for (key, set) in rib.macRoutes where gone.contains(key.vni) {
      for path in set.all {
        if path.isLocal { local.append(key) }
        victims.append((key, path.peer, path.routeDistinguisher))
      }
    }
    if !local.isEmpty { sendLocalWithdrawals(local) }
    for (key, peer, rd) in victims { _ = rib.remove(key, peer: peer, routeDistinguisher: rd) }
    for vni in gone {
      for key in Array((rib.floodRoutes[vni] ?? [:]).keys) { rib.removeFlood(vni: vni, key: key) }
    }
    (vniSettings, vniByImportTarget, importTargets) = (settings, byTarget, targets)
    for peer in peers { syncMemberships(of: peer) }
    // Bindings of VNIs that are gone for good; changed VNIs keep theirs, advertised again
    // with their MACs.
    localBindings = localBindings.filter { settings[$0.key.vni] != nil }
    if !added.isEmpty {
      for peer in peers where peer.supportsEVPN {
        peer.established?.send(.routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN)))
      }
    }
  }

  func withdrawInclusiveMulticastNow(vni: UInt32) {
    guard advertisedMulticastVNIs.remove(vni) != nil else { return }
    for peer in peers { sendInclusiveMulticastWithdrawal(vni: vni, to: peer) }
  }

  /// Withdraws our type-3 route of `vni` from one peer (if its filters let it through).
  func sendInclusiveMulticastWithdrawal(vni: UInt32, to peer: BGPPeer) {
    guard let settings = vniSettings[vni], canSend(to: peer, vni: vni, targets: settings.exportRouteTargets),
      let connection = peer.established
    else { return }
    let route = EVPNNLRI.inclusiveMulticast(
      InclusiveMulticastRoute(
        routeDistinguisher: settings.routeDistinguisher, originatingRouter: configuration.vtep))
    for message in UpdateBuilder.withdrawals([route], context: connection.context) {
      connection.sendRaw(message)
    }
  }
}
