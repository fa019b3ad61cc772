import Dataplane

/// Import side: UPDATEs from peers into the RIB, session up/down handling.
extension EVPNSpeaker {
  func processUpdate(_ decoded: DecodedMessage, from peer: BGPPeer) {
    guard case .update(let update) = decoded.message else { return }
    // The sink hears of the UPDATE's changes as one batch (one FDB lock hold).
    rib.sink?.beginBatch()
    defer {
      rib.sink?.endBatch()
      emit(.updateProcessed(peer: peer.configuration.name))
    }
    if let family = update.endOfRIBFamily {
      receivedEndOfRIB(family, from: peer)
      emit(.endOfRIB(peer: peer.configuration.name, family: family))
      return
    }
    let attributes = update.attributes
    if case .evpn(let routes)? = attributes.mpUnreach {
      for route in routes { withdraw(route, from: peer) }
    }
    if case .routeTargetMembership(let memberships)? = attributes.mpUnreach {
      withdrawMemberships(memberships, of: peer)
    }
    if let reach = attributes.mpReach {
      switch reach.nlri {
      case .evpn(let routes):
        peer.routesReceived += routes.count
        if let reason = rejection(of: decoded, attributes: attributes, from: peer) {
          // RFC 7606 treat-as-withdraw, or a policy rejection: drop what we had.
          peer.lastError = reason
          for route in routes { withdraw(route, from: peer) }
        } else {
          importRoutes(routes, reach: reach, attributes: attributes, from: peer)
        }
      case .routeTargetMembership(let memberships):
        let before = peer.routeTargetMemberships
        peer.routeTargetMemberships.formUnion(memberships)
        if peer.routeTargetConstraintSynced && peer.routeTargetMemberships != before {
          sendAllRoutes(to: peer)
        }
      case .raw:
        break
      }
    }
    enforceMaximumRoutes(of: peer)
  }

  /// Why the reachable NLRI of this UPDATE must not be installed, if they must not.
  private func rejection(of decoded: DecodedMessage, attributes: PathAttributes, from peer: BGPPeer)
    -> String?
  {
    if let error = decoded.treatAsWithdraw.first { return "treat-as-withdraw: \(error)" }
    if !peer.isInternal && attributes.allASNs.contains(configuration.asn) { return "AS path loop" }
    if attributes.mpReach?.nextHopAddress == nil { return "no usable next hop" }
    return nil
  }

  private func importRoutes(
    _ routes: [EVPNNLRI], reach: MultiprotocolReach, attributes: PathAttributes, from peer: BGPPeer
  ) {
    guard let nextHop = reach.nextHopAddress else { return }
    // Which local VNIs import these routes: one lookup per UPDATE, not per route.
    var candidates: [UInt32] = []
    for target in attributes.routeTargets {
      for vni in vniByImportTarget[target] ?? [] where !candidates.contains(vni) && peer.imports(into: vni) {
        candidates.append(vni)
      }
    }
    guard !candidates.isEmpty else {
      // Not for us: count it, and drop an earlier version that matched other RTs.
      peer.routesIgnored += routes.count
      for route in routes { withdraw(route, from: peer) }
      return
    }
    func chooseVNI(label: UInt32) -> UInt32 {
      candidates.count == 1 || !candidates.contains(label) ? candidates[0] : label
    }
    let vtepID = rib.vtepID(nextHop)
    let mobility = attributes.macMobility
    var flags: UInt8 = mobility?.sticky == true ? MACPath.stickyFlag : 0
    // RFC 9494: a route received with LLGR_STALE is least preferred; one with NO_LLGR is
    // not kept into the long-lived phase.
    let communities = attributes.other.isEmpty ? [] : attributes.communities
    if communities.contains(PathAttributes.longLivedStaleCommunity) {
      flags |= MACPath.longLivedStaleFlag
      peer.receivedLongLivedStale = true
    }
    let noLongLived = communities.contains(PathAttributes.noLongLivedCommunity)
    if noLongLived { flags |= MACPath.noLongLivedFlag }
    let sequence = mobility?.sequence ?? 0
    var lostLocally: [MACRouteKey] = []
    // Routes of one UPDATE nearly always share RD and tag: remember the last import.
    var lastImport: (rd: UInt64, tag: UInt32, vni: UInt32)?
    for route in routes {
      switch route {
      case .macIP(let route):
        let vni = chooseVNI(label: route.label1)
        let rd = route.routeDistinguisher.rawValue
        if lastImport.map({ $0.rd != rd || $0.tag != route.ethernetTag || $0.vni != vni }) ?? true {
          if rib.importedVNI(peer: peer.index, routeDistinguisher: rd, ethernetTag: route.ethernetTag) != vni
          {
            rib.rememberImport(
              peer: peer.index, routeDistinguisher: rd, ethernetTag: route.ethernetTag, vni: vni)
          }
          lastImport = (rd, route.ethernetTag, vni)
        }
        let key = MACRouteKey(vni: vni, mac: route.mac.rawValue, ip: route.ip)
        let path = MACPath(
          routeDistinguisher: rd, vtepID: vtepID, sequence: sequence, peer: peer.index, flags: flags)
        if case .localLost = rib.upsert(key, path: path) { lostLocally.append(key) }
      case .inclusiveMulticast(let route):
        guard let tunnel = attributes.pmsiTunnel, tunnel.tunnelType == PMSITunnel.ingressReplication,
          let endpoint = tunnel.tunnelEndpoint
        else {
          peer.routesIgnored += 1
          continue
        }
        let vni = chooseVNI(label: tunnel.label)
        rib.rememberImport(
          peer: peer.index, routeDistinguisher: route.routeDistinguisher.rawValue,
          ethernetTag: route.ethernetTag, vni: vni)
        let key = EVPNRIB.FloodKey(
          peer: peer.index, routeDistinguisher: route.routeDistinguisher.rawValue,
          ethernetTag: route.ethernetTag,
          originatingRouter: route.originatingRouter)
        rib.addFlood(vni: vni, key: key, vtep: endpoint)
        rib.refreshFlood(vni: vni, key: key, noLongLived: noLongLived)
      case .unknown:
        peer.routesIgnored += 1
      }
    }
    // RFC 7432 section 15: the PE whose route lost withdraws it.
    if !lostLocally.isEmpty { sendLocalWithdrawals(lostLocally) }
  }

  private func withdraw(_ route: EVPNNLRI, from peer: BGPPeer) {
    switch route {
    case .macIP(let route):
      let rd = route.routeDistinguisher.rawValue
      guard
        let vni = rib.importedVNI(peer: peer.index, routeDistinguisher: rd, ethernetTag: route.ethernetTag)
      else { return }
      rib.remove(
        MACRouteKey(vni: vni, mac: route.mac.rawValue, ip: route.ip), peer: peer.index, routeDistinguisher: rd
      )
    case .inclusiveMulticast(let route):
      let rd = route.routeDistinguisher.rawValue
      guard
        let vni = rib.importedVNI(peer: peer.index, routeDistinguisher: rd, ethernetTag: route.ethernetTag)
      else { return }
      rib.removeFlood(
        vni: vni,
        key: EVPNRIB.FloodKey(
          peer: peer.index, routeDistinguisher: rd, ethernetTag: route.ethernetTag,
          originatingRouter: route.originatingRouter))
    case .unknown:
      break
    }
  }

  private func enforceMaximumRoutes(of peer: BGPPeer) {
    guard let maximum = peer.configuration.maxRoutes, case let held = rib.routeCount(peer: peer.index),
      held > maximum,
      let connection = peer.established
    else { return }
    peer.purgeRoutesOnLoss = true
    connection.sendNotificationAndClose(
      .maximumPrefixesReached, reason: "maximum routes \(maximum) exceeded (\(held))")
  }

  private func receivedEndOfRIB(_ family: AddressFamily, from peer: BGPPeer) {
    switch family {
    case .l2vpnEVPN:
      // RFC 4724 section 4.2: routes not refreshed before End-of-RIB are gone.
      if peer.hasStaleRoutes { sweepStaleRoutes(of: peer) }
      peerSynchronised(peer)
    case .routeTargetConstraint:
      // RFC 4684 section 6: send VPN routes once the peer told us what it wants.
      if !peer.routeTargetConstraintSynced {
        peer.routeTargetConstraintSynced = true
        sendAllRoutes(to: peer)
        sendEndOfRIB(to: peer)
      }
    default:
      break
    }
  }

  /// RFC 9494: the graceful-restart phase of `peer`'s routes ended; they become
  /// long-lived stale (NO_LLGR ones go). Section 4.5's rules for passing LLGR-stale
  /// routes on (attach LLGR_STALE, skip peers without LLGR) have nothing to apply to
  /// here: this speaker advertises its own routes only and never re-advertises received
  /// ones (the route reflector, where there is one, is another speaker).
  func enterLongLivedStale(of peer: BGPPeer) {
    rib.sink?.beginBatch()
    let kept = rib.enterLongLivedStale(peer: peer.index)
    rib.sink?.endBatch()
    emit(.longLivedStale(peer: peer.configuration.name, routes: kept))
  }

  func sweepStaleRoutes(of peer: BGPPeer) {
    peer.stopStaleTimer()
    rib.sink?.beginBatch()
    _ = rib.sweepStale(peer: peer.index)
    rib.sink?.endBatch()
    emit(.staleRoutesSwept(peer: peer.configuration.name))
  }

  func sessionEstablished(_ peer: BGPPeer) {
    guard let connection = peer.established else { return }
    if peer.usesRouteTargetConstraint {
      // Our memberships first; EVPN routes follow the peer's RTC End-of-RIB.
      let targets = membershipTargets(for: peer)
      peer.announcedMemberships = Set(targets)
      if !targets.isEmpty { sendMemberships(targets, withdrawn: [], to: peer) }
      connection.send(.update(.endOfRIB(.routeTargetConstraint)))
    }
    if peer.supportsEVPN && peer.routeTargetConstraintSynced {
      sendAllRoutes(to: peer)
      sendEndOfRIB(to: peer)
    }
  }

  func sessionLost(_ peer: BGPPeer, gracefully: Bool) {
    guard !isShuttingDown else { return }
    rib.sink?.beginBatch()
    defer { rib.sink?.endBatch() }
    if gracefully {
      rib.markStale(peer: peer.index)
      peer.startStaleTimer()
    } else {
      peer.stopStaleTimer()
      _ = rib.removeAll(peer: peer.index)
    }
  }
}
