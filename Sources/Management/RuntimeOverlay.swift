import Dataplane

/// What the API added on top of the configuration file: static MACs and flood-list
/// entries. They live until removed through the API and survive reloads: every reload
/// applies the file's configuration with the overlay merged in (`merged(into:)`).
struct RuntimeOverlay: Sendable, Equatable {
  var staticMACs: [SiteConfig.StaticMAC] = []
  var flood: [FloodKey] = []
  /// Networks created through the API or by joining an extension (no file entry).
  var networks: [SiteConfig.BridgeDomain] = []
  /// Extended networks by name: the negotiated VNI and route target replace the
  /// network's own, and the other members' VTEPs join its flood list.
  var bindings: [String: Binding] = [:]

  struct Binding: Sendable, Equatable {
    var vni: UInt32
    var routeTarget: String
    var remoteVTEPs: [IPAddress]
  }

  struct FloodKey: Sendable, Hashable {
    var vni: UInt32
    var vtep: IPAddress
  }

  /// `file` with the overlay's entries added; entries that no longer fit the file (their
  /// VNI is gone, or the file now defines the same MAC or flood member) are dropped and
  /// returned in `dropped` as human-readable lines.
  mutating func merged(into file: SiteConfig, dropped: inout [String]) -> SiteConfig {
    var file = file
    let fileNames = Set(file.bridgeDomains.compactMap(\.name))
    networks.removeAll { network in
      guard let name = network.name, !fileNames.contains(name) else {
        dropped.append("network \(network.name ?? "?"): now defined in the configuration file")
        return true
      }
      if file.bridgeDomains.contains(where: { $0.vni == network.vni }) && bindings[name] == nil {
        dropped.append("network \(name): VNI \(network.vni) is now used by the configuration file")
        return true
      }
      return false
    }
    file.bridgeDomains += networks
    // Extension bindings renumber their network (static MACs follow it).
    for (name, binding) in bindings.sorted(by: { $0.key < $1.key }) {
      guard let index = file.bridgeDomains.firstIndex(where: { $0.name == name }) else {
        dropped.append("extension binding of network \(name): the network no longer exists")
        bindings[name] = nil
        continue
      }
      let old = file.bridgeDomains[index].vni
      if file.bridgeDomains.enumerated().contains(where: {
        $0.offset != index && $0.element.vni == binding.vni
      }) {
        dropped.append("extension binding of network \(name): VNI \(binding.vni) is used by another network")
        bindings[name] = nil
        continue
      }
      file.bridgeDomains[index].vni = binding.vni
      file.bridgeDomains[index].importRTs = [binding.routeTarget]
      file.bridgeDomains[index].exportRTs = [binding.routeTarget]
      for vtep in binding.remoteVTEPs where !file.bridgeDomains[index].flood.contains(vtep) {
        file.bridgeDomains[index].flood.append(vtep)
      }
      for position in file.staticMACs.indices where file.staticMACs[position].vni == old {
        file.staticMACs[position].vni = binding.vni
      }
    }
    // Two networks must never share a VNI (SwitchCore keys its domains by VNI). The checks
    // above see each network at its own VNI, so one can still collide once bindings are
    // applied or released: a network whose binding was released falls back to its own VNI,
    // which another network may have taken meanwhile. The first holder keeps the VNI (the
    // file's domains come first and are unique); a later network is dropped.
    var vnis = Set<UInt32>()
    var collided: [String] = []
    file.bridgeDomains.removeAll { domain in
      if vnis.insert(domain.vni).inserted { return false }
      dropped.append("network \(domain.name ?? "?"): VNI \(domain.vni) is used by another network")
      collided.append(domain.name ?? "")
      return true
    }
    networks.removeAll { collided.contains($0.name ?? "") }
    for name in collided { bindings[name] = nil }
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
