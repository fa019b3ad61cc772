import Dataplane

/// Address conflicts, decided by `ConflictRule` from what the RIB holds, so every site
/// that holds the same routes decides the same, with no message of its own:
///
/// - **IP conflict**: MAC/IP routes (or this site's own binding learnt from ARP) bind
///   one IP of a VNI to different MACs. The sink is told before either route reaches
///   the ARP table (`addressConflictStarted`): ARP suppression answers for neither while
///   it lasts; frames are still forwarded by MAC. It ends when one claim is left (a
///   route withdrawn, a local binding aged out), and the sink gets the binding left.
/// - **MAC conflict**: the same MAC announced by two VTEPs with the same sequence number
///   (both learnt it without knowing of the other, e.g. during a partition). RFC 7432
///   section 15 decides at once (lower VTEP); the site that lost withdraws, and while the
///   winner's route stands it does not announce the MAC again with a higher sequence when
///   it learns it locally (which would make the two sites take turns), so one conflict
///   is enough and nothing flaps. It ends when the winner's route goes (the loser then
///   announces the MAC if it still has it) or the loser's local MAC ages out.
extension EVPNRIB {
  // MARK: IP conflicts

  /// Follows which MACs claim an IP (called from `report` on a MAC/IP key's best-path
  /// change) and starts, updates or ends the IP's conflict.
  func noteIPClaim(_ key: MACRouteKey, previousBest: MACPath?, newBest: MACPath?) {
    let ipKey = ConflictTracker.ipKey(key)
    if previousBest == nil, newBest != nil {
      if !(conflicts.claimsByIP[ipKey]?.contains(key.mac) ?? false) {
        conflicts.claimsByIP[ipKey, default: []].append(key.mac)
      }
    } else if previousBest != nil, newBest == nil {
      conflicts.claimsByIP[ipKey]?.removeAll { $0 == key.mac }
      if conflicts.claimsByIP[ipKey]?.isEmpty == true { conflicts.claimsByIP[ipKey] = nil }
    }
    let count = conflicts.claimsByIP[ipKey]?.count ?? 0
    guard count >= 2 || conflicts.ipConflicts[ipKey] != nil else { return }
    evaluateIPConflict(ipKey)
  }

  private func evaluateIPConflict(_ ipKey: MACRouteKey) {
    guard let ip = ipKey.ip else { return }
    let macs = conflicts.claimsByIP[ipKey] ?? []
    var paths: [UInt64: MACPath] = [:]
    for mac in macs {
      if let path = best(for: MACRouteKey(vni: ipKey.vni, mac: mac, ip: ip)) { paths[mac] = path }
    }
    if paths.count >= 2 {
      let candidates = paths.map { mac, path in
        ConflictRule.Candidate(
          mac: MACAddress(rawValue: mac), vtep: vtep(path.vtepID), sequence: path.sequence)
      }
      let (ranked, reason) = ConflictRule.rank(candidates)
      let claims = ranked.enumerated().map { index, candidate in
        ConflictClaim(
          mac: candidate.mac.description, vtep: candidate.vtep.description, sequence: candidate.sequence,
          peer: peerName(paths[candidate.mac.rawValue]!.peer), winner: index == 0)
      }
      let conflict = AddressConflict(
        kind: .ip, vni: ipKey.vni, ip: ip.description, claims: claims, rule: reason ?? .lowerMAC,
        outcome: "arp_suppression_off")
      if conflicts.ipConflicts[ipKey] != nil {
        conflicts.ipConflicts[ipKey]!.conflict = conflict
        return
      }
      conflicts.ipConflicts[ipKey] = .init(conflict: conflict, since: clock())
      conflicts.started[.ip, default: 0] += 1
      sink?.addressConflictStarted(vni: ipKey.vni, ip: ip, mac: ranked[0].mac)
      onConflict?(.started(conflict))
    } else if let record = conflicts.ipConflicts.removeValue(forKey: ipKey) {
      let left = paths.first
      sink?.addressConflictCleared(
        vni: ipKey.vni, ip: ip, mac: left.map { MACAddress(rawValue: $0.key) },
        local: left?.value.isLocal ?? false)
      let remaining = Set(paths.keys.map { MACAddress(rawValue: $0).description })
      let gone = record.conflict.claims.filter { !remaining.contains($0.mac) }
      let reason =
        gone.map { "\($0.peer == "local" ? "local binding" : "route") of \($0.mac) (\($0.peer)) gone" }
        .joined(separator: ", ")
      onConflict?(.cleared(record.conflict, reason: reason.isEmpty ? "claims withdrawn" : reason))
    }
  }

  // MARK: MAC conflicts

  /// Our local route for a MAC just lost to `winner` (in `settle`): with the same
  /// sequence number that is a tie between two sites, a conflict this site lost.
  func noteLostTie(_ key: MACRouteKey, local: MACPath, winner: MACPath) {
    guard winner.sequence == local.sequence, winner.vtepID != local.vtepID, winner.isSticky == local.isSticky
    else { return }
    let macKey = DuplicateMACDetector.Key(vni: key.vni, mac: key.mac)
    guard conflicts.macConflicts[macKey] == nil else { return }
    let conflict = macConflict(key, winner: winner, loser: local, outcome: "local_withdrawn")
    conflicts.macConflicts[macKey] = .init(
      conflict: conflict, since: clock(), lost: true, winnerVTEP: winner.vtepID, sequence: winner.sequence,
      localHeld: true)
    conflicts.started[.mac, default: 0] += 1
    onConflict?(.started(conflict))
  }

  /// Starts, keeps or ends the MAC conflict of a MAC-only key after a change.
  func evaluateMACConflict(_ key: MACRouteKey) {
    let macKey = DuplicateMACDetector.Key(vni: key.vni, mac: key.mac)
    if let record = conflicts.macConflicts[macKey] {
      if record.lost {
        let stands =
          macRoutes[key]?.all.contains {
            !$0.isLocal && $0.vtepID == record.winnerVTEP && $0.sequence == record.sequence
          } ?? false
        if !stands {
          conflicts.macConflicts[macKey] = nil
          onConflict?(.cleared(record.conflict, reason: "the winner's route was withdrawn or replaced"))
          if record.localHeld { onConflict?(.reannounce(vni: key.vni, mac: MACAddress(rawValue: key.mac))) }
        }
      } else if currentTie(key) == nil {
        conflicts.macConflicts[macKey] = nil
        onConflict?(.cleared(record.conflict, reason: "the losing route was withdrawn"))
      }
      return
    }
    guard let (winner, loser) = currentTie(key) else { return }
    let conflict = macConflict(
      key, winner: winner, loser: loser, outcome: winner.isLocal ? "remote_withdraws" : "not_involved")
    conflicts.macConflicts[macKey] = .init(
      conflict: conflict, since: clock(), lost: false, winnerVTEP: winner.vtepID, sequence: winner.sequence,
      localHeld: false)
    conflicts.started[.mac, default: 0] += 1
    onConflict?(.started(conflict))
  }

  /// The best path and another of the same sequence from another VTEP, if any.
  private func currentTie(_ key: MACRouteKey) -> (MACPath, MACPath)? {
    guard let set = macRoutes[key], set.count > 1 else { return nil }
    let winner = best(set)
    guard
      let other = set.all.first(where: {
        $0 != winner && $0.sequence == winner.sequence && $0.vtepID != winner.vtepID
          && $0.isSticky == winner.isSticky
      })
    else { return nil }
    return (winner, other)
  }

  private func macConflict(_ key: MACRouteKey, winner: MACPath, loser: MACPath, outcome: String)
    -> AddressConflict
  {
    let mac = MACAddress(rawValue: key.mac).description
    let claims = [(winner, true), (loser, false)].map { path, won in
      ConflictClaim(
        mac: mac, vtep: vtep(path.vtepID).description, sequence: path.sequence, peer: peerName(path.peer),
        winner: won)
    }
    return AddressConflict(
      kind: .mac, vni: key.vni, mac: mac, claims: claims, rule: .lowerVTEP, outcome: outcome)
  }

  /// The speaker is about to announce a local MAC with a new sequence: false while this
  /// site holds a lost MAC conflict for it (it keeps the MAC unannounced and remembers
  /// that it is local).
  func mayAnnounceLocalMAC(_ macKey: DuplicateMACDetector.Key) -> Bool {
    guard !conflicts.macConflicts.isEmpty, conflicts.macConflicts[macKey]?.lost == true else { return true }
    conflicts.macConflicts[macKey]!.localHeld = true
    return false
  }

  /// The local MAC went (aged out or moved away): a lost conflict for it ends, and the
  /// sink hears of the winner's route again (local learning had replaced its entry).
  func localMACWithdrawn(_ key: MACRouteKey) {
    let macKey = DuplicateMACDetector.Key(vni: key.vni, mac: key.mac)
    guard !conflicts.macConflicts.isEmpty, let record = conflicts.macConflicts[macKey], record.lost else {
      return
    }
    conflicts.macConflicts[macKey] = nil
    onConflict?(.cleared(record.conflict, reason: "the local MAC aged out"))
    if let best = best(for: key), !best.isLocal {
      sink?.installMAC(
        vni: key.vni, mac: MACAddress(rawValue: key.mac), ip: nil, vtep: vtep(best.vtepID),
        sequence: best.sequence, sticky: best.isSticky, peer: peerName(best.peer))
    }
  }

  // MARK: report

  func conflictReport() -> ConflictReport {
    let now = clock()
    var list: [AddressConflict] = []
    for record in conflicts.ipConflicts.values {
      var conflict = record.conflict
      conflict.duration = max(0, now - record.since)
      list.append(conflict)
    }
    for record in conflicts.macConflicts.values {
      var conflict = record.conflict
      conflict.duration = max(0, now - record.since)
      list.append(conflict)
    }
    list.sort { a, b in
      if a.kind != b.kind { return a.kind == .ip }
      if a.vni != b.vni { return a.vni < b.vni }
      if a.kind == .ip {
        return (a.ip.flatMap(IPAddress.init) ?? .v4(0)) < (b.ip.flatMap(IPAddress.init) ?? .v4(0))
      }
      return (a.mac ?? "") < (b.mac ?? "")
    }
    return ConflictReport(conflicts: list, started: conflicts.started)
  }
}
