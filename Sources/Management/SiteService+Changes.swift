import ControlShim
import Dataplane
import Logging

/// Runtime changes: static MACs and flood-list entries added through the API (kept across
/// reloads until removed), configuration reloads, duplicate-MAC releases.
extension SiteService {
  /// A static MAC to add: `vni`/`mac` -> a local port member or a remote VTEP.
  public struct StaticMACRequest: Sendable, Equatable {
    public var vni: UInt32
    public var mac: MACAddress
    public var target: SiteConfig.StaticMAC.Target
    public init(vni: UInt32, mac: MACAddress, target: SiteConfig.StaticMAC.Target) {
      self.vni = vni
      self.mac = mac
      self.target = target
    }
  }

  // MARK: Static MACs

  public func staticMACs(vni: UInt32? = nil) -> [StaticMACRow] {
    let (file, overlay) = changes.withLock { ($0.file, $0.overlay) }
    func row(_ entry: SiteConfig.StaticMAC, _ origin: EntryOrigin) -> StaticMACRow {
      var row = StaticMACRow(vni: entry.vni, mac: entry.mac.description, port: nil, vtep: nil, origin: origin)
      switch entry.target {
      case .port(let member): row.port = member.description
      case .remote(let address): row.vtep = address.description
      }
      return row
    }
    let rows = file.staticMACs.map { row($0, .config) } + overlay.staticMACs.map { row($0, .api) }
    return rows.filter { vni == nil || $0.vni == vni }.sorted { ($0.vni, $0.mac) < ($1.vni, $1.mac) }
  }

  /// Adds a static MAC. Adding the same entry again is a no-op (`created` false).
  @discardableResult
  public func addStaticMAC(_ request: StaticMACRequest) throws(ManagementError) -> (
    row: StaticMACRow, created: Bool
  ) {
    let result: Result<Bool, ManagementError> = changes.withLock { changes in
      let running = core.config
      guard let domain = running.bridgeDomains.first(where: { $0.vni == request.vni }) else {
        return .failure(.notFound("no bridge domain with VNI \(request.vni)"))
      }
      guard request.mac.rawValue & 0x0100_0000_0000 == 0, request.mac != .zero else {
        return .failure(.invalidRequest("\(request.mac) is not a unicast MAC address"))
      }
      switch request.target {
      case .port(let member):
        guard domain.ports.contains(member) else {
          let members = domain.ports.map(\.description).joined(separator: ", ")
          return .failure(
            .conflict("port \(member) is not a member of VNI \(request.vni) (members: \(members))"))
        }
      case .remote(let address):
        guard address.isIPv4 == running.site.vtep.isIPv4 else {
          return .failure(.invalidRequest("VTEP \(address) is not of the underlay's address family"))
        }
        guard address != running.site.vtep else {
          return .failure(.invalidRequest("\(address) is this site's own VTEP"))
        }
      }
      let entry = SiteConfig.StaticMAC(vni: request.vni, mac: request.mac, target: request.target)
      if changes.file.staticMACs.contains(where: { $0.vni == entry.vni && $0.mac == entry.mac }) {
        return .failure(
          .conflict("\(entry.mac) in VNI \(entry.vni) is a static MAC of the configuration file"))
      }
      if let existing = changes.overlay.staticMACs.first(where: { $0.vni == entry.vni && $0.mac == entry.mac }
      ) {
        if existing == entry { return .success(false) }
        return .failure(
          .conflict("\(entry.mac) in VNI \(entry.vni) is already a static MAC; remove it first to change it"))
      }
      var next = changes
      next.overlay.staticMACs.append(entry)
      apply(&changes, next)
      return .success(true)
    }
    let created = try result.get()
    let row = staticMACs(vni: request.vni).first { $0.mac == request.mac.description }!
    if created {
      logger.info(
        "static MAC added", metadata: ["vni": "\(request.vni)", "mac": "\(request.mac)", "origin": "api"])
    }
    return (row, created)
  }

  /// Removes a static MAC added through the API.
  public func removeStaticMAC(vni: UInt32, mac: MACAddress) throws(ManagementError) {
    let result: Result<Void, ManagementError> = changes.withLock { changes in
      if changes.file.staticMACs.contains(where: { $0.vni == vni && $0.mac == mac }) {
        return .failure(
          .conflict(
            "\(mac) in VNI \(vni) is defined in the configuration file: edit the file and reload"))
      }
      guard let index = changes.overlay.staticMACs.firstIndex(where: { $0.vni == vni && $0.mac == mac })
      else {
        return .failure(.notFound("no static MAC \(mac) in VNI \(vni)"))
      }
      var next = changes
      next.overlay.staticMACs.remove(at: index)
      apply(&changes, next)
      return .success(())
    }
    try result.get()
    logger.info("static MAC removed", metadata: ["vni": "\(vni)", "mac": "\(mac)", "origin": "api"])
  }

  // MARK: Flood lists

  /// Flood-list members: the configuration's, the API's and those from EVPN type-3 routes.
  public func floodEntries(vni: UInt32? = nil) -> [FloodRow] {
    let (file, overlay) = changes.withLock { ($0.file, $0.overlay) }
    var rows: [FloodRow] = []
    var seen = Set<RuntimeOverlay.FloodKey>()
    for domain in core.config.bridgeDomains {
      let inFile = file.bridgeDomains.first {
        $0.vni == domain.vni || ($0.name != nil && $0.name == domain.name)
      }
      for vtep in domain.flood where seen.insert(.init(vni: domain.vni, vtep: vtep)).inserted {
        let origin: EntryOrigin =
          inFile?.flood.contains(vtep) == true
          ? .config : overlay.flood.contains(.init(vni: domain.vni, vtep: vtep)) ? .api : .extension
        rows.append(FloodRow(vni: domain.vni, vtep: "\(vtep)", origin: origin))
      }
    }
    for (domainVNI, vteps) in core.dynamicFloodMembers {
      for vtep in vteps where seen.insert(.init(vni: domainVNI, vtep: vtep)).inserted {
        rows.append(FloodRow(vni: domainVNI, vtep: "\(vtep)", origin: .evpn))
      }
    }
    return rows.filter { vni == nil || $0.vni == vni }.sorted { ($0.vni, $0.vtep) < ($1.vni, $1.vtep) }
  }

  @discardableResult
  public func addFloodEntry(vni: UInt32, vtep: IPAddress) throws(ManagementError) -> Bool {
    let result: Result<Bool, ManagementError> = changes.withLock { changes in
      let running = core.config
      guard let domain = running.bridgeDomains.first(where: { $0.vni == vni }) else {
        return .failure(.notFound("no bridge domain with VNI \(vni)"))
      }
      guard vtep.isIPv4 == running.site.vtep.isIPv4 else {
        return .failure(.invalidRequest("VTEP \(vtep) is not of the underlay's address family"))
      }
      guard vtep != running.site.vtep else {
        return .failure(.invalidRequest("\(vtep) is this site's own VTEP"))
      }
      let key = RuntimeOverlay.FloodKey(vni: vni, vtep: vtep)
      if domain.flood.contains(vtep) || changes.overlay.flood.contains(key) { return .success(false) }
      var next = changes
      next.overlay.flood.append(key)
      apply(&changes, next)
      return .success(true)
    }
    let created = try result.get()
    if created { logger.info("flood entry added", metadata: ["vni": "\(vni)", "vtep": "\(vtep)"]) }
    return created
  }

  public func removeFloodEntry(vni: UInt32, vtep: IPAddress) throws(ManagementError) {
    let result: Result<Void, ManagementError> = changes.withLock { changes in
      if changes.file.bridgeDomains.first(where: { $0.vni == vni })?.flood.contains(vtep) == true {
        return .failure(
          .conflict(
            "\(vtep) is in VNI \(vni)'s flood list in the configuration file: edit the file and reload"))
      }
      let key = RuntimeOverlay.FloodKey(vni: vni, vtep: vtep)
      guard let index = changes.overlay.flood.firstIndex(of: key) else {
        return .failure(.notFound("no flood entry \(vtep) added through the API in VNI \(vni)"))
      }
      var next = changes
      next.overlay.flood.remove(at: index)
      apply(&changes, next)
      return .success(())
    }
    try result.get()
    logger.info("flood entry removed", metadata: ["vni": "\(vni)", "vtep": "\(vtep)"])
  }

  // MARK: Reload

  /// Reads the configuration file again and applies it with the runtime overlay merged in
  /// (what SIGHUP does). A file with errors, or one that needs a restart, changes nothing.
  public func reload() throws(ManagementError) -> ReloadResult {
    guard let configPath else { throw .unavailable("this site has no configuration file to reload") }
    let loaded: SiteConfig
    do {
      loaded = try SiteConfig.load(path: configPath)
    } catch let errors as ConfigErrors {
      logger.warning("configuration not reloaded", metadata: ["errors": "\(errors.errors.count)"])
      for error in errors.errors { logger.warning("\(error.description)") }
      throw .invalidConfiguration(errors.errors.map(\.description))
    } catch {
      throw .invalidConfiguration(["\(configPath):0: \(error)"])
    }
    let current = core.config
    if SwitchCore.interfaceNames(of: loaded).sorted() != core.interfaces.sorted()
      || loaded.site.underlay != current.site.underlay || loaded.site.vtep != current.site.vtep
      || loaded.site.udpPort != current.site.udpPort
      || core.interfaces.contains(where: { loaded.io(of: $0) != current.io(of: $0) })
    {
      let message =
        "interfaces, their port types, VTEP or UDP port changed: restart vxswitch to apply; "
        + "running configuration kept"
      logger.warning("configuration not reloaded: \(message)")
      throw .restartRequired(message)
    }
    let result = changes.withLock { changes in
      var next = changes
      next.file = loaded
      return apply(&changes, next)
    }
    logger.info(
      "configuration reloaded",
      metadata: [
        "bridge_domains": "\(loaded.bridgeDomains.count)",
        "added": "\(result.bridgeDomainsAdded)", "removed": "\(result.bridgeDomainsRemoved)",
        "changed": "\(result.bridgeDomainsChanged)",
      ])
    return result
  }

  /// Applies `next` (file + overlay) to the core and the control plane; called with the
  /// changes lock held, so that applications never interleave.
  @discardableResult
  func apply(_ changes: inout Changes, _ next: Changes) -> ReloadResult {
    var overlay = next.overlay
    var dropped: [String] = []
    let config = overlay.merged(into: next.file, dropped: &dropped)
    for line in dropped { logger.warning("runtime entry dropped: \(line)") }
    let previous = core.config
    changes = Changes(file: next.file, overlay: overlay)
    state?.save(overlay: overlay)
    let result = ReloadResult(previous: previous, next: config)
    if !result.unchanged {
      core.reload(config)
      controlPlane?.reload(config)
    }
    return result
  }

  // MARK: Duplicate MACs

  /// Releases MACs frozen by duplicate-MAC detection (nil: any VNI / any MAC).
  public func clearDuplicateMACs(vni: UInt32? = nil, mac: MACAddress? = nil) throws(ManagementError)
    -> [ReleasedMAC]
  {
    guard let controlPlane else {
      throw .unavailable("BGP is not configured (no [bgp] in the configuration)")
    }
    let released = controlPlane.clearDuplicateMACs(vni: vni, mac: mac)
    return released.map { ReleasedMAC(vni: $0.vni, mac: $0.mac.description) }
  }
}

extension ReloadResult {
  init(previous: SiteConfig, next: SiteConfig) {
    let old = Dictionary(previous.bridgeDomains.map { ($0.vni, $0) }, uniquingKeysWith: { a, _ in a })
    let new = Dictionary(next.bridgeDomains.map { ($0.vni, $0) }, uniquingKeysWith: { a, _ in a })
    let oldStatic = Set(previous.staticMACs)
    let newStatic = Set(next.staticMACs)
    self.init(
      bridgeDomainsAdded: new.keys.filter { old[$0] == nil }.sorted(),
      bridgeDomainsRemoved: old.keys.filter { new[$0] == nil }.sorted(),
      bridgeDomainsChanged: new.keys.filter { old[$0] != nil && old[$0] != new[$0] }.sorted(),
      staticMacsAdded: newStatic.subtracting(oldStatic).count,
      staticMacsRemoved: oldStatic.subtracting(newStatic).count,
      neighborsChanged: previous.neighbors != next.neighbors, bgpChanged: previous.bgp != next.bgp,
      unchanged: previous == next)
  }
}
