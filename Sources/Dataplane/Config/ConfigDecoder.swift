extension SiteConfig {
  /// Reads and decodes the configuration file at `path`.
  ///
  /// Throws `ConfigErrors` listing every problem as `FILE:LINE: message`; an unreadable file is
  /// reported on line 0.
  public static func load(path: String) throws -> SiteConfig {
    switch ConfigFile.contents(of: path) {
    case .success(let bytes):
      return try decode(file: path) { () throws(TOMLError) in try TOMLDocument(parsing: bytes) }
    case .failure(let problem):
      throw ConfigErrors(errors: [ConfigError(file: path, line: 0, message: problem.message)])
    }
  }

  /// Decodes configuration text; `file` is only used to name the source in errors.
  ///
  /// Throws `ConfigErrors` listing every problem found (a TOML syntax error stops parsing, so it
  /// comes alone).
  public static func parse(text: String, file: String) throws -> SiteConfig {
    try decode(file: file) { () throws(TOMLError) in try TOMLDocument(parsing: text) }
  }

  private static func decode(file: String, parse: () throws(TOMLError) -> TOMLDocument) throws -> SiteConfig {
    let document: TOMLDocument
    do {
      document = try parse()
    } catch {
      throw ConfigErrors(errors: [ConfigError(file: file, line: error.line, message: error.message)])
    }
    let diagnostics = ConfigDiagnostics(file: file)
    let config = ConfigDecoder(diagnostics: diagnostics).decode(document.root)
    if config == nil, diagnostics.errors.isEmpty {
      diagnostics.report("the configuration is incomplete", line: 0)
    }
    guard let config, diagnostics.errors.isEmpty else {
      throw ConfigErrors(errors: diagnostics.errorsInLineOrder)
    }
    return config
  }
}

/// Turns a parsed TOML document into a `SiteConfig`, checking every value and the consistency
/// between sections (ports owned by one bridge domain, static MACs naming configured ones...).
///
/// Sections are decoded even when earlier ones had errors, so one run reports everything; the
/// facts later sections depend on (the VTEP, the bridge domains) are kept as far as they were
/// valid, which avoids a cascade of follow-up errors from one mistake.
final class ConfigDecoder {
  let diagnostics: ConfigDiagnostics

  /// From `[site]`, when valid: the VTEP decides the address family of every remote VTEP.
  var localVTEP: IPAddress?
  /// From `[site]`, when valid: the underlay interface may not be a bridge domain port.
  var underlayInterface: String?
  /// Ports of every bridge domain whose VNI is valid, for `[[static_mac]] port = ...`.
  var portsByVNI: [UInt32: Set<SiteConfig.PortMember>] = [:]

  /// The tables of the file: `[site]`, `[[neighbor]]`...
  static let topLevelKeys = ConfigSchema.allowedKeys(in: "")
  static let neighborKeys = ConfigSchema.allowedKeys(in: "neighbor")

  init(diagnostics: ConfigDiagnostics) { self.diagnostics = diagnostics }

  func report(_ message: String, line: Int) { diagnostics.report(message, line: line) }

  /// The configuration, or nil when a required part is missing; callers also check whether
  /// any problem was reported, since most problems still leave a (wrong) configuration.
  func decode(_ root: TOMLTable) -> SiteConfig? {
    let document = ConfigTableReader(table: root, name: "the file", diagnostics: diagnostics)
    for entry in root.entries where !Self.topLevelKeys.contains(entry.key) {
      let isTable =
        entry.value.table != nil
        || (entry.value.array.map { !$0.isEmpty && $0.allSatisfy { $0.table != nil } } ?? false)
      report(
        isTable ? "unknown table [\(entry.key)]" : "unknown key \(ConfigSyntax.quoted(entry.key))",
        line: entry.value.line)
    }
    var site: SiteConfig.Site?
    if let siteTable = subTable(of: document, "site") {
      site = decodeSite(siteTable)
    } else if !document.contains("site") {
      report("missing [site] table", line: 0)
    }
    let api = subTable(of: document, "api").flatMap(decodeAPI)
    let neighbors = decodeNeighbors(arrayOfTables(of: document, "neighbor"))
    let interfaces = decodeInterfaces(arrayOfTables(of: document, "interface"))
    let bridgeDomains = decodeBridgeDomains(arrayOfTables(of: document, "bridge_domain"))
    let staticMACs = decodeStaticMACs(arrayOfTables(of: document, "static_mac"))
    let bgp = subTable(of: document, "bgp").flatMap(decodeBGP)
    let peeringTable = subTable(of: document, "peering")
    let peering = peeringTable.flatMap { decodePeering($0, siteName: site?.name) }
    let sitePeers = decodeSitePeers(
      arrayOfTables(of: document, "site_peer"), siteName: site?.name, hasPeering: peeringTable != nil,
      vtep: site?.vtep)

    guard let site else { return nil }
    var config = SiteConfig(site: site)
    config.api = api
    config.neighbors = neighbors
    config.interfaces = interfaces
    config.bridgeDomains = bridgeDomains
    config.staticMACs = staticMACs
    config.bgp = bgp
    config.peering = peering
    config.sitePeers = sitePeers.channel
    config.evpnSites = sitePeers.evpnOnly
    return config
  }

  /// A top-level `[name]` table, named in messages as `ConfigSchema` writes it.
  private func subTable(of document: ConfigTableReader, _ name: String) -> ConfigTableReader? {
    document.subTable(name, displayName: ConfigSchema.displayName(of: name))
  }

  /// A top-level `[[name]]` array of tables, named in messages as `ConfigSchema` writes it.
  private func arrayOfTables(of document: ConfigTableReader, _ name: String) -> [ConfigTableReader] {
    document.arrayOfTables(name, displayName: ConfigSchema.displayName(of: name))
  }

  /// `[[neighbor]]`: static next hops on the underlay, one per IP address.
  private func decodeNeighbors(_ tables: [ConfigTableReader]) -> [SiteConfig.Neighbor] {
    var lineByIP: [IPAddress: Int] = [:]
    var neighbors: [SiteConfig.Neighbor] = []
    for table in tables {
      table.rejectUnknownKeys(allowed: Self.neighborKeys)
      let ip = table.ipAddress("ip", required: true)
      let mac = table.unicastMACAddress("mac", required: true)
      guard let ip, let mac else { continue }
      if let firstLine = lineByIP[ip.value] {
        report("neighbor \(ip.value) is already defined on line \(firstLine)", line: ip.line)
        continue
      }
      if ip.value == localVTEP {
        report("neighbor \(ip.value) is the local vtep", line: ip.line)
      }
      lineByIP[ip.value] = ip.line
      neighbors.append(SiteConfig.Neighbor(ip: ip.value, mac: mac.value))
    }
    return neighbors
  }

  /// Checks an address that names a remote VTEP (a flood entry, a static MAC's `remote`): it
  /// must share the local VTEP's family, since one underlay socket sends everything, and must
  /// not be the local VTEP itself.
  func checkRemoteVTEP(_ address: Located<IPAddress>, what: String) -> Bool {
    guard let localVTEP else { return true }
    if address.value.isIPv4 != localVTEP.isIPv4 {
      let family = { (ip: IPAddress) in ip.isIPv4 ? "IPv4" : "IPv6" }
      report(
        "\(what) \(address.value) is \(family(address.value)) but the vtep \(localVTEP) is "
          + "\(family(localVTEP))", line: address.line)
      return false
    }
    if address.value == localVTEP {
      report("\(what) \(address.value) is the local vtep", line: address.line)
      return false
    }
    return true
  }
}
