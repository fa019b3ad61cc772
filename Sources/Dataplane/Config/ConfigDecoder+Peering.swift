extension ConfigDecoder {
  static let peeringKeys = ConfigSchema.allowedKeys(in: "peering")
  static let sitePeerKeys = ConfigSchema.allowedKeys(in: "site_peer")

  /// `[peering]`; nil when a key is missing or invalid. `siteName` (nil when `[site] name`
  /// is missing or invalid) must then be a DNS name: the site's certificate carries it.
  func decodePeering(_ table: ConfigTableReader, siteName: String?) -> SiteConfig.Peering? {
    table.rejectUnknownKeys(allowed: Self.peeringKeys)
    if let siteName, !ConfigSyntax.isValidDNSName(Substring(siteName)) {
      report(
        "with [peering], the site name must be \(ConfigSyntax.peerSiteNameRule), as certificates carry it "
          + "(got \(ConfigSyntax.quoted(siteName)))", line: table.table.line)
    }
    let listen = decodeListen(table)
    let paths = ["tls_cert", "tls_key", "tls_ca"].map { decodePath(table, $0) }
    // The extension speaker's stale times, for a site without [bgp] (whose own apply).
    let staleTime = table.integer("stale_time", in: 0...Int64.max)
    let longLivedStaleTime = table.integer("long_lived_stale_time", in: Self.longLivedStaleTimeRange)
    let restartTime = table.integer("restart_time", in: Self.restartTimeRange)
    let deferral = table.integer("selection_deferral_time", in: Self.selectionDeferralTimeRange)
    let rateLimit = table.integer("rate_limit", in: Self.rateLimitRange)
    var holdTime = table.integer("hold_time")
    if let hold = holdTime, hold.value != 0, !(3...65535).contains(hold.value) {
      report("hold_time must be 0 or between 3 and 65535 (got \(hold.value))", line: hold.line)
      holdTime = nil
    }
    guard let listen, let cert = paths[0], let key = paths[1], let ca = paths[2] else { return nil }
    var peering = SiteConfig.Peering(
      listenHost: listen.host, listenPort: listen.port, tlsCert: cert, tlsKey: key, tlsCA: ca)
    if let staleTime { peering.staleTime = Int(staleTime.value) }
    if let longLivedStaleTime { peering.longLivedStaleTime = Int(longLivedStaleTime.value) }
    if let restartTime { peering.restartTime = Int(restartTime.value) }
    if let deferral { peering.selectionDeferralTime = Int(deferral.value) }
    if let holdTime { peering.holdTime = Int(holdTime.value) }
    if let rateLimit { peering.rateLimit = Int(rateLimit.value) }
    return peering
  }

  /// `[[site_peer]]`: one per site name, never this site's own; only with `[peering]`.
  /// `siteName` is nil when `[site] name` is missing or invalid.
  func decodeSitePeers(
    _ tables: [ConfigTableReader], siteName: String?, hasPeering: Bool, vtep: IPAddress? = nil
  )
    -> (channel: [SiteConfig.SitePeer], evpnOnly: [SiteConfig.EVPNSite])
  {
    if let first = tables.first, !hasPeering {
      report(
        "[[site_peer]] needs a [peering] table (the channel's address and TLS files)", line: first.table.line)
    }
    var lineByName: [String: Int] = [:]
    /// Takes `name` for one site peer of either kind, unless another already has it or it
    /// is this site's own (both reported).
    func claim(_ name: Located<String>) -> Bool {
      // Certificates name sites as DNS names, which compare without regard to case.
      let key = name.value.lowercased()
      if let firstLine = lineByName[key] {
        report(
          "site peer \(ConfigSyntax.quoted(name.value)) is already defined on line \(firstLine)",
          line: name.line)
        return false
      }
      lineByName[key] = name.line
      if let siteName, siteName.lowercased() == key {
        report("site peer \(ConfigSyntax.quoted(name.value)) is this site's own name", line: name.line)
        return false
      }
      return true
    }
    var peers: [SiteConfig.SitePeer] = []
    var evpnSites: [SiteConfig.EVPNSite] = []
    for table in tables {
      table.rejectUnknownKeys(allowed: Self.sitePeerKeys)
      let name = table.string("name", required: true).flatMap { name -> Located<String>? in
        guard ConfigSyntax.isValidSiteName(name.value) else {
          report(
            "name must be \(ConfigSyntax.nameRule(maximumLength: 32)) (got \(ConfigSyntax.quoted(name.value)))",
            line: name.line)
          return nil
        }
        guard ConfigSyntax.isValidDNSName(Substring(name.value)) else {
          report(
            "name must be \(ConfigSyntax.peerSiteNameRule), as certificates carry it "
              + "(got \(ConfigSyntax.quoted(name.value)))", line: name.line)
          return nil
        }
        return name
      }
      let evpnOnly = table.boolean("evpn_only")?.value ?? false
      if evpnOnly {
        if let url = table.string("url") {
          report(
            "url is not used with evpn_only = true: the site has no site channel, only BGP EVPN",
            line: url.line)
        }
        let address = table.ipAddress("vtep", required: true)
        if let address, let vtep, address.value.isIPv4 != vtep.isIPv4 {
          report("vtep \(address.value) is not of the family of [site] vtep", line: address.line)
        }
        if let address, address.value == vtep {
          report("vtep \(address.value) is this site's own VTEP", line: address.line)
        }
        let asn = table.integer("asn", in: Self.asnRange)
        var password = table.string("password")
        if let secret = password, secret.value.isEmpty || secret.value.utf8.count > Self.maximumPasswordLength
        {
          report("password must be 1 to \(Self.maximumPasswordLength) bytes", line: secret.line)
          password = nil
        }
        guard let name, let address, claim(name) else { continue }
        evpnSites.append(
          SiteConfig.EVPNSite(
            name: name.value, vtep: address.value, asn: asn.map { UInt32($0.value) },
            password: password?.value))
        continue
      }
      for key in ["vtep", "asn", "password"] {
        if table.contains(key) {
          report(
            "\(key) is only used with evpn_only = true (a site reached over BGP EVPN only)",
            line: table.table.line)
        }
      }
      let url = table.string("url", required: true).flatMap { text -> (host: String, port: UInt16)? in
        switch ConfigSyntax.peerURL(text.value) {
        case .success(let address): return address
        case .failure(let problem):
          report(problem.message, line: text.line)
          return nil
        }
      }
      guard let name, claim(name) else { continue }
      guard let url else { continue }
      peers.append(SiteConfig.SitePeer(name: name.value, host: url.host, port: Int(url.port)))
    }
    return (peers, evpnSites)
  }

  /// `listen = "ADDR:PORT"`, as `[api]` and `[peering]` write it.
  func decodeListen(_ table: ConfigTableReader) -> (host: IPAddress, port: UInt16)? {
    table.string("listen", required: true).flatMap { text -> (host: IPAddress, port: UInt16)? in
      switch ConfigSyntax.listenAddress(text.value) {
      case .success(let address): return address
      case .failure(let problem):
        report(problem.message, line: text.line)
        return nil
      }
    }
  }

  /// A required file path: a non-empty string without NUL bytes.
  func decodePath(_ table: ConfigTableReader, _ key: String) -> String? {
    table.string(key, required: true).flatMap { path -> String? in
      guard !path.value.isEmpty, !path.value.utf8.contains(0) else {
        report("\(key) must be a non-empty path", line: path.line)
        return nil
      }
      return path.value
    }
  }
}
