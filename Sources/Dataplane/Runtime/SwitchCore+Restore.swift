/// Local state put back after a daemon restart (graceful restart, RFC 4724): the MACs and
/// IP bindings local hosts had, so that the control plane re-advertises them before its
/// End-of-RIB and its peers keep forwarding to them. They enter as if just learnt (origin
/// local, stamped `now`): traffic refreshes them and aging removes those that went quiet.
extension SwitchCore {
  /// Adds the MACs of `macs` whose bridge domain and port still exist and that the FDB
  /// does not hold already (a static entry, or one learnt meanwhile, wins). Observers hear
  /// `.learned` for each one added. Returns how many were added.
  @discardableResult
  public func restoreLocalMACs(_ macs: [LocalMAC], now: UInt32) -> Int {
    var events: [LocalMACEvent] = []
    control.withLock { control in
      let members = Dictionary(
        control.memberByName.map { ($0.key.description, $0.value) }, uniquingKeysWith: { first, _ in first })
      fdb.batch { access in
        for local in macs {
          guard let domain = control.domainByVNI[local.vni], let member = members[local.port],
            control.memberDomain[member] == domain, control.config.site.learnLimit > access.learnedCount
          else { continue }
          let (domainGeneration, targetGeneration) = fdb.currentGenerations(
            bridgeDomain: domain, kind: .port, index: member)
          let entry = FDBEntry(
            kind: .port, index: member, origin: .local, domainGeneration: domainGeneration,
            targetGeneration: targetGeneration, stamp: now)
          let outcome = access.update(FDBKey(bridgeDomain: domain, mac: local.mac.rawValue)) { existing in
            if let existing, existing.isPresent, self.fdb.isCurrent(existing, bridgeDomain: domain) {
              return .keep
            }
            return .set(entry)
          }
          switch outcome {
          case .inserted, .updated:
            events.append(.learned(vni: local.vni, mac: local.mac, member: local.port))
          default:
            break
          }
        }
      }
    }
    notify(events)
    return events.count
  }

  /// Binds the IPs of `bindings` to their MACs, as bindings learnt from local ARP or
  /// neighbour discovery, when the MAC is local again and the IP is free. Observers hear
  /// `.bound` for each. Returns how many were bound.
  @discardableResult
  public func restoreLocalBindings(_ bindings: [LocalBinding]) -> Int {
    var events: [LocalARPEvent] = []
    for binding in bindings {
      guard let domain = withDomain(vni: binding.vni, { $0 }) else { continue }
      let entry = fdb.lookup(FDBKey(bridgeDomain: domain, mac: binding.mac.rawValue))
      guard entry.isPresent, entry.origin == .local, fdb.isCurrent(entry, bridgeDomain: domain),
        arp.value(domain: domain, ip: binding.ip) & ARPTable.presentBit == 0
      else { continue }
      let (stored, _) = arp.exchange(domain: domain, ip: binding.ip, mac: binding.mac, control: false)
      if stored { events.append(.bound(vni: binding.vni, ip: binding.ip, mac: binding.mac)) }
    }
    notify(events)
    return events.count
  }
}
