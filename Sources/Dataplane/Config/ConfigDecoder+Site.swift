extension ConfigDecoder {
  static let siteKeys = ConfigSchema.allowedKeys(in: "site")

  /// `sun_path` holds 108 bytes including the terminating NUL.
  static let maximumSocketPathLength = 107

  /// `[site]`; nil when a required key is missing or invalid.
  func decodeSite(_ table: ConfigTableReader) -> SiteConfig.Site? {
    table.rejectUnknownKeys(allowed: Self.siteKeys)

    let name = table.string("name", required: true).flatMap { name -> String? in
      guard ConfigSyntax.isValidSiteName(name.value) else {
        report(
          "name must be \(ConfigSyntax.nameRule(maximumLength: 32)) (got \(ConfigSyntax.quoted(name.value)))",
          line: name.line)
        return nil
      }
      return name.value
    }
    let vtep = table.ipAddress("vtep", required: true)?.value
    let underlay = table.string("underlay", required: true).flatMap { underlay -> String? in
      guard ConfigSyntax.isValidInterfaceName(underlay.value) else {
        report(
          "underlay must be a Linux interface name, \(ConfigSyntax.interfaceNameRule) (got \(ConfigSyntax.quoted(underlay.value)))",
          line: underlay.line)
        return nil
      }
      return underlay.value
    }
    localVTEP = vtep
    underlayInterface = underlay

    // Placeholders stand in for invalid required keys so that the optional keys still get checked.
    var site = SiteConfig.Site(name: name ?? "invalid", vtep: vtep ?? .v4(0), underlay: underlay ?? "invalid")
    if let port = table.integer("udp_port", in: 1...65535) { site.udpPort = UInt16(port.value) }
    if let mac = table.unicastMACAddress("underlay_mac") { site.underlayMAC = mac.value }
    if let mtu = decodeMTU(table, vtep: vtep) { site.mtu = mtu }
    if let ports = decodeSourcePorts(table) { site.udpSourcePorts = ports }
    if let checksum = table.boolean("udp_checksum_ipv4") { site.udpChecksumIPv4 = checksum.value }
    if let ttl = table.integer("ttl", in: 1...255) { site.ttl = UInt8(ttl.value) }
    if let dscp = decodeDSCP(table) { site.dscp = dscp }
    if let aging = table.integer("aging_time", in: 1...Int64.max) { site.agingTime = Int(aging.value) }
    if let limit = table.integer("learn_limit", in: 0...Int64.max) { site.learnLimit = Int(limit.value) }
    if let capacity = table.integer("fdb_capacity", in: 1024...16_777_216) {
      site.fdbCapacity = Int(capacity.value)
    }
    if let workers = table.integer("workers", in: 1...64) { site.workers = Int(workers.value) }
    if let cpus = decodeCPUs(table) { site.cpus = cpus }
    if let socket = decodeControlSocket(table) { site.controlSocket = socket }
    if let directory = table.string("state_dir") {
      if directory.value.isEmpty || directory.value.utf8.contains(0) {
        report("state_dir must be a non-empty path", line: directory.line)
      } else {
        site.stateDirectory = directory.value
      }
    }
    if let level = decodeLogLevel(table) { site.logLevel = level }
    if let accepted = decodeAcceptedVTEPs(table) { site.acceptedVTEPs = accepted }

    guard name != nil, vtep != nil, underlay != nil else { return nil }
    return site
  }

  /// The outer packet must fit the underlay: IPv6 guarantees only 1280 bytes, IPv4 576.
  private func decodeMTU(_ table: ConfigTableReader, vtep: IPAddress?) -> Int? {
    guard let mtu = table.integer("mtu") else { return nil }
    let isIPv6 = vtep.map { !$0.isIPv4 } ?? false
    let range: ClosedRange<Int64> = isIPv6 ? 1280...9216 : 576...9216
    guard range.contains(mtu.value) else {
      let family = isIPv6 ? " with an IPv6 vtep" : ""
      report(
        "mtu must be between \(range.lowerBound) and \(range.upperBound)\(family) (got \(mtu.value))",
        line: mtu.line)
      return nil
    }
    return Int(mtu.value)
  }

  /// `udp_source_ports = [low, high]`: the range outer UDP source ports are hashed into.
  private func decodeSourcePorts(_ table: ConfigTableReader) -> ClosedRange<UInt16>? {
    guard let array = table.array("udp_source_ports") else { return nil }
    let bounds = array.value.compactMap(\.integer)
    guard array.value.count == 2, bounds.count == 2 else {
      report("udp_source_ports must be [low, high], two integers", line: array.line)
      return nil
    }
    guard bounds.allSatisfy({ (1...65535).contains($0) }) else {
      report(
        "udp_source_ports must be between 1 and 65535 (got \(bounds[0]), \(bounds[1]))", line: array.line)
      return nil
    }
    guard bounds[0] <= bounds[1] else {
      report("udp_source_ports low end \(bounds[0]) is above the high end \(bounds[1])", line: array.line)
      return nil
    }
    return UInt16(bounds[0])...UInt16(bounds[1])
  }

  /// `dscp = 0..63` sets the outer DSCP; `dscp = "inherit"` copies it from the inner packet.
  private func decodeDSCP(_ table: ConfigTableReader) -> SiteConfig.DSCP? {
    guard let value = table.value("dscp") else { return nil }
    switch value.kind {
    case .integer(let dscp) where (0...63).contains(dscp):
      return .fixed(UInt8(dscp))
    case .string("inherit"):
      return .inherit
    case .integer(let dscp):
      report("dscp must be between 0 and 63 (got \(dscp))", line: value.line)
    default:
      report("dscp must be an integer from 0 to 63 or \"inherit\"", line: value.line)
    }
    return nil
  }

  private func decodeCPUs(_ table: ConfigTableReader) -> [Int]? {
    guard let array = table.array("cpus") else { return nil }
    var cpus: [Int] = []
    var isValid = true
    for element in array.value {
      guard let cpu = element.integer, cpu >= 0 else {
        report("cpus entries must be integers of at least 0", line: element.line)
        isValid = false
        continue
      }
      if cpus.contains(Int(cpu)) {
        report("cpu \(cpu) is listed twice in cpus", line: element.line)
        isValid = false
      }
      cpus.append(Int(cpu))
    }
    return isValid ? cpus : nil
  }

  /// `accept_vteps`: "any" or "known".
  private func decodeAcceptedVTEPs(_ table: ConfigTableReader) -> SiteConfig.AcceptedVTEPs? {
    guard let value = table.value("accept_vteps") else { return nil }
    if let word = value.string, let accepted = SiteConfig.AcceptedVTEPs(rawValue: word) { return accepted }
    let got = value.string.map { " (got \(ConfigSyntax.quoted($0)))" } ?? ""
    report("accept_vteps must be \"any\" or \"known\"\(got)", line: value.line)
    return nil
  }

  /// `log_level`: one of swift-log's level names, as `SiteConfig.LogLevel` spells them.
  private func decodeLogLevel(_ table: ConfigTableReader) -> SiteConfig.LogLevel? {
    guard let value = table.value("log_level") else { return nil }
    if let word = value.string, let level = SiteConfig.LogLevel(rawValue: word) { return level }
    let words = SiteConfig.LogLevel.allCases.map(\.rawValue).joined(separator: ", ")
    let got = value.string.map { " (got \(ConfigSyntax.quoted($0)))" } ?? ""
    report("log_level must be one of \(words)\(got)", line: value.line)
    return nil
  }

  private func decodeControlSocket(_ table: ConfigTableReader) -> String? {
    guard let path = table.string("control_socket") else { return nil }
    let length = path.value.utf8.count
    guard length > 0, !path.value.utf8.contains(0) else {
      report("control_socket must be a non-empty path", line: path.line)
      return nil
    }
    guard length <= Self.maximumSocketPathLength else {
      report(
        "control_socket is \(length) bytes long; a Unix socket path is at most "
          + "\(Self.maximumSocketPathLength)", line: path.line)
      return nil
    }
    return path.value
  }
}
