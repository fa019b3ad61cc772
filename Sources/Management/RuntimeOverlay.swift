import Dataplane

/// What the API added on top of the configuration file: static MACs and flood-list
/// entries. They live until removed through the API and survive reloads: every reload
/// applies the file's configuration with the overlay merged in (`merged(into:)`).
struct RuntimeOverlay: Sendable, Equatable {
  var staticMACs: [SiteConfig.StaticMAC] = []
  var flood: [FloodKey] = []

  struct FloodKey: Sendable, Hashable {
    var vni: UInt32
    var vtep: IPAddress
  }

  /// `file` with the overlay's entries added; entries that no longer fit the file (their
  /// VNI is gone, or the file now defines the same MAC or flood member) are dropped and
  /// returned in `dropped` as human-readable lines.
  mutating func merged(into file: SiteConfig, dropped: inout [String]) -> SiteConfig {
    var config = file
    let domains = Set(file.bridgeDomains.map(\.vni))
    staticMACs.removeAll { entry in
      if !domains.contains(entry.vni) {
        dropped.append("static MAC \(entry.mac) in VNI \(entry.vni): the VNI is no longer configured")
        return true
      }
      if file.staticMACs.contains(where: { $0.vni == entry.vni && $0.mac == entry.mac }) {
        dropped.append("static MAC \(entry.mac) in VNI \(entry.vni): now defined in the configuration file")
        return true
      }
      if case .port(let member) = entry.target,
        !(file.bridgeDomains.first { $0.vni == entry.vni }?.ports.contains(member) ?? false)
      {
        dropped.append("static MAC \(entry.mac) in VNI \(entry.vni): port \(member) left the bridge domain")
        return true
      }
      return false
    }
    flood.removeAll { key in
      guard let domain = file.bridgeDomains.first(where: { $0.vni == key.vni }) else {
        dropped.append("flood entry \(key.vtep) in VNI \(key.vni): the VNI is no longer configured")
        return true
      }
      return domain.flood.contains(key.vtep)
    }
    config.staticMACs += staticMACs
    for key in flood {
      if let index = config.bridgeDomains.firstIndex(where: { $0.vni == key.vni }) {
        config.bridgeDomains[index].flood.append(key.vtep)
      }
    }
    return config
  }
}
