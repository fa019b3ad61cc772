import Dataplane
import Logging

/// Named networks (bridge domains with a name), created in the file or at run time, and
/// their binding to extensions (negotiated VNI and route target, other members' VTEPs).
extension SiteService {
  public func networks() -> [NetworkRow] {
    let (file, overlay) = changes.withLock { ($0.file, $0.overlay) }
    let running = core.config
    let fileNames = Set(file.bridgeDomains.compactMap(\.name))
    return running.bridgeDomains.compactMap { domain -> NetworkRow? in
      guard let name = domain.name else { return nil }
      return NetworkRow(
        name: name, vni: domain.vni, ports: domain.ports.map(\.description),
        origin: fileNames.contains(name) ? .config : .api,
        extended: overlay.bindings[name] != nil, routeTarget: overlay.bindings[name]?.routeTarget)
    }.sorted { $0.name < $1.name }
  }

  /// Creates a network; `vni` nil picks the lowest VNI no network uses.
  @discardableResult
  public func createNetwork(name: String, vni: UInt32?, ports: [SiteConfig.PortMember])
    throws(ManagementError)
    -> NetworkRow
  {
    let result: Result<Void, ManagementError> = changes.withLock { changes in
      let running = core.config
      guard ConfigSyntax.isValidBridgeDomainName(name) else {
        return .failure(.invalidRequest("network name must be 1 to 64 characters from A-Z a-z 0-9 _ . -"))
      }
      if running.bridgeDomains.contains(where: { $0.name == name }) {
        return .failure(.conflict("a network named \(name) exists"))
      }
      let used = Set(running.bridgeDomains.map(\.vni))
      let chosen = vni ?? (1..<(1 << 24)).first { !used.contains($0) }!
      guard chosen < 1 << 24 else { return .failure(.invalidRequest("VNI must be 0 to 16777215")) }
      if used.contains(chosen) { return .failure(.conflict("VNI \(chosen) is used by another network")) }
      let members = Set(running.bridgeDomains.flatMap(\.ports))
      for port in ports {
        guard core.interfaces.contains(port.interface) else {
          return .failure(
            .restartRequired(
              "interface \(port.interface) is not attached: add it to the configuration and restart"))
        }
        if members.contains(port) {
          return .failure(.conflict("port \(port) is a member of another network"))
        }
      }
      var domain = SiteConfig.BridgeDomain(vni: chosen)
      domain.name = name
      domain.ports = ports
      var next = changes
      next.overlay.networks.append(domain)
      apply(&changes, next)
      return .success(())
    }
    try result.get()
    logger.info("network created", metadata: ["network": "\(name)"])
    return networks().first { $0.name == name }!
  }

  public func deleteNetwork(name: String) throws(ManagementError) {
    let result: Result<Void, ManagementError> = changes.withLock { changes in
      if changes.file.bridgeDomains.contains(where: { $0.name == name }) {
        return .failure(
          .conflict("network \(name) is defined in the configuration file: edit the file and reload"))
      }
      guard let index = changes.overlay.networks.firstIndex(where: { $0.name == name }) else {
        return .failure(.notFound("no network named \(name)"))
      }
      if changes.overlay.bindings[name] != nil {
        return .failure(.conflict("network \(name) is extended: remove it from its extension first"))
      }
      var next = changes
      next.overlay.networks.remove(at: index)
      apply(&changes, next)
      return .success(())
    }
    try result.get()
    logger.info("network deleted", metadata: ["network": "\(name)"])
  }

  // MARK: Extension bindings (called by the extension manager)

  /// VNIs and route targets in use here (the extension's own network excluded).
  public func usedIdentifiers(excludingNetwork network: String? = nil) -> UsedIdentifiers {
    let running = core.config
    let domains = running.bridgeDomains.filter { network == nil || $0.name != network }
    return UsedIdentifiers(
      vnis: domains.map(\.vni).sorted(),
      routeTargets: Array(Set(domains.flatMap { $0.importRTs + $0.exportRTs })).sorted(),
      vtep: "\(running.site.vtep)")
  }

  /// Binds the named network to an extension's identifiers and remote VTEPs, creating an
  /// empty network first when `create` and none exists. Returns whether it was created.
  @discardableResult
  public func bindExtension(
    network name: String, vni: UInt32, routeTarget: String, remoteVTEPs: [IPAddress], create: Bool
  )
    throws(ManagementError) -> Bool
  {
    let result: Result<Bool, ManagementError> = changes.withLock { changes in
      let running = core.config
      var next = changes
      var created = false
      if !running.bridgeDomains.contains(where: { $0.name == name }) {
        guard create else { return .failure(.notFound("no network named \(name)")) }
        var domain = SiteConfig.BridgeDomain(vni: vni)
        domain.name = name
        next.overlay.networks.append(domain)
        created = true
      }
      if let other = running.bridgeDomains.first(where: { $0.vni == vni && $0.name != name }) {
        return .failure(.conflict("VNI \(vni) is used by network \(other.name ?? "(unnamed)")"))
      }
      let vteps = remoteVTEPs.filter { $0 != running.site.vtep }.sorted()
      next.overlay.bindings[name] = .init(vni: vni, routeTarget: routeTarget, remoteVTEPs: vteps)
      apply(&changes, next)
      return .success(created)
    }
    let created = try result.get()
    logger.info(
      "network bound to extension",
      metadata: ["network": "\(name)", "vni": "\(vni)", "rt": "\(routeTarget)", "vteps": "\(remoteVTEPs)"])
    return created
  }

  /// Releases a network from its extension; `delete` removes a network the join created.
  public func unbindExtension(network name: String, delete: Bool) {
    changes.withLock { changes in
      var next = changes
      next.overlay.bindings[name] = nil
      if delete { next.overlay.networks.removeAll { $0.name == name } }
      apply(&changes, next)
    }
    logger.info("network released from extension", metadata: ["network": "\(name)", "deleted": "\(delete)"])
  }
}

public struct NetworkRow: Codable, Sendable, Equatable {
  public var name: String
  public var vni: UInt32
  public var ports: [String]
  /// "config" (the file) or "api" (created at run time, through the API or by a join).
  public var origin: EntryOrigin
  public var extended: Bool
  public var routeTarget: String?
}
