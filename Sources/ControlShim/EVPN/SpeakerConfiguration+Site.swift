import Dataplane

extension SpeakerConfiguration {
  /// The speaker settings a site's `[bgp]` section describes; nil without `[bgp]`.
  ///
  /// - VTEP (our next hop) = `site.vtep`; router ID, AS, listen port, stale time as
  ///   configured. The listener binds `listenAddress` (default: the wildcard address of
  ///   the VTEP's family); `listen_port = 0` listens nowhere.
  /// - Peers: named by their address; password, max routes, hold time, passive as
  ///   configured. A lost session keeps its routes stale for `stale_time` seconds
  ///   (forwarding state outlives the control plane), then, with a peer that announced
  ///   long-lived graceful restart, long-lived stale for `long_lived_stale_time` seconds
  ///   (RFC 9494); with both 0 they go at once.
  /// - Per bridge domain: `rd`, `import_rt`, `export_rt` when given; otherwise RD
  ///   `router-id:N` with a per-VNI number from `rdNumbers` (stable across reloads) and
  ///   RT `ASN:VNI`.
  /// Values that do not parse are reported in `warnings` and replaced by defaults.
  public static func site(
    _ site: SiteConfig, listenAddress: String? = nil, rdNumbers: [UInt32: UInt16] = [:],
    warnings: inout [String]
  ) -> SpeakerConfiguration? {
    guard let bgp = site.bgp else { return nil }
    guard case .v4(let routerID) = bgp.routerID else {
      warnings.append("[bgp] router_id must be IPv4")
      return nil
    }
    var vnis: [VNIConfiguration] = []
    for (position, domain) in site.bridgeDomains.enumerated() {
      var vni = VNIConfiguration(vni: domain.vni)
      if let text = domain.rd {
        if let rd = RouteDistinguisher(text) {
          vni.routeDistinguisher = rd
        } else {
          warnings.append("VNI \(domain.vni): rd \(text) not understood; using the default")
        }
      }
      if vni.routeDistinguisher == nil {
        let number = rdNumbers[domain.vni] ?? UInt16(truncatingIfNeeded: position + 1)
        vni.routeDistinguisher = .ipv4(routerID, number)
      }
      vni.importRouteTargets = routeTargets(
        domain.importRTs, vni: domain.vni, what: "import_rt", warnings: &warnings)
      vni.exportRouteTargets = routeTargets(
        domain.exportRTs, vni: domain.vni, what: "export_rt", warnings: &warnings)
      vnis.append(vni)
    }
    let peers = bgp.peers.map { peer in
      PeerConfiguration(
        name: peer.address.description, address: peer.address.description, port: peer.port,
        remoteAS: peer.asn,
        passive: peer.passive, password: peer.password, maxRoutes: peer.maxRoutes,
        holdTime: UInt16(clamping: peer.holdTime),
        staleRoutePolicy: bgp.staleTime > 0 || bgp.longLivedStaleTime > 0 ? .always : .never)
    }
    var configuration = SpeakerConfiguration(
      asn: bgp.asn, routerID: routerID, vtep: site.site.vtep,
      listenAddress: bgp.listenPort == 0
        ? nil : (listenAddress ?? (site.site.vtep.isIPv4 ? "0.0.0.0" : "::")),
      listenPort: bgp.listenPort, vnis: vnis, peers: peers)
    configuration.staleTime = Double(bgp.staleTime)
    configuration.longLivedStaleTime = Double(bgp.longLivedStaleTime)
    configuration.gracefulRestartTime = UInt16(clamping: bgp.restartTime)
    configuration.duplicateMACMaxMoves = bgp.dupMACMaxMoves
    configuration.duplicateMACWindow = Double(bgp.dupMACTime)
    configuration.duplicateMACFreezeTime = bgp.dupMACFreeze > 0 ? Double(bgp.dupMACFreeze) : nil
    configuration.connectRetryMaximum = 30
    return configuration
  }

  /// nil (the default `ASN:VNI`) when none are configured or none parse.
  private static func routeTargets(_ texts: [String], vni: UInt32, what: String, warnings: inout [String])
    -> [RouteTarget]?
  {
    var targets: [RouteTarget] = []
    for text in texts {
      if let target = RouteTarget(text) {
        targets.append(target)
      } else {
        warnings.append("VNI \(vni): \(what) \(text) not understood; ignored")
      }
    }
    return targets.isEmpty ? nil : targets
  }
}
