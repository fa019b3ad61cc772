import Dataplane
import Foundation

/// The lab's addressing plan: `sites` sites, each a namespace with an underlay veth to
/// a routed backbone namespace and `vmsPerSite` VM namespaces on access veths; one VNI
/// extended across every site.
struct LabTopology {
  var prefix: String
  var sites: Int
  var vmsPerSite = 2
  var ipv6Underlay = false
  var udpPort: UInt16 = 4789
  var vni: UInt32 = 100
  /// 1-based indices of the sites run by a Linux bridge + kernel vxlan device.
  var kernelSites: Set<Int> = []
  /// BGP EVPN instead of static flood lists and data-plane learning: every site peers
  /// (iBGP) with a gobgpd route reflector in the backbone namespace.
  var bgp = false
  /// The inter-site extension (the default): sites with a site CA and certificates, a
  /// named network each (its own local VNI), no flood list; site 1 extends it through the
  /// API to every other site but the last, which stays out (with 2 sites, to site 2).
  var extended = false
  /// After the extension checks: cut site 2 off the backbone, plant an address conflict
  /// while it is cut, heal, and show the conflict reported and cleared (needs ARP
  /// suppression and a short aging time, which the sites then get).
  var partition = false
  /// The sites' MAC aging time in seconds (`--aging-time`; `Bench soak` shortens it so
  /// that MACs age out, and their routes are withdrawn, within its run).
  var agingTime: Int?
  /// Size of each lab TCP transfer.
  var transferMiB = 4
  /// The port type of every interface of every vxswitch site (`--io`).
  var io: PortIO = .afPacket
  /// The port type of the underlay of every vxswitch site when it differs from `io`
  /// (`--underlay-io`).
  var underlayIO: PortIO? = nil
  var underlayPortIO: PortIO { underlayIO ?? io }
  /// A port type other than the default somewhere (`[[interface]]` tables, checked after
  /// the start).
  var choosesPortTypes: Bool { io != .afPacket || underlayPortIO != .afPacket }
  /// The port type the lab gives `interface` (`ul` or `vmN`).
  func portIO(of interface: String) -> PortIO { interface == "ul" ? underlayPortIO : io }
  /// Every port of a vxswitch site is AF_XDP and one worker has them all: they share a
  /// UMEM and send frames in place (unless `VXSWITCH_XDP_IN_PLACE=off`).
  var sendsInPlace: Bool {
    io == .afXDP && underlayPortIO == .afXDP && workers == 1
      && ProcessInfo.processInfo.environment["VXSWITCH_XDP_IN_PLACE"] != "off"
  }
  /// Packet workers per vxswitch site (`--workers`); on the lab's single-queue veths,
  /// more than one shares each AF_XDP queue, or forms a fanout group on AF_PACKET.
  var workers = 1
  /// The last VM of every vxswitch site reaches its port through VLAN `taggedVLAN`
  /// (`"vmN.10"` in the configuration, `eth0.10` in the VM).
  var taggedVM = false
  let taggedVLAN = 10
  func vlan(_ site: Int, _ vm: Int) -> Int? {
    taggedVM && runsVXSwitch(site) && vm == vmsPerSite ? taggedVLAN : nil
  }
  /// The bridge-domain member a VM is attached through ("vm2", or "vm2.10" when tagged).
  func portName(_ site: Int, _ vm: Int) -> String { vlan(site, vm).map { "vm\(vm).\($0)" } ?? "vm\(vm)" }
  var pkiDirectory: String { "\(stateDirectory)/pki" }
  var peeringPort: Int { 7443 }
  /// The sites an extended lab's network spans.
  var members: [Int] { sites == 2 ? [1, 2] : Array(1..<sites) }
  var nonMembers: [Int] { allSites.filter { !members.contains($0) } }
  func hostPort(_ site: Int, _ port: Int) -> String {
    ipv6Underlay ? "[\(vtep(site))]:\(port)" : "\(vtep(site)):\(port)"
  }
  var asn: UInt32 = 65000

  var stateDirectory: String { "/run/vxswitch-lab/\(prefix)" }
  var backbone: String { "\(prefix)-bb" }
  func siteNamespace(_ site: Int) -> String { "\(prefix)-s\(site)" }
  func vmNamespace(_ site: Int, _ vm: Int) -> String { "\(prefix)-s\(site)-vm\(vm)" }
  func vtep(_ site: Int) -> String { ipv6Underlay ? "fd00:\(site)::2" : "172.16.\(site).2" }
  func gateway(_ site: Int) -> String { ipv6Underlay ? "fd00:\(site)::1" : "172.16.\(site).1" }
  var underlayPrefixLength: Int { ipv6Underlay ? 64 : 24 }
  /// VM MTU that fits a 1500-byte underlay after VXLAN's 50 (IPv4) or 70 (IPv6) bytes.
  var usableVMMTU: Int { ipv6Underlay ? 1430 : 1450 }
  /// The VMs' MTU: `usableVMMTU` unless set larger, to show path MTU discovery at work.
  var vmMTUOverride: Int?
  var vmMTU: Int { vmMTUOverride ?? usableVMMTU }
  func vmAddress(_ site: Int, _ vm: Int) -> String { "192.168.100.\(site * 10 + vm)" }
  func vmMAC(_ site: Int, _ vm: Int) -> String { String(format: "02:00:00:00:%02x:%02x", site, vm) }
  func configPath(_ site: Int) -> String { "\(stateDirectory)/site-\(site).toml" }
  func socketPath(_ site: Int) -> String { "\(stateDirectory)/site-\(site).sock" }
  func logPath(_ site: Int) -> String { "\(stateDirectory)/site-\(site).log" }
  func pidPath(_ site: Int) -> String { "\(stateDirectory)/site-\(site).pid" }
  var allSites: [Int] { Array(1...sites) }
  var allVMs: [(site: Int, vm: Int)] { allSites.flatMap { site in (1...vmsPerSite).map { (site, $0) } } }
  func runsVXSwitch(_ site: Int) -> Bool { !kernelSites.contains(site) }
  var gobgpdConfigPath: String { "\(stateDirectory)/gobgpd.toml" }
  var gobgpdLogPath: String { "\(stateDirectory)/gobgpd.log" }
  var gobgpdPIDPath: String { "\(stateDirectory)/gobgpd.pid" }
  /// gobgpd's gRPC API, inside the backbone namespace.
  var gobgpdAPIPort: Int { 50051 }
  /// BGP identifiers are IPv4 addresses whatever the underlay.
  var routeReflectorID: String { "10.255.255.254" }
  func routerID(_ site: Int) -> String { ipv6Underlay ? "10.255.0.\(site)" : vtep(site) }

  /// The route reflector: one passive route-reflector client per site, L2VPN EVPN.
  func gobgpdConfiguration() -> String {
    var text = """
      # vxswitch lab route reflector (generated by `vxswitch lab --bgp`).
      [global.config]
        as = \(asn)
        router-id = "\(routeReflectorID)"
        port = 179

      """
    for site in allSites where runsVXSwitch(site) {
      text += """
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "\(vtep(site))"
            peer-as = \(asn)
          [neighbors.transport.config]
            passive-mode = true
          [neighbors.timers.config]
            hold-time = 9
            keepalive-interval = 3
          [neighbors.route-reflector.config]
            route-reflector-client = true
            route-reflector-cluster-id = "\(routeReflectorID)"
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "l2vpn-evpn"

        """
    }
    return text
  }

  /// The site's vxswitch configuration, as a user would write it.
  func configuration(_ site: Int) -> String {
    let ports = (1...vmsPerSite).map { "\"\(portName(site, $0))\"" }.joined(separator: ", ")
    // With BGP the flood list comes from type-3 routes and remote MACs from type-2 routes.
    let flood = bgp ? "" : allSites.filter { $0 != site }.map { "\"\(vtep($0))\"" }.joined(separator: ", ")
    let bgpSection =
      bgp
      ? """

      [bgp]
      asn = \(asn)
      router_id = "\(routerID(site))"
      listen_port = 0
      stale_time = 300

      [[bgp.peer]]
      address = "\(gateway(site))"
      asn = \(asn)
      hold_time = 9

      """ : ""
    if extended { return extendedConfiguration(site, ports: ports) }
    return siteSection(site) + """

      [[bridge_domain]]
      vni = \(vni)
      ports = [\(ports)]
      flood = [\(flood)]
      learning = true
      \(bgpSection)
      """
  }

  /// The `[site]` table every lab site starts with.
  func siteSection(_ site: Int) -> String {
    """
    # vxswitch lab, site \(site) of \(sites) (generated by `vxswitch lab`).
    [site]
    name = "site-\(site)"
    vtep = "\(vtep(site))"
    underlay = "ul"
    udp_port = \(udpPort)
    mtu = 1500
    aging_time = \(agingTime ?? (partition ? 30 : 300))
    control_socket = "\(socketPath(site))"
    \(workers == 1 ? "" : "workers = \(workers)\n")
    """ + interfaceSection
  }

  /// `[[interface]]` tables giving every interface of a site the lab's port type.
  var interfaceSection: String {
    guard choosesPortTypes else { return "" }
    return (["ul"] + (1...vmsPerSite).map { "vm\($0)" }).map {
      "[[interface]]\nname = \"\($0)\"\nio = \"\(portIO(of: $0).rawValue)\"\n\n"
    }.joined()
  }

  /// `--partition`: the cut outlasts the hold time and the graceful-restart time, so the
  /// sessions go down and the routes enter the long-lived phase (RFC 9494) while cut.
  var partitionTimers: String {
    """
    hold_time = 9
    stale_time = 3
    long_lived_stale_time = 3600

    """
  }

  /// An extended lab's site: a named network on the site's own VNI (100 + site number),
  /// no flood list, no `[bgp]`; `[peering]` with this site's certificate, and every other
  /// site as a site peer. Extending the network is asked through the API once the sites run.
  func extendedConfiguration(_ site: Int, ports: String) -> String {
    var text =
      siteSection(site) + """

        [[bridge_domain]]
        name = "net1"
        vni = \(100 + site)
        ports = [\(ports)]
        learning = true
        arp_suppression = \(partition)

        [peering]
        listen = "\(hostPort(site, peeringPort))"
        tls_cert = "\(pkiDirectory)/site-\(site).pem"
        tls_key = "\(pkiDirectory)/site-\(site).key"
        tls_ca = "\(pkiDirectory)/ca.pem"
        \(partition ? partitionTimers : "")
        """
    for other in allSites where other != site {
      text += """

        [[site_peer]]
        name = "site-\(other)"
        url = "https://\(hostPort(other, peeringPort))"

        """
    }
    return text
  }
}
