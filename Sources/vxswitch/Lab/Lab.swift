import API
import ControlShim
import Dataplane
import Foundation
import Management
import Peering

/// Builds, checks and removes the lab. Every name carries the lab's prefix, so several
/// labs (e.g. concurrent tests) never touch each other, and `down` removes exactly what
/// `up` made, including after an interrupted run.
final class Lab {
  let topology: LabTopology
  /// The extension `up` created (extended labs).
  var extensionID: ExtensionID?
  let executable: String
  var log: (String) -> Void = { print($0) }

  init(topology: LabTopology, executable: String) {
    self.topology = topology
    self.executable = executable
  }

  var namespaces: [String] {
    [topology.backbone] + topology.allSites.map(topology.siteNamespace)
      + topology.allVMs.map { topology.vmNamespace($0.site, $0.vm) }
  }

  // MARK: Up

  /// The start of the error `--tagged-vm` reports on a kernel built without 802.1Q where
  /// the tc programs that stand in for a VLAN device cannot be attached either.
  static let noVLANDevices = "this kernel has no 802.1Q VLAN devices (CONFIG_VLAN_8021Q)"

  func up() throws {
    down(quiet: true)
    let t = topology
    try FileManager.default.createDirectory(atPath: t.stateDirectory, withIntermediateDirectories: true)
    for namespace in namespaces { try Shell.run(["ip", "netns", "add", namespace]) }
    for namespace in namespaces { try Shell.inNamespace(namespace, ["ip", "link", "set", "lo", "up"]) }
    try Shell.inNamespace(t.backbone, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    try Shell.inNamespace(t.backbone, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
    let family = t.ipv6Underlay ? "-6" : "-4"
    for site in t.allSites {
      let siteNS = t.siteNamespace(site)
      // Underlay: site "ul" <-> backbone "sN", a routed /24 (or /64) per site.
      try Shell.run([
        "ip", "link", "add", "ul", "netns", siteNS, "type", "veth", "peer", "name", "s\(site)", "netns",
        t.backbone,
      ])
      let noDAD = t.ipv6Underlay ? ["nodad"] : []
      try Shell.inNamespace(
        t.backbone,
        ["ip", family, "addr", "add", "\(t.gateway(site))/\(t.underlayPrefixLength)", "dev", "s\(site)"]
          + noDAD)
      try Shell.inNamespace(t.backbone, ["ip", "link", "set", "s\(site)", "up"])
      // The site-to-site link carries MTU-sized frames, as a wire does: without this a
      // veth passes a kernel vxlan site's 64 KiB tunnel super-frames, and a vxswitch
      // site's UDP GSO frames, through unsegmented.
      // (The VMs keep their default offloads: vxswitch segments what they send.)
      for (namespace, device) in [(siteNS, "ul"), (t.backbone, "s\(site)")] {
        try Shell.inNamespace(
          namespace,
          [
            "ethtool", "-K", device, "tso", "off", "gso", "off", "tx-udp_tnl-segmentation", "off",
            "tx-udp_tnl-csum-segmentation", "off", "tx-udp-segmentation", "off",
          ])
      }
      try Shell.inNamespace(
        siteNS,
        ["ip", family, "addr", "add", "\(t.vtep(site))/\(t.underlayPrefixLength)", "dev", "ul"] + noDAD)
      try Shell.inNamespace(siteNS, ["ip", "link", "set", "ul", "up"])
      // Experimental: GRO on the site's end of the underlay, as a NIC has by default.
      if ProcessInfo.processInfo.environment["VXSWITCH_LAB_UNDERLAY_GRO"] == "on" {
        try Shell.inNamespace(siteNS, ["ethtool", "-K", "ul", "gro", "on"])
      }
      try Shell.inNamespace(siteNS, ["ip", family, "route", "add", "default", "via", t.gateway(site)])
      for vm in 1...t.vmsPerSite {
        let vmNS = t.vmNamespace(site, vm)
        try Shell.run([
          "ip", "link", "add", "vm\(vm)", "netns", siteNS, "type", "veth", "peer", "name", "eth0", "netns",
          vmNS,
        ])
        try Shell.inNamespace(siteNS, ["ip", "link", "set", "vm\(vm)", "up"])
        try Shell.inNamespace(
          vmNS, ["ip", "link", "set", "eth0", "address", t.vmMAC(site, vm), "mtu", "\(t.vmMTU)"])
        try Shell.inNamespace(vmNS, ["ip", "link", "set", "eth0", "up"])
        var device = "eth0"
        if let vlan = t.vlan(site, vm) {
          // A VM on a trunk: its frames (super-frames included) carry an 802.1Q tag, from
          // a VLAN device or, on a kernel without them, from tc programs on eth0.
          if (try? Shell.inNamespace(
            vmNS,
            ["ip", "link", "add", "link", "eth0", "name", "eth0.\(vlan)", "type", "vlan", "id", "\(vlan)"]))
            != nil
          {
            device = "eth0.\(vlan)"
            try Shell.inNamespace(
              vmNS, ["ip", "link", "set", device, "address", t.vmMAC(site, vm), "mtu", "\(t.vmMTU)", "up"])
          } else {
            do {
              try NetworkNamespace.run(vmNS) { try VLANTagging.attach(interface: "eth0", vlan: UInt16(vlan)) }
            } catch {
              throw LabError(
                "\(Self.noVLANDevices), and tagging eth0 with tc programs failed too: \(error)")
            }
          }
        }
        try Shell.inNamespace(vmNS, ["ip", "addr", "add", "\(t.vmAddress(site, vm))/24", "dev", device])
      }
    }
    if t.bgp { try startRouteReflector() }
    if t.extended { try issueCertificates() }
    for site in t.allSites {
      if t.runsVXSwitch(site) {
        try startVXSwitch(site)
      } else {
        try startKernelBridge(site)
      }
    }
    for site in t.allSites where t.runsVXSwitch(site) { try waitForDaemon(site) }
    if t.extended { try extendNetwork() }
  }

  /// A site CA and one certificate per site (subject alternative name = the site's name).
  private func issueCertificates() throws {
    let t = topology
    // A new CA per lab run: the lab's own directory, nothing else holds its keys.
    try? FileManager.default.removeItem(atPath: t.pkiDirectory)
    let ca = try SiteCA.create(name: "vxswitch lab \(t.prefix) sites CA")
    try ca.write(to: t.pkiDirectory)
    for site in t.allSites { try ca.issue(site: "site-\(site)").write(to: t.pkiDirectory, ca: ca) }
    log("site CA and certificates for \(t.sites) sites in \(t.pkiDirectory)")
  }

  /// Asks site 1, once, through its API, to extend net1 to the other members; waits until
  /// every member joined and prints the extension as `vxswitch extensions` does.
  private func extendNetwork() throws {
    let t = topology
    let sites = t.members.filter { $0 != 1 }.map { "site-\($0)" }
    let body = try JSONSerialization.data(withJSONObject: ["network": "net1", "sites": sites])
    let client = APIClient(.unixSocket(t.socketPath(1)))
    var status = try APICoding.decoder.decode(
      ExtensionStatus.self, from: client.request(.POST, "/v1/extensions", body: body).body)
    log("site 1: POST /v1/extensions {network: net1, sites: \(sites)} -> \(status.id)")
    let deadline = Date().addingTimeInterval(60)
    while status.members.contains(where: { $0.state != .joined }) && Date() < deadline {
      usleep(200_000)
      status = try client.get("/v1/extensions/\(status.id)", as: ExtensionStatus.self)
    }
    extensionID = status.id
    log(ExtensionTable.render([status]))
    guard !status.members.contains(where: { $0.state != .joined }) else {
      throw LabError("extension \(status.id) did not complete within 60 s")
    }
  }

  private func startVXSwitch(_ site: Int) throws {
    let t = topology
    try t.configuration(site).write(toFile: t.configPath(site), atomically: true, encoding: .utf8)
    let pid = try Shell.spawn(
      ["ip", "netns", "exec", t.siteNamespace(site), executable, "run", "--config", t.configPath(site)],
      log: t.logPath(site))
    try "\(pid)\n".write(toFile: t.pidPath(site), atomically: true, encoding: .utf8)
    log("site \(site): vxswitch run (pid \(pid)) in \(t.siteNamespace(site)), VTEP \(t.vtep(site))")
  }

  /// The same job done the Linux way: a bridge with the access veths and a vxlan device
  /// whose all-zeros FDB entries are the static flood list.
  private func startKernelBridge(_ site: Int) throws {
    let t = topology
    let ns = t.siteNamespace(site)
    try Shell.inNamespace(ns, ["ip", "link", "add", "br\(t.vni)", "type", "bridge"])
    try Shell.inNamespace(
      ns,
      [
        "ip", "link", "add", "vxlan\(t.vni)", "type", "vxlan", "id", "\(t.vni)", "local", t.vtep(site),
        "dstport",
        "\(t.udpPort)", "dev", "ul",
      ])
    try Shell.inNamespace(ns, ["ip", "link", "set", "vxlan\(t.vni)", "master", "br\(t.vni)", "up"])
    for vm in 1...t.vmsPerSite {
      try Shell.inNamespace(ns, ["ip", "link", "set", "vm\(vm)", "master", "br\(t.vni)"])
    }
    try Shell.inNamespace(ns, ["ip", "link", "set", "br\(t.vni)", "up"])
    for other in t.allSites where other != site {
      try Shell.inNamespace(
        ns,
        [
          "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan\(t.vni)", "dst", t.vtep(other),
        ])
    }
    log("site \(site): Linux bridge br\(t.vni) + kernel vxlan\(t.vni) in \(ns), VTEP \(t.vtep(site))")
  }

  static let gobgpdPath = ["/usr/bin/gobgpd", "/usr/local/bin/gobgpd"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }
  static let gobgpPath = ["/usr/bin/gobgp", "/usr/local/bin/gobgp"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }

  /// gobgpd in the backbone namespace as route reflector for every site; started by
  /// PID (recorded for `down`), ready when its API answers.
  private func startRouteReflector() throws {
    let t = topology
    guard let daemon = Self.gobgpdPath, let cli = Self.gobgpPath else {
      throw LabError("--bgp needs gobgpd and gobgp (Debian package gobgpd)")
    }
    try t.gobgpdConfiguration().write(toFile: t.gobgpdConfigPath, atomically: true, encoding: .utf8)
    let pid = try Shell.spawn(
      [
        "ip", "netns", "exec", t.backbone, daemon, "-f", t.gobgpdConfigPath, "--api-hosts",
        "127.0.0.1:\(t.gobgpdAPIPort)", "--log-level", "info",
      ], log: t.gobgpdLogPath)
    try "\(pid)\n".write(toFile: t.gobgpdPIDPath, atomically: true, encoding: .utf8)
    let deadline = Date().addingTimeInterval(20)
    while Date() < deadline {
      if Shell.succeeds(["ip", "netns", "exec", t.backbone, cli, "-p", "\(t.gobgpdAPIPort)", "global"]) {
        log("backbone: gobgpd route reflector (pid \(pid)) in \(t.backbone), AS \(t.asn)")
        return
      }
      if kill(pid, 0) != 0 { break }
      usleep(100_000)
    }
    let logText = (try? String(contentsOfFile: t.gobgpdLogPath, encoding: .utf8)) ?? ""
    throw LabError("gobgpd did not come up; its log (\(t.gobgpdLogPath)):\n\(logText.suffix(3000))")
  }

  /// `gobgp ARGS...` against the lab's route reflector.
  func gobgp(_ arguments: [String]) -> String? {
    guard let cli = Self.gobgpPath else { return nil }
    return try? Shell.run(
      ["ip", "netns", "exec", topology.backbone, cli, "-p", "\(topology.gobgpdAPIPort)"] + arguments)
  }

  /// `GET path` on the site daemon's control socket; nil when it does not answer.
  func api(_ site: Int, _ path: String) -> Data? {
    try? APIClient(.unixSocket(topology.socketPath(site))).request(.GET, path).body
  }

  /// Waits until the daemon answers on its control socket (or died: then its log says why).
  private func waitForDaemon(_ site: Int) throws {
    let t = topology
    let deadline = Date().addingTimeInterval(20)
    while Date() < deadline {
      if api(site, "/v1/statistics") != nil {
        return
      }
      if let pid = readPID(site), kill(pid, 0) != 0 { break }
      usleep(50_000)
    }
    let logText = (try? String(contentsOfFile: t.logPath(site), encoding: .utf8)) ?? ""
    throw LabError("site \(site): vxswitch did not come up; its log (\(t.logPath(site))):\n\(logText)")
  }

  private func readPID(_ site: Int) -> Int32? {
    (try? String(contentsOfFile: topology.pidPath(site), encoding: .utf8))
      .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
  }

  // MARK: Down

  /// Stops the lab's daemons (by the PIDs it recorded) and deletes its namespaces.
  func down(quiet: Bool = false) {
    let t = topology
    for site in t.allSites {
      guard let pid = readPID(site) else { continue }
      // Only a process that still is our vxswitch: PIDs get reused.
      let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
      if command.contains("vxswitch") && command.contains(t.configPath(site)) {
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
      }
      try? FileManager.default.removeItem(atPath: t.pidPath(site))
    }
    // The route reflector, if this lab had one (same PID-reuse guard).
    if let text = try? String(contentsOfFile: t.gobgpdPIDPath, encoding: .utf8),
      let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    {
      let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
      if command.contains("gobgpd") && command.contains(t.gobgpdConfigPath) {
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
      }
      try? FileManager.default.removeItem(atPath: t.gobgpdPIDPath)
    }
    let existing = Set(
      ((try? Shell.run(["ip", "netns", "list"])) ?? "").split(separator: "\n").map {
        String($0.split(separator: " ").first ?? "")
      })
    for namespace in existing where namespace == t.backbone || namespace.hasPrefix("\(t.prefix)-s") {
      _ = Shell.succeeds(["ip", "netns", "delete", namespace])
    }
    // Configurations, logs, certificates and the daemons' state and restart records: the
    // next lab starts afresh (a restart record left behind would make its daemons restore
    // this lab's MACs as a graceful restart).
    try? FileManager.default.removeItem(atPath: t.stateDirectory)
    if !quiet { log("lab \(t.prefix): removed") }
  }

  // MARK: Checks

  struct CheckResult {
    var name: String
    var passed: Bool
    var detail: String
  }

  func check() -> [CheckResult] {
    let t = topology
    if t.extended { return extendedChecks() }
    var results: [CheckResult] = []
    if t.bgp {
      for site in t.allSites where t.runsVXSwitch(site) { results.append(bgpConvergenceCheck(site)) }
    }
    for (source, destination) in t.allVMs.flatMap({ a in t.allVMs.filter { $0 != a }.map { (a, $0) } }) {
      let name = "ping s\(source.site)-vm\(source.vm) -> s\(destination.site)-vm\(destination.vm)"
      // Up to three tries: the first frames towards a VTEP are dropped (and counted as
      // no_next_hop) while its underlay next hop is still being resolved.
      let ok = (0..<3).contains { _ in
        Shell.succeeds([
          "ip", "netns", "exec", t.vmNamespace(source.site, source.vm), "ping", "-c", "1", "-W", "2", "-q",
          t.vmAddress(destination.site, destination.vm),
        ])
      }
      results.append(CheckResult(name: name, passed: ok, detail: ok ? "" : "no reply"))
    }
    results.append(contentsOf: transferChecks(server: (t.sites, t.vmsPerSite)))
    if t.vmMTU > t.usableVMMTU { results.append(pathMTUCheck(server: (t.sites, t.vmsPerSite))) }
    if t.underlayPortIO == .afPacket && t.runsVXSwitch(1)
      && ProcessInfo.processInfo.environment["VXSWITCH_UNDERLAY_GSO"] != "off"
    {
      results.append(underlayGSOCheck())
    }
    if t.io == .afPacket && t.runsVXSwitch(t.sites)
      && ProcessInfo.processInfo.environment["VXSWITCH_TCP_COALESCING"] != "off"
    {
      results.append(coalescingCheck(site: t.sites))
    }
    for site in t.allSites where t.choosesPortTypes && t.runsVXSwitch(site) {
      results.append(portTypeCheck(site))
    }
    for site in Set([1, t.sites]).sorted() where t.sendsInPlace && t.runsVXSwitch(site) {
      results.append(inPlaceCheck(site))
    }
    for site in t.allSites where t.runsVXSwitch(site) {
      // Type-2 routes of MACs learnt during the pings travel through the route
      // reflector: give them a moment.
      var result = fdbCheck(site)
      let deadline = Date().addingTimeInterval(t.bgp ? 15 : 0)
      while !result.passed && Date() < deadline {
        usleep(200_000)
        result = fdbCheck(site)
      }
      results.append(result)
    }
    for kernel in t.kernelSites.sorted() { results.append(kernelFDBCheck(kernel)) }
    return results
  }

  /// TCP transfers between VMs on two sites, one each way, content verified end to end.
  /// The VMs keep their default offloads, so each side sends TSO super-frames.
  private func transferChecks(server: (site: Int, vm: Int)) -> [CheckResult] {
    let t = topology
    let far = (t.vmNamespace(server.site, server.vm), t.vmAddress(server.site, server.vm))
    let near = (t.vmNamespace(1, 1), t.vmAddress(1, 1))
    return [
      (near, far, "s1-vm1 -> s\(server.site)-vm\(server.vm)"),
      (far, near, "s\(server.site)-vm\(server.vm) -> s1-vm1"),
    ]
    .map { client, listener, label in
      let name = "tcp transfer \(label), \(t.transferMiB) MiB, content compared byte for byte"
      do {
        let result = try LabTransfer.run(
          executable: executable, serverNamespace: listener.0, serverAddress: listener.1,
          clientNamespace: client.0, bytes: t.transferMiB << 20, port: 5001, stateDirectory: t.stateDirectory)
        return CheckResult(name: name, passed: result.matches, detail: result.summary)
      } catch {
        return CheckResult(name: name, passed: false, detail: "\(error)")
      }
    }
  }

  /// The transfers' receiving site handed their segments to the VM as TCP super-frames.
  private func coalescingCheck(site: Int) -> CheckResult {
    let statistics =
      api(site, "/v1/statistics").flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
      ?? [:]
    let superFrames = statistics["tcp_coalesced_super_frames"] as? Int ?? 0
    let segments = statistics["tcp_coalesced_segments"] as? Int ?? 0
    return CheckResult(
      name: "TCP coalescing: site \(site) handed the transfers to its VM as super-frames",
      passed: superFrames > 0 && segments >= 2 * superFrames,
      detail: "\(segments) segments in \(superFrames) super-frames")
  }

  /// Site 1 sent the transfer's segments as UDP GSO frames, and the link to the backbone
  /// carried them as MTU-sized datagrams: the backbone's end of that link received at
  /// least as many frames as the datagrams those GSO frames held, none of them larger
  /// than the underlay MTU allows on average.
  private func underlayGSOCheck() -> CheckResult {
    let t = topology
    let statistics =
      api(1, "/v1/statistics").flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
      ?? [:]
    let frames = statistics["underlay_gso_frames"] as? Int ?? 0
    let datagrams = statistics["underlay_gso_datagrams"] as? Int ?? 0
    func counter(_ name: String) -> Int {
      let text = try? Shell.inNamespace(t.backbone, ["cat", "/sys/class/net/s1/statistics/\(name)"])
      return Int((text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
    let received = counter("rx_packets")
    let bytes = counter("rx_bytes")
    let average = received == 0 ? 0 : bytes / received
    return CheckResult(
      name: "underlay UDP GSO: site 1's GSO frames reach the backbone as MTU-sized datagrams",
      passed: frames > 0 && datagrams > frames && received >= datagrams && average <= 1514,
      detail:
        "site 1 sent \(datagrams) datagrams in \(frames) GSO frames; the backbone received \(received) frames of \(average) bytes on average"
    )
  }

  /// `--io af_xdp`, `--underlay-io af_xdp`: every port of the site opened as asked (`show
  /// ports`), none fell back.
  private func portTypeCheck(_ site: Int) -> CheckResult {
    let t = topology
    let ports =
      api(site, "/v1/ports").flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }?[
        "ports"] as? [[String: Any]] ?? []
    let types = ports.map { "\($0["name"] as? String ?? "?")=\($0["io"] as? String ?? "-")" }
    let expected = t.underlayIO.map { "\(t.io.rawValue), underlay \($0.rawValue)" } ?? t.io.rawValue
    return CheckResult(
      name: "site \(site) ports are \(expected) (no fallback)",
      passed: !ports.isEmpty
        && ports.allSatisfy { $0["io"] as? String == t.portIO(of: $0["name"] as? String ?? "").rawValue },
      detail: types.joined(separator: " "))
  }

  /// `--io af_xdp` with one worker: the site's AF_XDP ports share a UMEM, and the frames
  /// of the transfers above left every port from the chunk they were received in
  /// (`ring.sent_in_place` in `GET /v1/ports`).
  private func inPlaceCheck(_ site: Int) -> CheckResult {
    let ports =
      api(site, "/v1/ports").flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }?[
        "ports"] as? [[String: Any]] ?? []
    let sent = ports.map {
      (
        name: $0["name"] as? String ?? "?",
        count: ($0["ring"] as? [String: Any])?["sent_in_place"] as? Int ?? 0
      )
    }
    return CheckResult(
      name: "site \(site) sends frames in place (its AF_XDP ports share one UMEM)",
      passed: !sent.isEmpty && sent.allSatisfy { $0.count > 0 },
      detail: sent.map { "\($0.name)=\($0.count)" }.joined(separator: " "))
  }

  /// With VMs whose MTU is larger than the underlay allows, the transfers above only
  /// complete through path MTU discovery: site 1 answered its VM's too-big frames with
  /// ICMP Fragmentation Needed (counted), and the VM's kernel holds the usable MTU for the
  /// destination in its route cache.
  private func pathMTUCheck(server: (site: Int, vm: Int)) -> CheckResult {
    let t = topology
    let name = "path MTU discovery: VMs at MTU \(t.vmMTU) over a \(t.usableVMMTU)-byte path"
    let replies =
      api(1, "/v1/statistics")
      .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
      .flatMap { $0["path_mtu_replies"] as? Int } ?? 0
    let route =
      (try? Shell.inNamespace(
        t.vmNamespace(1, 1), ["ip", "route", "get", t.vmAddress(server.site, server.vm)])) ?? ""
    let learnt = route.contains("mtu \(t.usableVMMTU)")
    return CheckResult(
      name: name, passed: replies > 0 && learnt,
      detail: "site 1 sent \(replies) ICMP Fragmentation Needed; s1-vm1 route: "
        + route.split(separator: "\n").joined(separator: " "))
  }

  /// An extended lab: members' VMs reach each other, the non-member's reach none of them
  /// and the non-member holds nothing of the extension; members' FDBs hold every member VM,
  /// remote ones from BGP EVPN behind the right VTEP.
  private func extendedChecks() -> [CheckResult] {
    let t = topology
    var results: [CheckResult] = []
    let client = APIClient(.unixSocket(t.socketPath(1)))
    let status = extensionID.flatMap { try? client.get("/v1/extensions/\($0)", as: ExtensionStatus.self) }
    results.append(
      CheckResult(
        name: "extension of net1 from site 1: every member joined, VNI and route target negotiated",
        passed: status.map { !$0.members.contains { $0.state != .joined } && $0.vni != nil } ?? false,
        detail: status.map { "VNI \($0.vni.map(String.init) ?? "-"), RT \($0.routeTarget ?? "-")" }
          ?? "no extension"))
    let memberVMs = t.allVMs.filter { t.members.contains($0.site) }
    for (source, destination) in memberVMs.flatMap({ a in memberVMs.filter { $0 != a }.map { (a, $0) } }) {
      let name = "ping s\(source.site)-vm\(source.vm) -> s\(destination.site)-vm\(destination.vm)"
      let ok = (0..<3).contains { _ in
        Shell.succeeds([
          "ip", "netns", "exec", t.vmNamespace(source.site, source.vm), "ping", "-c", "1", "-W", "2", "-q",
          t.vmAddress(destination.site, destination.vm),
        ])
      }
      results.append(CheckResult(name: name, passed: ok, detail: ok ? "" : "no reply"))
    }
    results.append(contentsOf: transferChecks(server: (t.members.last!, t.vmsPerSite)))
    for site in t.allSites where t.choosesPortTypes { results.append(portTypeCheck(site)) }
    for site in Set([1, t.members.last!]).sorted() where t.sendsInPlace && t.runsVXSwitch(site) {
      results.append(inPlaceCheck(site))
    }
    for site in t.members {
      var result = extendedFDBCheck(site)
      let deadline = Date().addingTimeInterval(15)
      while !result.passed && Date() < deadline {
        usleep(200_000)
        result = extendedFDBCheck(site)
      }
      results.append(result)
    }
    for site in t.nonMembers {
      var reached: [String] = []
      for vm in 1...t.vmsPerSite {
        for target in memberVMs
        where Shell.succeeds([
          "ip", "netns", "exec", t.vmNamespace(site, vm), "ping", "-c", "1", "-W", "1", "-q",
          t.vmAddress(target.site, target.vm),
        ]) {
          reached.append("s\(site)-vm\(vm) -> s\(target.site)-vm\(target.vm)")
        }
      }
      results.append(
        CheckResult(
          name: "site \(site) (not a member) reaches no VM of the extension", passed: reached.isEmpty,
          detail: reached.joined(separator: ", ")))
      let other = APIClient(.unixSocket(t.socketPath(site)))
      var held: [String] = []
      if let list = try? other.get("/v1/extensions", as: ExtensionList.self), !list.extensions.isEmpty {
        held.append("extensions \(list.extensions.map(\.id))")
      }
      let macs = Set(memberVMs.map { t.vmMAC($0.site, $0.vm) })
      let entries = (try? other.get("/v1/fdb?limit=10000", as: FDBList.self))?.entries ?? []
      held += entries.filter { macs.contains($0.mac) }.map { "FDB \($0.mac)" }
      let domains = (try? other.get("/v1/bridge-domains", as: BridgeDomainList.self))?.bridgeDomains ?? []
      if let vni = status?.vni, domains.contains(where: { $0.vni == vni }) { held.append("VNI \(vni)") }
      let sessions = (try? other.request(.GET, "/v1/bgp").body).flatMap {
        try? JSONDecoder().decode(SpeakerStatus.self, from: $0)
      }
      if let sessions, !sessions.peers.isEmpty { held.append("BGP peers \(sessions.peers.map(\.name))") }
      results.append(
        CheckResult(
          name: "site \(site) holds nothing of the extension (no state, no MAC, no VNI, no session)",
          passed: held.isEmpty, detail: held.joined(separator: ", ")))
    }
    if t.partition { results += partitionChecks() }
    if let id = extensionID, let outsider = t.nonMembers.first {
      results += membershipChanges(id, outsider: outsider, status: status)
    }
    return results
  }

  /// The owner adds the non-member (its VMs then reach the members'), removes it again (it
  /// is cleaned up), and deletes the extension (every site cleans up).
  private func membershipChanges(_ id: ExtensionID, outsider: Int, status: ExtensionStatus?) -> [CheckResult]
  {
    let t = topology
    let owner = APIClient(.unixSocket(t.socketPath(1)))
    func waitSettled(_ condition: (ExtensionStatus?) -> Bool) -> ExtensionStatus? {
      let deadline = Date().addingTimeInterval(30)
      var current = try? owner.get("/v1/extensions/\(id)", as: ExtensionStatus.self)
      while !condition(current) && Date() < deadline {
        usleep(200_000)
        current = try? owner.get("/v1/extensions/\(id)", as: ExtensionStatus.self)
      }
      return current
    }
    func reaches(_ source: (Int, Int), _ destination: (Int, Int)) -> Bool {
      (0..<5).contains { _ in
        Shell.succeeds([
          "ip", "netns", "exec", t.vmNamespace(source.0, source.1), "ping", "-c", "1", "-W", "2", "-q",
          t.vmAddress(destination.0, destination.1),
        ])
      }
    }
    var results: [CheckResult] = []
    let body = try? JSONSerialization.data(withJSONObject: ["sites": ["site-\(outsider)"]])
    _ = try? owner.request(.POST, "/v1/extensions/\(id)/members", body: body)
    let added = waitSettled {
      $0?.members.count == t.members.count + 1 && $0?.members.allSatisfy { $0.state == .joined } == true
    }
    let reached = reaches((outsider, 1), (1, 1)) && reaches((outsider, 1), (2, 1))
    results.append(
      CheckResult(
        name: "site \(outsider) added to the extension: joined, its VMs reach site 1's and site 2's",
        passed: added?.members.allSatisfy { $0.state == .joined } == true && reached,
        detail: (added?.members.map { "\($0.site) \($0.state.rawValue)" } ?? []).joined(separator: ", ")
          + (reached ? "" : "; VMs do not reach")))
    _ = try? owner.request(.DELETE, "/v1/extensions/\(id)/members/site-\(outsider)")
    let removed = waitSettled { $0?.members.count == t.members.count }
    let networks =
      (try? APIClient(.unixSocket(t.socketPath(outsider))).get("/v1/networks", as: NetworkList.self))?
      .networks ?? []
    let cleaned =
      networks.first { $0.name == "net1" }.map { !$0.extended && $0.vni == UInt32(100 + outsider) } ?? false
    results.append(
      CheckResult(
        name: "site \(outsider) removed again: its net1 is back on its own VNI, not extended",
        passed: removed?.members.count == t.members.count && cleaned,
        detail: cleaned
          ? "" : networks.map { "\($0.name) VNI \($0.vni) extended \($0.extended)" }.joined(separator: ", ")))
    _ = try? owner.request(.DELETE, "/v1/extensions/\(id)")
    _ = waitSettled { $0 == nil }
    var leftovers: [String] = []
    for site in t.allSites {
      let client = APIClient(.unixSocket(t.socketPath(site)))
      if let list = try? client.get("/v1/extensions", as: ExtensionList.self), !list.extensions.isEmpty {
        leftovers.append("site \(site): \(list.extensions.map(\.id))")
      }
      if let net = (try? client.get("/v1/networks", as: NetworkList.self))?.networks.first(where: {
        $0.name == "net1"
      }),
        net.extended || net.vni != UInt32(100 + site)
      {
        leftovers.append("site \(site): net1 VNI \(net.vni) extended \(net.extended)")
      }
    }
    results.append(
      CheckResult(
        name: "extension deleted: every site cleaned up (no extension, net1 on its own VNI)",
        passed: leftovers.isEmpty,
        detail: leftovers.joined(separator: "; ")))
    return results
  }

  /// Every member VM is in a member site's FDB: local ones on their port, remote ones
  /// behind their site's VTEP from BGP EVPN (origin control).
  private func extendedFDBCheck(_ site: Int) -> CheckResult {
    let t = topology
    let name = "site \(site) FDB has every member VM, remote ones from BGP EVPN behind the right VTEP"
    guard
      let entries =
        (try? APIClient(.unixSocket(t.socketPath(site))).get("/v1/fdb?limit=10000", as: FDBList.self))?
        .entries
    else { return CheckResult(name: name, passed: false, detail: "no answer") }
    var missing: [String] = []
    for (vmSite, vm) in t.allVMs where t.members.contains(vmSite) {
      let mac = t.vmMAC(vmSite, vm)
      guard let entry = entries.first(where: { $0.mac == mac }) else {
        missing.append("\(mac) absent")
        continue
      }
      if vmSite == site {
        if entry.port != t.portName(site, vm) { missing.append("\(mac) not on \(t.portName(site, vm))") }
      } else if entry.vtep != t.vtep(vmSite) || entry.origin != "control" {
        missing.append("\(mac): \(entry.origin) \(entry.vtep ?? "-")")
      }
    }
    return CheckResult(name: name, passed: missing.isEmpty, detail: missing.joined(separator: "; "))
  }

  /// Every remote VM's MAC is in the site's FDB, learned from decapsulation, behind the
  /// right VTEP; every local VM's MAC behind its port.
  private func fdbCheck(_ site: Int) -> CheckResult {
    let t = topology
    let name = "site \(site) FDB has every VM behind the right port or VTEP"
    guard
      let reply = api(site, "/v1/fdb?limit=10000"),
      let object = try? JSONSerialization.jsonObject(with: reply) as? [String: Any],
      let entries = object["entries"] as? [[String: Any]]
    else { return CheckResult(name: name, passed: false, detail: "no answer on \(t.socketPath(site))") }
    var missing: [String] = []
    for (vmSite, vm) in t.allVMs {
      let mac = t.vmMAC(vmSite, vm)
      guard let entry = entries.first(where: { $0["mac"] as? String == mac }) else {
        missing.append("\(mac) absent")
        continue
      }
      if vmSite == site {
        if entry["port"] as? String != t.portName(site, vm) {
          missing.append("\(mac) not on \(t.portName(site, vm))")
        }
      } else if entry["vtep"] as? String != t.vtep(vmSite) {
        missing.append("\(mac) not behind \(t.vtep(vmSite))")
      } else if t.bgp
        && (entry["origin"] as? String != "control" || entry["peer"] as? String != t.gateway(site))
      {
        missing.append("\(mac) not from BGP (origin \(entry["origin"] ?? "?"), peer \(entry["peer"] ?? "-"))")
      }
    }
    return CheckResult(name: name, passed: missing.isEmpty, detail: missing.joined(separator: "; "))
  }

  /// The site's session with the route reflector is up and its flood list is exactly
  /// the other sites' VTEPs, all from type-3 routes (the configuration has none).
  private func bgpConvergenceCheck(_ site: Int) -> CheckResult {
    let t = topology
    let name = "site \(site) BGP: session with the route reflector Established, flood list from type-3 routes"
    let expected = t.allSites.filter { $0 != site }.map(t.vtep).sorted()
    var detail = ""
    let deadline = Date().addingTimeInterval(30)
    repeat {
      let state =
        api(site, "/v1/bgp")
        .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        .flatMap { ($0["peers"] as? [[String: Any]])?.first?["state"] as? String } ?? "?"
      let flood =
        api(site, "/v1/bridge-domains")
        .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        .flatMap { ($0["bridge_domains"] as? [[String: Any]])?.first?["flood"] as? [String] } ?? []
      if state == "Established" && flood.sorted() == expected {
        return CheckResult(name: name, passed: true, detail: "")
      }
      detail = "session \(state), flood list \(flood.sorted()) (want \(expected))"
      usleep(200_000)
    } while Date() < deadline
    return CheckResult(name: name, passed: false, detail: detail)
  }

  /// The kernel's vxlan device learned vxswitch sites' MACs behind their VTEPs.
  private func kernelFDBCheck(_ site: Int) -> CheckResult {
    let t = topology
    let name = "kernel site \(site): `bridge fdb show` lists vxswitch VMs behind their VTEPs"
    let output =
      (try? Shell.inNamespace(t.siteNamespace(site), ["bridge", "fdb", "show", "dev", "vxlan\(t.vni)"])) ?? ""
    var missing: [String] = []
    for (vmSite, vm) in t.allVMs where vmSite != site {
      let learned = output.split(separator: "\n").contains {
        $0.hasPrefix(t.vmMAC(vmSite, vm)) && $0.contains("dst \(t.vtep(vmSite)) ")
      }
      if !learned { missing.append(t.vmMAC(vmSite, vm)) }
    }
    return CheckResult(
      name: name, passed: missing.isEmpty, detail: missing.isEmpty ? "" : "missing \(missing)")
  }

  func showFDBs() {
    let t = topology
    if t.bgp {
      log("\n== route reflector (gobgp global rib -a evpn in \(t.backbone))")
      log((gobgp(["global", "rib", "-a", "evpn"]) ?? "(no answer)").trimmingCharacters(in: .newlines))
    }
    for site in t.allSites {
      if t.bgp && t.runsVXSwitch(site) {
        log("\n== site \(site) BGP (vxswitch show bgp)")
        let output =
          (try? Shell.run([executable, "show", "bgp", "--socket", t.socketPath(site)])) ?? "(no answer)"
        log(output.trimmingCharacters(in: .newlines))
      }
      log(
        "\n== site \(site) FDB (\(t.runsVXSwitch(site) ? "vxswitch show fdb" : "bridge fdb show dev vxlan\(t.vni)"))"
      )
      if t.runsVXSwitch(site) {
        let output =
          (try? Shell.run([executable, "show", "fdb", "--socket", t.socketPath(site)])) ?? "(no answer)"
        log(output.trimmingCharacters(in: .newlines))
      } else {
        let output =
          (try? Shell.inNamespace(t.siteNamespace(site), ["bridge", "fdb", "show", "dev", "vxlan\(t.vni)"]))
          ?? ""
        log(output.trimmingCharacters(in: .newlines))
      }
    }
  }

  /// The last lines of every vxswitch site's log: what a failed `--check --teardown` leaves
  /// to read once `down()` has removed the state directory.
  func showLogTails(lines: Int = 40) {
    let t = topology
    for site in t.allSites where t.runsVXSwitch(site) {
      let text = (try? String(contentsOfFile: t.logPath(site), encoding: .utf8)) ?? "(no log)"
      log("\n== site \(site) log (last \(lines) lines of \(t.logPath(site)))")
      log(text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n"))
    }
  }
}

struct LabError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}
