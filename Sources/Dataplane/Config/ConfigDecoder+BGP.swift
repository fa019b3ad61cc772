extension ConfigDecoder {
  /// `[bgp]` keys and its `peer` array of tables.
  static let bgpKeys = ConfigSchema.allowedKeys(in: "bgp")
  static let peerKeys = ConfigSchema.allowedKeys(in: "bgp.peer")
  static let asnRange: ClosedRange<Int64> = 1...4_294_967_295
  /// RFC 9494: the long-lived stale time is a 24-bit number of seconds.
  static let longLivedStaleTimeRange: ClosedRange<Int64> = 0...16_777_215
  /// RFC 4724: the restart time is a 12-bit number of seconds.
  static let restartTimeRange: ClosedRange<Int64> = 1...4095
  static let selectionDeferralTimeRange: ClosedRange<Int64> = 1...3600
  /// `TCP_MD5SIG_MAXKEYLEN`: the kernel refuses longer TCP MD5 keys.
  static let maximumPasswordLength = 80

  /// `[bgp]` with its `[[bgp.peer]]` tables; nil when `asn` or `router_id` is unusable.
  func decodeBGP(_ table: ConfigTableReader) -> SiteConfig.BGP? {
    table.rejectUnknownKeys(allowed: Self.bgpKeys)
    let asn = table.integer("asn", in: Self.asnRange, required: true)
    var routerID = table.ipAddress("router_id", required: true)
    if let address = routerID, !address.value.isIPv4 {
      report("router_id must be an IPv4 address (got \(address.value))", line: address.line)
      routerID = nil
    }
    let listenPort = table.integer("listen_port", in: 0...65535)
    let staleTime = table.integer("stale_time", in: 0...Int64.max)
    let longLivedStaleTime = table.integer("long_lived_stale_time", in: Self.longLivedStaleTimeRange)
    let restartTime = table.integer("restart_time", in: Self.restartTimeRange)
    let deferral = table.integer("selection_deferral_time", in: Self.selectionDeferralTimeRange)
    // FRR's ranges: max-moves 2-1000, time 2-1800 s, freeze 30-3600 s (0 here: permanent).
    let maxMoves = table.integer("dup_mac_max_moves", in: 2...1000)
    let moveTime = table.integer("dup_mac_time", in: 2...1800)
    var freeze = table.integer("dup_mac_freeze", in: 0...3600)
    if let hold = freeze, hold.value != 0, hold.value < 30 {
      report(
        "dup_mac_freeze must be 0 (until cleared) or between 30 and 3600 (got \(hold.value))", line: hold.line
      )
      freeze = nil
    }
    let peers = decodePeers(
      table.arrayOfTables("peer", displayName: ConfigSchema.displayName(of: "bgp.peer")))

    guard let asn, let routerID else { return nil }
    var bgp = SiteConfig.BGP(asn: UInt32(asn.value), routerID: routerID.value)
    if let listenPort { bgp.listenPort = UInt16(listenPort.value) }
    if let staleTime { bgp.staleTime = Int(staleTime.value) }
    if let longLivedStaleTime { bgp.longLivedStaleTime = Int(longLivedStaleTime.value) }
    if let restartTime { bgp.restartTime = Int(restartTime.value) }
    if let deferral { bgp.selectionDeferralTime = Int(deferral.value) }
    if let maxMoves { bgp.dupMACMaxMoves = Int(maxMoves.value) }
    if let moveTime { bgp.dupMACTime = Int(moveTime.value) }
    if let freeze { bgp.dupMACFreeze = Int(freeze.value) }
    bgp.peers = peers
    return bgp
  }

  private func decodePeers(_ tables: [ConfigTableReader]) -> [SiteConfig.BGP.Peer] {
    var lineByAddress: [IPAddress: Int] = [:]
    var peers: [SiteConfig.BGP.Peer] = []
    for table in tables {
      table.rejectUnknownKeys(allowed: Self.peerKeys)
      let address = table.ipAddress("address", required: true)
      let asn = table.integer("asn", in: Self.asnRange, required: true)
      let port = table.integer("port", in: 1...65535)
      var holdTime = table.integer("hold_time")
      if let hold = holdTime, hold.value != 0, !(3...65535).contains(hold.value) {
        // RFC 4271: the hold time is zero (no keepalives) or at least three seconds.
        report("hold_time must be 0 or between 3 and 65535 (got \(hold.value))", line: hold.line)
        holdTime = nil
      }
      var password = table.string("password")
      if let secret = password, secret.value.utf8.count > Self.maximumPasswordLength {
        report("password must be at most \(Self.maximumPasswordLength) bytes", line: secret.line)
        password = nil
      }
      let passive = table.boolean("passive")
      let maxRoutes = table.integer("max_routes", in: 1...Int64.max)

      guard let address, let asn else { continue }
      if let firstLine = lineByAddress[address.value] {
        report("peer \(address.value) is already defined on line \(firstLine)", line: address.line)
        continue
      }
      lineByAddress[address.value] = address.line
      var peer = SiteConfig.BGP.Peer(address: address.value, asn: UInt32(asn.value))
      if let port { peer.port = UInt16(port.value) }
      if let holdTime { peer.holdTime = Int(holdTime.value) }
      if let password { peer.password = password.value }
      if let passive { peer.passive = passive.value }
      if let maxRoutes { peer.maxRoutes = Int(maxRoutes.value) }
      peers.append(peer)
    }
    return peers
  }
}
