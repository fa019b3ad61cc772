import ArgumentParser
import Dataplane
import Foundation

struct LabCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "lab",
    abstract: "A multi-site lab in network namespaces: vxswitch per site, one VNI across all, VMs pinging.",
    discussion: """
      `vxswitch lab` builds the lab (removing any leftover of an earlier run first), starts one
      `vxswitch run` per site, shows VMs pinging each other across sites and every site's FDB, and
      leaves the lab running. `--check` runs the traffic checks and exits non-zero on any failure;
      `--down` removes everything. Needs root.
      """)

  @Flag(help: "Run the traffic checks; exit non-zero on any failure.") var check = false
  @Flag(help: "Remove the lab: stop its daemons, delete its namespaces.") var down = false
  @Flag(help: "Stop and remove the lab after the checks.") var teardown = false
  @Flag(name: .customLong("kernel-peer"), help: "Make the last site a Linux bridge + kernel vxlan device.")
  var kernelPeer = false
  @Flag(
    name: .customLong("kernel-only"),
    help: "Make every site a Linux bridge + kernel vxlan device (the reference Bench tcp compares with).")
  var kernelOnly = false
  @Option(help: "Number of sites (2-9).") var sites = 3
  @Option(help: "Name prefix for namespaces and state (several labs can coexist).") var prefix = "vxl"
  @Flag(name: .customLong("ipv6-underlay"), help: "Use an IPv6 underlay.") var ipv6Underlay = false
  @Option(name: .customLong("udp-port"), help: "VXLAN UDP port (4789 or 8472).") var udpPort: UInt16 = 4789
  @Flag(
    help: """
      BGP EVPN: a gobgpd route reflector in the backbone namespace, iBGP from every site; \
      flood lists from type-3 routes, remote MACs from type-2 routes (no data-plane learning).
      """)
  var bgp = false
  @Flag(
    name: .customLong("static"),
    help:
      "Static flood lists and data-plane learning instead of the inter-site extension (one VNI everywhere).")
  var staticFlood = false
  @Flag(
    help: """
      After the extension checks: cut site 2 off the backbone (local traffic goes on), give one \
      of its VMs an IP address used at site 1 while cut, heal, and show the address conflict \
      reported with the same outcome at both sites and cleared once that VM leaves.
      """)
  var partition = false
  @Flag(
    name: .customLong("tagged-vm"),
    help: "Attach the last VM of every vxswitch site through VLAN 10 (a trunk port member).")
  var taggedVM = false
  @Option(
    name: .customLong("vm-mtu"),
    help: """
      The VMs' MTU (default: the underlay's 1500 less 50, or 70 over IPv6). Larger shows path MTU \
      discovery: vxswitch answers frames that do not fit with ICMP Fragmentation Needed.
      """)
  var vmMTU: Int?
  @Option(
    name: .customLong("transfer-mib"),
    help: "Size of the TCP transfers (one each way) the checks compare byte for byte, in MiB.")
  var transferMiB = 4
  @Option(
    help: """
      Port type of every interface of the vxswitch sites: af_packet, or af_xdp (an XDP program \
      and AF_XDP sockets; the VMs' TSO/GSO go off, which XDP on a veth does to its peer).
      """)
  var io: String = PortIO.afPacket.rawValue
  @Option(
    name: .customLong("underlay-io"),
    help: """
      Port type of the vxswitch sites' underlay only (default: --io's): af_xdp on the \
      underlay with af_packet VM ports keeps the VMs' offloads.
      """)
  var underlayIO: String?
  @Option(help: "Packet workers per vxswitch site (1-8).") var workers = 1
  @Option(
    name: .customLong("aging-time"),
    help: "The sites' MAC aging time in seconds (default 300, or 30 with --partition).")
  var agingTime: Int?

  func validate() throws {
    guard (2...9).contains(sites) else { throw ValidationError("--sites must be 2 to 9") }
    guard prefix.count <= 6, prefix.allSatisfy({ $0.isLetter || $0.isNumber }) else {
      throw ValidationError("--prefix must be 1-6 letters or digits")
    }
    if bgp && (kernelPeer || kernelOnly) {
      throw ValidationError("--bgp and --kernel-peer do not mix (the kernel site speaks no BGP)")
    }
    if let vmMTU, !(1280...9000).contains(vmMTU) { throw ValidationError("--vm-mtu must be 1280 to 9000") }
    if partition && (staticFlood || bgp || kernelPeer || kernelOnly) {
      throw ValidationError("--partition needs the inter-site extension (the default mode)")
    }
    guard (1...1024).contains(transferMiB) else { throw ValidationError("--transfer-mib must be 1 to 1024") }
    if let agingTime, !(1...1_000_000).contains(agingTime) {
      throw ValidationError("--aging-time must be 1 to 1000000 seconds")
    }
    guard PortIO(rawValue: io) != nil else { throw ValidationError("--io must be af_packet or af_xdp") }
    guard (1...8).contains(workers) else { throw ValidationError("--workers must be 1 to 8") }
    if let underlayIO, PortIO(rawValue: underlayIO) == nil {
      throw ValidationError("--underlay-io must be af_packet or af_xdp")
    }
    guard getuid() == 0 else { throw ValidationError("the lab needs root (network namespaces, AF_PACKET)") }
  }

  func run() throws {
    var topology = LabTopology(prefix: prefix, sites: sites)
    topology.ipv6Underlay = ipv6Underlay
    topology.udpPort = udpPort
    if kernelPeer { topology.kernelSites = [sites] }
    if kernelOnly { topology.kernelSites = Set(1...sites) }
    topology.bgp = bgp
    topology.transferMiB = transferMiB
    topology.io = PortIO(rawValue: io) ?? .afPacket
    topology.underlayIO = underlayIO.flatMap(PortIO.init(rawValue:))
    topology.workers = workers
    topology.taggedVM = taggedVM
    topology.partition = partition
    topology.agingTime = agingTime
    topology.vmMTUOverride = vmMTU
    topology.extended = !(staticFlood || bgp || kernelPeer || kernelOnly)
    let lab = Lab(topology: topology, executable: CommandLine.executablePath)
    if down {
      lab.down()
      return
    }
    print(
      "Building lab \(prefix): \(sites) sites, VNI \(topology.vni), \(ipv6Underlay ? "IPv6" : "IPv4") underlay, UDP \(udpPort)\(bgp ? ", BGP EVPN via a gobgpd route reflector" : "")"
    )
    do {
      try lab.up()
    } catch {
      printError("vxswitch lab: \(error)")
      lab.down(quiet: true)
      throw ExitCode(1)
    }
    let results = lab.check()
    let failed = results.filter { !$0.passed }
    for result in results where check || !result.passed || !result.name.hasPrefix("ping") {
      print(
        "\(result.passed ? "ok  " : "FAIL") \(result.name)\(result.detail.isEmpty ? "" : ": \(result.detail)")"
      )
    }
    let pings = results.filter { $0.name.hasPrefix("ping") }
    if topology.extended {
      print(
        "\(pings.filter(\.passed).count)/\(pings.count) VM pairs ping each other across \(topology.members.count) member sites of the extension"
      )
    } else {
      print("\(pings.filter(\.passed).count)/\(pings.count) VM pairs ping each other across \(sites) sites")
    }
    lab.showFDBs()
    print("\n\(results.count - failed.count) passed, \(failed.count) failed")
    if teardown {
      if !failed.isEmpty { lab.showLogTails() }
      lab.down()
    } else {
      print(
        """

        The lab keeps running. Try:
          ip netns exec \(topology.vmNamespace(1, 1)) ping \(topology.vmAddress(sites, 2))
          \(CommandLine.executablePath) show stats --socket \(topology.socketPath(1))
          \(CommandLine.executablePath) lab --down\(prefix == "vxl" ? "" : " --prefix \(prefix)")
        """)
    }
    if check && !failed.isEmpty { throw ExitCode(1) }
  }
}

struct LabTransferCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "lab-transfer", abstract: "Internal: one side of the lab's TCP transfer check.",
    shouldDisplay: false)
  @Option var listen: UInt16?
  @Option var connect: String?
  @Option var port: UInt16 = 5001
  @Option var file: String

  func run() throws {
    if let listen {
      try LabTransfer.listen(port: listen, file: file)
    } else if let connect {
      try LabTransfer.connect(address: connect, port: port, file: file)
    } else {
      throw ValidationError("--listen PORT or --connect ADDRESS")
    }
  }
}

extension CommandLine {
  /// This executable's absolute path (to start more of itself in namespaces).
  static var executablePath: String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? arguments[0]
  }
}
