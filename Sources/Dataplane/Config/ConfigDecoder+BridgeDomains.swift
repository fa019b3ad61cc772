extension ConfigDecoder {
  static let bridgeDomainKeys = ConfigSchema.allowedKeys(in: "bridge_domain")
  static let staticMACKeys = ConfigSchema.allowedKeys(in: "static_mac")
  static let vniRange: ClosedRange<Int64> = 1...16_777_215

  /// Where a port member or an interface was first used, for messages about conflicts.
  private struct PortUse {
    var vni: UInt32?
    var line: Int

    var owner: String { vni.map { "the bridge domain with vni \($0)" } ?? "a bridge domain" }
  }

  /// `[[bridge_domain]]`: one VNI each, and every port member in at most one of them.
  func decodeBridgeDomains(_ tables: [ConfigTableReader]) -> [SiteConfig.BridgeDomain] {
    var lineByVNI: [UInt32: Int] = [:]
    var lineByName: [String: Int] = [:]
    var memberUse: [SiteConfig.PortMember: PortUse] = [:]
    var untaggedUse: [String: PortUse] = [:]
    var taggedUse: [String: PortUse] = [:]
    var domains: [SiteConfig.BridgeDomain] = []

    for table in tables {
      table.rejectUnknownKeys(allowed: Self.bridgeDomainKeys)
      var vni: UInt32?
      if let number = table.integer("vni", in: Self.vniRange, required: true) {
        if let firstLine = lineByVNI[UInt32(number.value)] {
          report(
            "vni \(number.value) is already used by the bridge domain on line \(firstLine)", line: number.line
          )
        } else {
          vni = UInt32(number.value)
          lineByVNI[UInt32(number.value)] = number.line
        }
      }
      var domain = SiteConfig.BridgeDomain(vni: vni ?? 0)
      if let name = table.string("name") {
        if !ConfigSyntax.isValidBridgeDomainName(name.value) {
          report(
            "name must be \(ConfigSyntax.nameRule(maximumLength: 64)) (got \(ConfigSyntax.quoted(name.value)))",
            line: name.line)
        } else if let firstLine = lineByName[name.value] {
          report(
            "name \(ConfigSyntax.quoted(name.value)) is already used by the bridge domain on line \(firstLine)",
            line: name.line)
        } else {
          lineByName[name.value] = name.line
          domain.name = name.value
        }
      }

      for text in table.strings("ports") ?? [] {
        let member: SiteConfig.PortMember
        switch ConfigSyntax.portMember(text.value) {
        case .success(let parsed): member = parsed
        case .failure(let problem):
          report(problem.message, line: text.line)
          continue
        }
        let use = PortUse(vni: vni, line: text.line)
        if member.interface == underlayInterface {
          report(
            "port \(member) is on the underlay interface, which cannot be an access port", line: text.line)
        } else if let first = memberUse[member] {
          report("port \(member) is already a member of \(first.owner) (line \(first.line))", line: text.line)
        } else if member.vlan == nil, let tagged = taggedUse[member.interface] {
          report(
            "interface \(member.interface) is used untagged here but tagged in \(tagged.owner) "
              + "(line \(tagged.line))", line: text.line)
        } else if member.vlan != nil, let untagged = untaggedUse[member.interface] {
          report(
            "interface \(member.interface) is used tagged here but untagged in \(untagged.owner) "
              + "(line \(untagged.line))", line: text.line)
        } else {
          memberUse[member] = use
          if member.vlan == nil {
            untaggedUse[member.interface] = use
          } else if taggedUse[member.interface] == nil {
            taggedUse[member.interface] = use
          }
          domain.ports.append(member)
        }
      }

      var floodLines: [IPAddress: Int] = [:]
      for text in table.strings("flood") ?? [] {
        guard let address = ConfigSyntax.ipAddress(text.value) else {
          report("flood entry \(ConfigSyntax.quoted(text.value)) is not an IP address", line: text.line)
          continue
        }
        let located = Located(value: address, line: text.line)
        guard checkRemoteVTEP(located, what: "flood entry") else { continue }
        if let firstLine = floodLines[address] {
          report("flood entry \(address) is already listed on line \(firstLine)", line: text.line)
          continue
        }
        floodLines[address] = text.line
        domain.flood.append(address)
      }

      if let learning = table.boolean("learning") { domain.learning = learning.value }
      if let limit = table.integer("learn_limit", in: 0...Int64.max) { domain.learnLimit = Int(limit.value) }
      if let suppression = table.boolean("arp_suppression") { domain.arpSuppression = suppression.value }
      if let rd = table.string("rd") {
        if ConfigSyntax.isValidRouteDistinguisher(rd.value) {
          domain.rd = rd.value
        } else {
          report(
            "rd must be \(ConfigSyntax.routeDistinguisherForms) (got \(ConfigSyntax.quoted(rd.value)))",
            line: rd.line)
        }
      }
      domain.importRTs = decodeRouteTargets(table, key: "import_rt")
      domain.exportRTs = decodeRouteTargets(table, key: "export_rt")

      if let vni {
        portsByVNI[vni] = Set(domain.ports)
        domains.append(domain)
      }
    }
    return domains
  }

  private func decodeRouteTargets(_ table: ConfigTableReader, key: String) -> [String] {
    (table.strings(key) ?? []).compactMap { target in
      guard ConfigSyntax.isValidRouteDistinguisher(target.value) else {
        report(
          "\(key) entry \(ConfigSyntax.quoted(target.value)) must be \(ConfigSyntax.routeDistinguisherForms)",
          line: target.line)
        return nil
      }
      return target.value
    }
  }

  /// `[[static_mac]]`: a MAC pinned in one bridge domain to a remote VTEP or a local port.
  func decodeStaticMACs(_ tables: [ConfigTableReader]) -> [SiteConfig.StaticMAC] {
    struct Key: Hashable {
      var vni: UInt32
      var mac: MACAddress
    }
    var lineByKey: [Key: Int] = [:]
    var entries: [SiteConfig.StaticMAC] = []

    for table in tables {
      table.rejectUnknownKeys(allowed: Self.staticMACKeys)
      let vni = table.integer("vni", in: Self.vniRange, required: true)
      var ports: Set<SiteConfig.PortMember>?
      if let vni {
        ports = portsByVNI[UInt32(vni.value)]
        if ports == nil { report("vni \(vni.value) has no [[bridge_domain]]", line: vni.line) }
      }
      let mac = table.unicastMACAddress("mac", required: true)

      var target: SiteConfig.StaticMAC.Target?
      switch (table.contains("remote"), table.contains("port")) {
      case (true, false):
        if let remote = table.ipAddress("remote"), checkRemoteVTEP(remote, what: "remote") {
          target = .remote(remote.value)
        }
      case (false, true):
        target = decodeStaticPort(table, ports: ports, vni: vni?.value)
      default:
        report("[[static_mac]] needs exactly one of 'remote' or 'port'", line: table.table.line)
      }

      guard let vni, ports != nil, let mac, let target else { continue }
      let key = Key(vni: UInt32(vni.value), mac: mac.value)
      if let firstLine = lineByKey[key] {
        report(
          "static mac \(mac.value) in vni \(vni.value) is already defined on line \(firstLine)",
          line: mac.line)
        continue
      }
      lineByKey[key] = mac.line
      entries.append(SiteConfig.StaticMAC(vni: key.vni, mac: key.mac, target: target))
    }
    return entries
  }

  /// A static MAC behind a local port: the port must belong to the entry's bridge domain.
  private func decodeStaticPort(_ table: ConfigTableReader, ports: Set<SiteConfig.PortMember>?, vni: Int64?)
    -> SiteConfig.StaticMAC.Target?
  {
    guard let text = table.string("port") else { return nil }
    switch ConfigSyntax.portMember(text.value) {
    case .failure(let problem):
      report(problem.message, line: text.line)
      return nil
    case .success(let member):
      if let ports, let vni, !ports.contains(member) {
        report("port \(member) is not a member of the bridge domain with vni \(vni)", line: text.line)
        return nil
      }
      return .port(member)
    }
  }
}
