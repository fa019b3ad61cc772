import Dataplane
import Foundation
import SystemCommand

#if canImport(Glibc)
  import Glibc
#endif

/// `Bench live`: generator -> switch -> sink over veth pairs in three network namespaces
/// (`vxb-<pid>-vm`, `-sw`, `-rem`).
///
///     [vm ns] g0 ==veth== vm1 [sw ns] eth1 ==veth== r0 [rem ns]
///
/// Encap: the generator replays access.pcap into g0; the sink counts r0's rx_packets
/// (VXLAN frames at the remote VTEP). Decap: underlay.pcap into r0; the sink is g0.
/// System A is `vxswitch run --config` inside the sw namespace; system B is a Linux bridge
/// (vm1 + vxlan0, static FDB) doing the same job; system C is the issue's reference, a
/// minimal forwarder (`Bench baseline-forward`: RX ring -> TX ring, prepends or strips a
/// fixed 50-byte header). They alternate, A B C A B C.
///
/// Fair to every system: the generator runs on one CPU (`generatorCPU`), and everything the
/// measured system causes on another (`measuredCPU`): its process (pinned there), the
/// receive work of the two veths it receives on (GRO on and threaded NAPI, the kthreads
/// pinned there, checked before and after every measurement; without NAPI the receive
/// work would run on the generator's CPU) and the softirq work of its transmissions
/// (which runs where it transmits). CPU per frame is the busy time of the measured CPU
/// (`CoreBusyTime`: wall clock minus idle, iowait and steal), plus the system's process time spent elsewhere
/// (none while it is pinned), for every system alike.
///
/// Every address used (inner 10.200/16 and 10.201/16, VTEPs 10.202.0.1/.2) is assigned
/// inside these namespaces: the inner ones as local routes on the namespaces' `lo`.
final class LiveBench {
  struct Options {
    var sizes: [FrameSize] = [.fixed(64), .fixed(512), .fixed(1518)]
    var directions: [Direction] = [.encap, .decap]
    var repetitions = 3
    var duration = 3.0
    var rate = 0
    var sources = 16
    var destinations = 16
    var vxswitch = ".build/release/vxswitch"
    var keepDirectory = false
    /// "builtin" (`Bench send`: AF_PACKET sendmmsg) or "tcpreplay".
    var generator = "builtin"
    var systems: [System] = [.vxswitch, .vxswitchXDP, .bridge, .baseline, .baselineXDP]
    /// The generator's CPU and the measured system's: by default the first and the last
    /// CPU this process may use.
    var generatorCPU = CoreBusyTime.allowedCPUs().first ?? 0
    var measuredCPU = CoreBusyTime.allowedCPUs().last ?? 0
    /// Bisect the largest offered rate with < `RateSearch.lossLimit` loss per system.
    var search = false
    var searchSteps = 6
    var searchDuration = 2.0
    /// What gives the receiving veths their NAPI instance (`ThreadedNAPI.Mode`).
    var receiveNAPI = ThreadedNAPI.Mode.gro
  }

  enum System: String, Codable, CaseIterable {
    case vxswitch, bridge, baseline
    /// vxswitch with AF_XDP ports (`[[interface]] io = "af_xdp"` on both interfaces).
    case vxswitchXDP = "vxswitch-xdp"
    /// The minimal forwarder on AF_XDP ports: that port type's ceiling.
    case baselineXDP = "baseline-xdp"
    /// vxswitch-xdp with two workers sharing each veth's one queue (`SharedUMEM`), both on
    /// the measured CPU: what sharing a queue costs next to one worker.
    case vxswitchXDPTwoWorkers = "vxswitch-xdp-2w"
    /// vxswitch-xdp copying every frame into a transmit slot (`VXSWITCH_XDP_IN_PLACE=off`)
    /// instead of sending it from the chunk it was received in.
    case vxswitchXDPCopy = "vxswitch-xdp-copy"

    var isVXSwitch: Bool {
      self == .vxswitch || self == .vxswitchXDP || self == .vxswitchXDPTwoWorkers || self == .vxswitchXDPCopy
    }
    var usesAFXDP: Bool {
      self == .vxswitchXDP || self == .vxswitchXDPTwoWorkers || self == .vxswitchXDPCopy
        || self == .baselineXDP
    }
  }

  struct Measurement: Codable {
    var system: System
    var direction: Direction
    var frameSize: String
    var repetition: Int
    var seconds: Double
    var offered: UInt64
    var delivered: UInt64
    var deliveredPerSecond: Double
    var lossPercent: Double
    /// Busy time of the measured CPU, plus the process's time elsewhere (see `cpuMethod`).
    var cpuSeconds: Double
    var cpuNsPerFrame: Double
    var cpuMethod: String
    var systemCPUSeconds: Double
    var softirqCPUSeconds: Double
    var outputChecked: Bool
    /// The generator's fixed rate (frames/s), 0 for flat out.
    var offeredRate: Int = 0
    /// utime+stime of the system's process (vxswitch, baseline), 0 for the bridge.
    var processCPUSeconds: Double = 0
    /// Every thread of the process stayed on the measured CPU.
    var processPinned = true
    /// Frames the kernel dropped between the generator and the system: the sending veth's
    /// tx_dropped (the receive NAPI ring was full) and the receiving veth's rx_dropped.
    var kernelDrops: UInt64 = 0
    /// Frames the system's own receive ring or queue dropped, where it reports them
    /// (vxswitch: `ring.drops` of its ports), nil where it does not.
    var ringDrops: UInt64? = nil
  }

  /// `--search` result for one system, direction and size.
  struct SearchResult: Codable {
    var system: System
    var direction: Direction
    var frameSize: String
    /// Largest offered rate (frames/s) whose loss stayed below the limit; 0 if none did.
    var lossFreeRate: Int
    /// Offered frames/s of the flat-out probe (the bisection's upper end).
    var flatOutRate: Int
    /// The flat-out probe itself had no loss: the figure is the generator's limit.
    var generatorBound: Bool
    var probes: [RateSearch.Probe]
  }

  struct Summary: Codable {
    var direction: Direction
    var frameSize: String
    var vxswitchFramesPerSecond: Double?
    var bridgeFramesPerSecond: Double?
    var vxswitchLossPercent: Double?
    var bridgeLossPercent: Double?
    var vxswitchCPUNsPerFrame: Double?
    var bridgeCPUNsPerFrame: Double?
    /// vxswitch / bridge delivered frames/s (medians of the same run).
    var ratio: Double?
    var baselineFramesPerSecond: Double? = nil
    var baselineLossPercent: Double? = nil
    var baselineCPUNsPerFrame: Double? = nil
    /// vxswitch / baseline delivered frames/s (the issue's target: >= 0.95).
    var baselineRatio: Double? = nil
    var xdpFramesPerSecond: Double? = nil
    var xdpLossPercent: Double? = nil
    var xdpCPUNsPerFrame: Double? = nil
    /// vxswitch on AF_XDP / bridge delivered frames/s.
    var xdpRatio: Double? = nil
    var baselineXDPFramesPerSecond: Double? = nil
    var baselineXDPLossPercent: Double? = nil
    var baselineXDPCPUNsPerFrame: Double? = nil
    /// vxswitch on AF_XDP / the minimal AF_XDP forwarder.
    var xdpBaselineRatio: Double? = nil
    var xdpTwoWorkersFramesPerSecond: Double? = nil
    var xdpTwoWorkersCPUNsPerFrame: Double? = nil
    /// vxswitch on AF_XDP, two workers sharing the queue / one worker.
    var xdpTwoWorkersRatio: Double? = nil
    var xdpCopyFramesPerSecond: Double? = nil
    var xdpCopyCPUNsPerFrame: Double? = nil
    /// vxswitch on AF_XDP sending in place / copying.
    var xdpInPlaceOverCopyRatio: Double? = nil
    /// `--search`: largest offered frames/s with < 0.1% loss.
    var vxswitchLossFreeRate: Int? = nil
    var bridgeLossFreeRate: Int? = nil
    var baselineLossFreeRate: Int? = nil
    /// vxswitch / baseline loss-free rate; nil when either is generator-bound.
    var lossFreeBaselineRatio: Double? = nil
  }

  struct Report: Codable {
    var generator: String
    var rate: String
    var vxswitch: String
    var notes: [String]
    var measurements: [Measurement]
    var summary: [Summary]
    var searches: [SearchResult] = []
  }

  let options: Options
  let prefix: String
  let directory: String
  var vmNS: String { prefix + "-vm" }
  var switchNS: String { prefix + "-sw" }
  var remoteNS: String { prefix + "-rem" }
  var plan: TrafficPlan
  private var notes: [String] = []
  private var napi: [ThreadedNAPI] = []
  static var activePrefix: String?
  static var children: [SystemCommand.Child] = []

  init(options: Options) {
    self.options = options
    prefix = "vxb-\(getpid())"
    directory = NSTemporaryDirectory() + prefix
    plan = TrafficPlan()
    plan.sources = options.sources
    plan.destinations = options.destinations
    plan.frames = 4096
  }

  /// The veths' MTU: 9000 for jumbo frames, but a veth takes an XDP program (ours with
  /// `--receive-napi xdp`, vxswitch's for AF_XDP ports) only while its peer's MTU fits a
  /// page (`XDPPassProgram.largestMTU`). Every system gets the same MTU.
  var linkMTU: Int {
    options.receiveNAPI == .xdp
      || options.systems.contains(where: \.usesAFXDP)
      ? XDPPassProgram.largestMTU : 9000
  }

  // MARK: Topology

  func setUp() throws {
    for tool in ["ip", "bridge", "tcpdump"] where !Shell.exists(tool) {
      throw BenchError.failed("\(tool) is not installed")
    }
    guard getuid() == 0 else { throw BenchError.failed("Bench live needs root (network namespaces)") }
    guard options.generatorCPU != options.measuredCPU else {
      throw BenchError.failed(
        "Bench live needs two CPUs: the generator's and the measured system's (both are \(options.measuredCPU))"
      )
    }
    if let largest = options.sizes.map(\.largestFrame).max(), largest + plan.encapOverhead > linkMTU + 14 {
      throw BenchError.failed(
        "--receive-napi \(options.receiveNAPI.rawValue) or vxswitch-xdp: frames of \(largest) bytes do not fit the "
          + "veths' MTU \(linkMTU) once encapsulated")
    }
    LiveBench.activePrefix = prefix
    try Generator.makeDirectory(directory)
    for ns in [vmNS, switchNS, remoteNS] { try Shell.check(["ip", "netns", "add", ns]) }
    let p = String(prefix.dropFirst(4))  // pid, keeps names within 15 characters
    try Shell.check(["ip", "link", "add", "xa\(p)", "type", "veth", "peer", "name", "xb\(p)"])
    try Shell.check(["ip", "link", "set", "xa\(p)", "netns", vmNS, "name", "g0"])
    try Shell.check(["ip", "link", "set", "xb\(p)", "netns", switchNS, "name", TrafficPlan.accessPort])
    try Shell.check(["ip", "link", "add", "xc\(p)", "type", "veth", "peer", "name", "xd\(p)"])
    try Shell.check(["ip", "link", "set", "xc\(p)", "netns", switchNS, "name", TrafficPlan.underlayPort])
    try Shell.check(["ip", "link", "set", "xd\(p)", "netns", remoteNS, "name", "r0"])
    try ip(
      switchNS, "link set \(TrafficPlan.underlayPort) address \(TrafficPlan.underlayMAC) mtu \(linkMTU) up")
    try ip(switchNS, "link set \(TrafficPlan.accessPort) mtu \(linkMTU) up")
    // The sinks only count: frames reach them addressed to another MAC (r0 is not the
    // remote underlay MAC the switches send to; g0 is none of the VM MACs), so the kernel
    // drops them at ip_rcv as PACKET_OTHERHOST after rx_packets and tcpdump's tap, instead
    // of running IP, UDP and ICMP port-unreachable for every frame. That work would
    // otherwise be charged to whichever system's transmit context it ran in.
    try ip(remoteNS, "link set r0 address \(TrafficPlan.sinkMAC) mtu \(linkMTU) up")
    try ip(vmNS, "link set g0 mtu \(linkMTU) up")
    for ns in [vmNS, switchNS, remoteNS] { try ip(ns, "link set lo up") }
    try ip(remoteNS, "addr add \(plan.remoteVTEP)/24 dev r0")
    try ip(remoteNS, "addr add 10.201.0.1/16 dev lo")
    try ip(vmNS, "addr add 10.200.0.1/16 dev lo")
    // The generator must not be slowed by IPv6 autoconfiguration chatter on the links.
    for ns in [vmNS, switchNS, remoteNS] {
      Shell.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
    }
    let xdpObject = options.receiveNAPI == .xdp ? try XDPPassProgram.compile(into: directory) : nil
    napi = try [TrafficPlan.accessPort, TrafficPlan.underlayPort].map {
      try ThreadedNAPI.enable(
        namespace: switchNS, interface: $0, cpu: options.measuredCPU, mode: options.receiveNAPI,
        xdpObject: xdpObject)
    }
    // A veth hands a frame to its peer's NAPI only if the sending end has TSO off (or the
    // receiving end GRO_FRAGLIST / UDP forwarding GRO); otherwise the peer's receive work
    // runs in the sender's softirq, on the generator's CPU, NAPI or not. The generator's
    // ends send 64-byte to 9000-byte frames, never TSO super-frames: off costs nothing.
    try ip(vmNS, "link set g0 up")
    try Shell.check(["ip", "netns", "exec", vmNS, "ethtool", "-K", "g0", "tso", "off"])
    try Shell.check(["ip", "netns", "exec", remoteNS, "ethtool", "-K", "r0", "tso", "off"])
    notes.append(
      "generator on CPU \(options.generatorCPU); measured system, its process and the threaded NAPI of "
        + "\(TrafficPlan.accessPort) and \(TrafficPlan.underlayPort) (\(options.receiveNAPI.rawValue)) on CPU "
        + "\(options.measuredCPU)")
  }

  /// Throws when the receive set-up no longer holds (checked around every measurement).
  func checkNAPI(_ moment: String) throws {
    if let problem = napi.lazy.compactMap({ $0.problem() }).first {
      throw BenchError.failed("\(moment): \(problem)")
    }
  }

  /// `argv` run on `cpu` only (taskset), inside `ns`.
  func pinned(_ ns: String, cpu: Int, _ argv: [String]) -> [String] {
    ["ip", "netns", "exec", ns, "taskset", "-c", String(cpu)] + argv
  }

  func tearDown() {
    for ns in [vmNS, switchNS, remoteNS] { Shell.run(["ip", "netns", "del", ns]) }
    if !options.keepDirectory { try? FileManager.default.removeItem(atPath: directory) }
    LiveBench.activePrefix = nil
  }

  /// Removes everything when interrupted (SIGINT/SIGTERM), then exits 130.
  static func installSignalHandlers() {
    for sig in [SIGINT, SIGTERM] {
      signal(sig, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
      source.setEventHandler {
        progress("interrupted: removing namespaces")
        for child in children where child.isRunning { kill(child.pid, SIGKILL) }
        if let prefix = activePrefix {
          for suffix in ["-vm", "-sw", "-rem"] { Shell.run(["ip", "netns", "del", prefix + suffix]) }
          try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + prefix)
        }
        exit(130)
      }
      source.resume()
      signalSources.append(source)
    }
  }
  nonisolated(unsafe) static var signalSources: [DispatchSourceSignal] = []

  func ip(_ ns: String, _ command: String) throws {
    try Shell.check(["ip", "-n", ns] + command.split(separator: " ").map(String.init))
  }

  // MARK: System B: Linux bridge + vxlan

  func startBridge() throws {
    try ip(switchNS, "addr add \(plan.localVTEP)/24 dev \(TrafficPlan.underlayPort)")
    try ip(
      switchNS,
      "neigh replace \(plan.remoteVTEP) lladdr \(TrafficPlan.remoteUnderlayMAC) dev \(TrafficPlan.underlayPort) nud permanent"
    )
    try ip(switchNS, "link add br0 type bridge")
    try ip(switchNS, "link set br0 mtu \(linkMTU - 50)")
    try ip(
      switchNS,
      "link add vxlan0 type vxlan id \(plan.vni) local \(plan.localVTEP) dstport 4789 nolearning dev \(TrafficPlan.underlayPort)"
    )
    try ip(switchNS, "link set vxlan0 mtu \(linkMTU - 50) master br0 up")
    try ip(switchNS, "link set \(TrafficPlan.accessPort) master br0")
    try ip(switchNS, "link set br0 up")
    var batch = "fdb append 00:00:00:00:00:00 dev vxlan0 dst \(plan.remoteVTEP) self permanent\n"
    for index in 0..<plan.destinations {
      let mac = TrafficPlan.remoteMAC(index)
      batch += "fdb add \(mac) dev vxlan0 dst \(plan.remoteVTEP) self permanent\n"
      batch += "fdb add \(mac) dev vxlan0 master static\n"
    }
    for index in 0..<plan.sources {
      batch += "fdb add \(TrafficPlan.localMAC(index)) dev \(TrafficPlan.accessPort) master static\n"
    }
    try Shell.check(["ip", "netns", "exec", switchNS, "bridge", "-batch", "-"], input: batch)
  }

  func stopBridge() {
    Shell.run(["ip", "-n", switchNS, "link", "del", "br0"])
    Shell.run(["ip", "-n", switchNS, "link", "del", "vxlan0"])
    Shell.run(["ip", "-n", switchNS, "addr", "flush", "dev", TrafficPlan.underlayPort])
    Shell.run(["ip", "-n", switchNS, "neigh", "flush", "dev", TrafficPlan.underlayPort])
  }

  // MARK: System A: vxswitch run

  /// nil when the binary is missing or has no `run` subcommand.
  static func vxswitchAvailable(_ path: String) -> String? {
    guard FileManager.default.isExecutableFile(atPath: path) else {
      return "vxswitch run unavailable (\(path) not built)"
    }
    let help = Shell.run([path, "run", "--help"])
    guard help.status == 0, (help.output + help.error).contains("--config") else {
      return "vxswitch run unavailable (\(path) has no `run --config`)"
    }
    return nil
  }

  /// The same site with both interfaces on AF_XDP, next to `configPath`; with `workers`
  /// packet workers.
  static func writeXDPConfig(from configPath: String, workers: Int = 1) throws -> String {
    var text = try String(contentsOfFile: configPath, encoding: .utf8)
    if workers != 1 {
      guard let site = text.range(of: "[site]\n") else {
        throw BenchError.failed("\(configPath) has no [site] table to put workers in")
      }
      text.insert(contentsOf: "workers = \(workers)\n", at: site.upperBound)
    }
    let interfaces = [TrafficPlan.underlayPort, TrafficPlan.accessPort].map {
      "[[interface]]\nname = \"\($0)\"\nio = \"af_xdp\"\n\n"
    }.joined()
    guard let neighbor = text.range(of: "[[neighbor]]") else {
      throw BenchError.failed("\(configPath) has no [[neighbor]] table to put [[interface]] before")
    }
    let path =
      configPath.replacingOccurrences(of: ".toml", with: "")
      + (workers == 1 ? "-xdp.toml" : "-xdp-\(workers)w.toml")
    var xdp = text
    xdp.insert(contentsOf: interfaces, at: neighbor.lowerBound)
    try xdp.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  /// `environment`: `NAME=value` settings for the daemon (`env`).
  func startVxswitch(configPath: String, environment: [String] = []) throws -> SystemCommand.Child {
    let log = directory + "/vxswitch"
    let command = [options.vxswitch, "run", "--config", configPath]
    let process = try Shell.spawn(
      pinned(
        switchNS, cpu: options.measuredCPU, environment.isEmpty ? command : ["env"] + environment + command),
      stdout: log + ".out", stderr: log + ".err")
    LiveBench.children.append(process)
    usleep(1_000_000)
    guard process.isRunning else {
      let message = (try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? ""
      throw BenchError.failed("vxswitch run exited (\(process.exitStatus)): \(message)")
    }
    return process
  }

  // MARK: System C: baseline forwarder

  func startBaseline(_ direction: Direction, io: PortIO = .afPacket) throws -> SystemCommand.Child {
    let log = directory + "/baseline-\(io.rawValue)-\(direction)"
    var argv = pinned(
      switchNS, cpu: options.measuredCPU, [Self.selfPath, "baseline-forward", "--io", io.rawValue])
    if io == .afXDP && direction == .decap { argv += ["--vtep", plan.localVTEP.description] }
    switch direction {
    case .encap:
      argv += [
        "--in", TrafficPlan.accessPort, "--out", TrafficPlan.underlayPort, "--header",
        BaselineHeader.hex(BaselineHeader.benchTemplate(plan)),
      ]
    case .decap:
      let filter = AFPacketPort.filterExpression(for: .underlay(vtep: plan.localVTEP, udpPort: 4789)) ?? ""
      argv += [
        "--in", TrafficPlan.underlayPort, "--out", TrafficPlan.accessPort, "--decap", "--filter", filter,
      ]
    }
    let process = try Shell.spawn(argv, stdout: log + ".out", stderr: log + ".err")
    LiveBench.children.append(process)
    usleep(500_000)
    guard process.isRunning else {
      let message = (try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? ""
      throw BenchError.failed("baseline-forward exited (\(process.exitStatus)): \(message)")
    }
    return process
  }

  /// Fails unless every port of the running vxswitch has the expected type: a switch that
  /// fell back to AF_PACKET must not be reported as AF_XDP.
  func checkPortTypes(configPath: String, expected: String) throws {
    let answer = Shell.run(
      ["ip", "netns", "exec", switchNS, options.vxswitch, "show", "ports", "--json", "--config", configPath])
    let types = answer.output.matches(of: #/"io"\s*:\s*"([a-z_]+)"/#).map { String($0.output.1) }
    guard !types.isEmpty, types.allSatisfy({ $0 == expected }) else {
      let log = (try? String(contentsOfFile: directory + "/vxswitch.err", encoding: .utf8)) ?? ""
      throw BenchError.failed(
        "vxswitch's ports are \(types) (\(expected) expected): \(log.split(separator: "\n").suffix(3).joined(separator: " | "))"
      )
    }
  }

  // MARK: Counters

  /// The kernel drops of every receive ring of the vxswitch running with `configPath`
  /// (`ring.kernel_drops` in `vxswitch show ports --json`), nil when it cannot be asked.
  func vxswitchRingDrops(configPath: String?) -> UInt64? {
    guard let configPath else { return nil }
    let answer = Shell.run(
      ["ip", "netns", "exec", switchNS, options.vxswitch, "show", "ports", "--json", "--config", configPath])
    guard answer.status == 0 else { return nil }
    let pattern = #/"kernel_?[dD]rops"\s*:\s*([0-9]+)/#
    return answer.output.matches(of: pattern).reduce(UInt64(0)) { $0 &+ (UInt64($1.output.1) ?? 0) }
  }

  func counter(_ ns: String, _ interface: String, _ name: String) -> UInt64 {
    let path = "/sys/class/net/\(interface)/statistics/\(name)"
    let text = Shell.run(["ip", "netns", "exec", ns, "cat", path]).output
    return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
  }

  struct CPUTimes {
    var system: Double
    var softirq: Double
  }

  static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

  static func cpuTimes() -> CPUTimes {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
      let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
    else { return CPUTimes(system: 0, softirq: 0) }
    let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard fields.count >= 7 else { return CPUTimes(system: 0, softirq: 0) }
    return CPUTimes(system: fields[2] / ticksPerSecond, softirq: fields[6] / ticksPerSecond)
  }

  static func processCPU(_ pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = text.lastIndex(of: ")")
    else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime field 14, stime field 15.
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / ticksPerSecond
  }

  // MARK: Traffic

  func endpoints(_ direction: Direction) -> (senderNS: String, sender: String, sinkNS: String, sink: String) {
    direction == .encap ? (vmNS, "g0", remoteNS, "r0") : (remoteNS, "r0", vmNS, "g0")
  }

  static var selfPath: String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    return length > 0 ? String(cString: buffer) : CommandLine.arguments[0]
  }

  func replayArguments(
    _ ns: String, _ interface: String, _ pcap: String, seconds: Double?, limit: Int?, pps: Int?
  ) -> [String] {
    let rate = pps ?? options.rate
    if options.generator == "tcpreplay" {
      var argv = pinned(ns, cpu: options.generatorCPU, ["tcpreplay", "-q", "-K", "-i", interface])
      argv.append(rate > 0 ? "--pps=\(rate)" : "--topspeed")
      if let seconds { argv += ["--loop=0", "--duration=\(Int(seconds.rounded(.up)))"] }
      if let limit { argv += ["--limit=\(limit)"] }
      argv.append(pcap)
      return argv
    }
    var argv = pinned(
      ns, cpu: options.generatorCPU, [Self.selfPath, "send", "--interface", interface, "--pcap", pcap])
    if rate > 0 { argv += ["--pps", String(rate)] }
    if let seconds { argv += ["--seconds", String(seconds)] }
    if let limit { argv += ["--limit", String(limit)] }
    return argv
  }

  /// Captures a few frames at the sink while a short burst is replayed, then decodes them
  /// with tcpdump and checks they are what the switch should emit.
  func checkOutput(_ direction: Direction, pcap: String, label: String) throws -> Bool {
    let (senderNS, sender, sinkNS, sink) = endpoints(direction)
    let capture = directory + "/sample-\(label).pcap"
    let tcpdump = try Shell.spawn(
      ["ip", "netns", "exec", sinkNS, "tcpdump", "-i", sink, "-c", "20", "-w", capture, "-U", "udp"],
      stdout: capture + ".out", stderr: capture + ".err")
    LiveBench.children.append(tcpdump)
    usleep(700_000)
    Shell.run(replayArguments(senderNS, sender, pcap, seconds: nil, limit: 200, pps: 2000))
    let deadline = Date().addingTimeInterval(3)
    while tcpdump.isRunning && Date() < deadline { usleep(50_000) }
    if tcpdump.isRunning { tcpdump.terminate() }
    tcpdump.wait()
    let decoded = Shell.run(["tcpdump", "-r", capture, "-nn", "-e", "-tt"]).output
    let (good, bad, foreign) = Self.classify(Self.records(decoded), direction: direction, plan: plan)
    for line in bad.prefix(3) { progress("    bad: \(line)") }
    if !foreign.isEmpty {
      progress("  output check \(label): ignored \(foreign.count) frames not from the generator")
    }
    guard bad.isEmpty, good.count >= 10 else {
      progress("  output check \(label): \(good.count) good, \(bad.count) bad frames: figure not verified")
      return false
    }
    return true
  }

  /// Splits decoded sink records into the generator's frames as the switch must emit
  /// them, the generator's frames mangled, and frames of others (a bridge's own IGMP).
  static func classify(_ records: [String], direction: Direction, plan: TrafficPlan) -> (
    good: [String], bad: [String], foreign: [String]
  ) {
    var good: [String] = []
    var bad: [String] = []
    var foreign: [String] = []
    for line in records {
      let ours = line.contains("02:00:01:") || line.contains("02:00:02:")
      let ok: Bool
      switch direction {
      case .encap:
        ok =
          line.contains("VXLAN") && line.contains("vni \(plan.vni)") && line.contains("02:00:01:")
          && line.contains("> 02:00:02:") && line.contains(" \(plan.localVTEP).")
          && line.contains("> \(plan.remoteVTEP).4789:") && line.contains(" 10.200.")
          && line.contains("> 10.201.")
      case .decap:
        ok =
          !line.contains("VXLAN") && line.contains(" 02:00:02:") && line.contains("> 02:00:01:")
          && line.contains(" 10.201.") && line.contains("> 10.200.") && line.contains("UDP")
      }
      if ok { good.append(line) } else if ours { bad.append(line) } else { foreign.append(line) }
    }
    return (good, bad, foreign)
  }

  /// tcpdump prints a VXLAN frame's inner frame on a line of its own: joins each
  /// frame's lines (a frame starts with its `-tt` timestamp, which has no colon).
  static func records(_ text: String) -> [String] {
    var records: [String] = []
    for line in text.split(separator: "\n") {
      let first = line.split(separator: " ").first ?? ""
      if first.contains(":") || first.isEmpty, !records.isEmpty {
        records[records.count - 1] += " | " + line
      } else {
        records.append(String(line))
      }
    }
    return records
  }

  func measure(
    _ system: System, _ direction: Direction, size: FrameSize, pcap: String, repetition: Int, pid: Int32?,
    checked: Bool, rate: Int? = nil, duration: Double? = nil, configPath: String? = nil
  ) throws -> Measurement {
    let rate = rate ?? options.rate
    let duration = duration ?? options.duration
    let (senderNS, sender, sinkNS, sink) = endpoints(direction)
    let receiver = direction == .encap ? TrafficPlan.accessPort : TrafficPlan.underlayPort
    try checkNAPI("before \(system) \(direction)")
    // Offered: what the generator's veth sent on plus what it dropped because the receiving
    // NAPI's ring was full (those frames never show in tx_packets, and are lost too).
    let offered0 = counter(senderNS, sender, "tx_packets") &+ counter(senderNS, sender, "tx_dropped")
    let delivered0 = counter(sinkNS, sink, "rx_packets")
    let drops0 = counter(senderNS, sender, "tx_dropped") &+ counter(switchNS, receiver, "rx_dropped")
    let ring0 = system.isVXSwitch ? vxswitchRingDrops(configPath: configPath) : nil
    let cpu0 = Self.cpuTimes()
    let process0 = pid.map(Self.processCPU) ?? 0
    let napiTime0 = napi.map { $0.runTime() }
    guard let core0 = CoreBusyTime(cpu: options.measuredCPU) else {
      throw BenchError.failed("/proc/stat has no line for CPU \(options.measuredCPU)")
    }
    let start = Date()
    let generator = Shell.run(
      replayArguments(senderNS, sender, pcap, seconds: duration, limit: nil, pps: rate))
    if generator.status != 0 { throw BenchError.failed("generator failed: \(generator.error)") }
    let elapsed = Date().timeIntervalSince(start)
    usleep(200_000)  // let queues drain
    let offered =
      (counter(senderNS, sender, "tx_packets") &+ counter(senderNS, sender, "tx_dropped")) &- offered0
    let delivered = counter(sinkNS, sink, "rx_packets") &- delivered0
    let core1 = CoreBusyTime(cpu: options.measuredCPU)
    let cpu1 = Self.cpuTimes()
    let process1 = pid.map(Self.processCPU) ?? 0
    let drops =
      (counter(senderNS, sender, "tx_dropped") &+ counter(switchNS, receiver, "rx_dropped")) &- drops0
    let ring1 = system.isVXSwitch ? vxswitchRingDrops(configPath: configPath) : nil
    let softirq = cpu1.softirq - cpu0.softirq
    let systemTime = cpu1.system - cpu0.system
    let processTime = process1 - process0
    let isPinned = pid.map { CoreBusyTime.isPinned($0, to: options.measuredCPU) } ?? true
    try checkNAPI("after \(system) \(direction)")
    // The receiving veth's NAPI kthread must have done the receive work, or it ran
    // somewhere this measurement does not see.
    let receiving = direction == .encap ? 0 : 1
    if delivered > 1000, napi[receiving].runTime() <= napiTime0[receiving] {
      throw BenchError.failed(
        "\(system) \(direction): \(napi[receiving].interface)'s NAPI kthread did not run: the receive work ran elsewhere"
      )
    }
    // The process's time is inside the measured CPU's busy time while it is pinned there;
    // otherwise all of it is added (an upper bound: some of it may have run there too).
    let busy = core1?.busySeconds(since: core0) ?? 0
    let cpu = busy + (isPinned ? 0 : processTime)
    let method =
      "busy time of CPU \(options.measuredCPU) (wall clock - idle - iowait - steal, /proc/stat)"
      + (isPinned ? "" : " + the process's utime+stime (it was not pinned)")
    let seconds = min(elapsed, duration)
    return Measurement(
      system: system, direction: direction, frameSize: size.description, repetition: repetition,
      seconds: seconds,
      offered: offered, delivered: delivered, deliveredPerSecond: Double(delivered) / seconds,
      lossPercent: offered > 0 ? max(0, Double(offered) - Double(delivered)) / Double(offered) * 100 : 0,
      cpuSeconds: cpu, cpuNsPerFrame: delivered > 0 ? cpu * 1e9 / Double(delivered) : 0, cpuMethod: method,
      systemCPUSeconds: systemTime, softirqCPUSeconds: softirq, outputChecked: checked, offeredRate: rate,
      processCPUSeconds: processTime, processPinned: isPinned, kernelDrops: drops,
      ringDrops: ring0.flatMap { before in ring1.map { $0 &- before } })
  }

  /// Flat-out probe, then bisection of the offered rate between 0 and the flat-out
  /// offered rate.
  func search(
    _ system: System, _ direction: Direction, size: FrameSize, pcap: String, pid: Int32?
  ) throws -> SearchResult {
    let probe = { (rate: Int) throws -> RateSearch.Probe in
      let m = try self.measure(
        system, direction, size: size, pcap: pcap, repetition: -1, pid: pid, checked: true, rate: rate,
        duration: self.options.searchDuration)
      let offered = Double(m.offered) / max(m.seconds, 1e-9)
      progress(
        String(
          format: "    search %@ %@ %@: offered %d (%.0f/s), loss %.3f%%", system.rawValue,
          direction.rawValue,
          size.description, rate, offered, m.lossPercent))
      return RateSearch.Probe(
        rate: rate, offeredPerSecond: offered, deliveredPerSecond: m.deliveredPerSecond,
        lossPercent: m.lossPercent)
    }
    let flat = try probe(0)
    let flatRate = Int(flat.offeredPerSecond)
    if flat.lossPercent < RateSearch.lossLimit {
      return SearchResult(
        system: system, direction: direction, frameSize: size.description, lossFreeRate: flatRate,
        flatOutRate: flatRate, generatorBound: true, probes: [flat])
    }
    var probes = [flat]
    let found = try RateSearch.bisect(high: flatRate, steps: options.searchSteps) { rate in
      let p = try probe(rate)
      probes.append(p)
      return p.lossPercent
    }
    return SearchResult(
      system: system, direction: direction, frameSize: size.description, lossFreeRate: found,
      flatOutRate: flatRate, generatorBound: false, probes: probes)
  }

  // MARK: Run

  func run() throws -> Report {
    if options.generator == "tcpreplay" && !Shell.exists("tcpreplay") {
      progress("installing tcpreplay (apt-get install -y tcpreplay)")
      Shell.run(["apt-get", "install", "-y", "tcpreplay"])
      guard Shell.exists("tcpreplay") else { throw BenchError.failed("tcpreplay is not installable") }
    }
    let unavailable = Self.vxswitchAvailable(options.vxswitch)
    if let unavailable {
      progress(unavailable + ": measuring the Linux bridge only")
      notes.append(unavailable)
    }
    let systems = options.systems.filter { unavailable == nil || !$0.isVXSwitch }
    // Torn down whatever step of the set-up failed: namespaces first exist half-built.
    defer { tearDown() }
    try setUp()
    progress("namespaces \(vmNS), \(switchNS), \(remoteNS); files in \(directory)")

    var measurements: [Measurement] = []
    var searches: [SearchResult] = []
    for size in options.sizes {
      var sized = plan
      sized.size = size
      let files = try Generator.write(sized, directory: directory + "/\(size)")
      let xdpConfigPath = try Self.writeXDPConfig(from: files.configPath)
      let twoWorkersConfigPath = try Self.writeXDPConfig(from: files.configPath, workers: 2)
      func configPath(_ system: System) -> String {
        switch system {
        case .vxswitchXDP, .vxswitchXDPCopy: xdpConfigPath
        case .vxswitchXDPTwoWorkers: twoWorkersConfigPath
        default: files.configPath
        }
      }
      for direction in options.directions {
        let pcap = direction == .encap ? files.accessPath : files.underlayPath
        var checked: [System: Bool] = [:]
        for repetition in 0..<options.repetitions {
          for system in systems {
            var pid: Int32?
            var process: SystemCommand.Child?
            switch system {
            case .vxswitch:
              process = try startVxswitch(configPath: files.configPath)
              pid = process?.pid
            case .vxswitchXDP, .vxswitchXDPTwoWorkers, .vxswitchXDPCopy:
              process = try startVxswitch(
                configPath: configPath(system),
                environment: system == .vxswitchXDPCopy ? ["VXSWITCH_XDP_IN_PLACE=off"] : [])
              pid = process?.pid
              try checkPortTypes(configPath: configPath(system), expected: "af_xdp")
            case .baseline:
              process = try startBaseline(direction)
              pid = process?.pid
            case .baselineXDP:
              process = try startBaseline(direction, io: .afXDP)
              pid = process?.pid
            case .bridge:
              try startBridge()
            }
            defer {
              if let process {
                process.terminate()
                process.wait()
              }
              if system == .bridge { stopBridge() }
            }
            if checked[system] == nil {
              checked[system] = try checkOutput(
                direction, pcap: pcap, label: "\(system)-\(direction)-\(size)")
            }
            let m = try measure(
              system, direction, size: size, pcap: pcap, repetition: repetition, pid: pid,
              checked: checked[system]!, configPath: configPath(system)
            )
            progress(
              String(
                format: "  %@ %@ %@ #%d: %.0f frames/s delivered, loss %.2f%%, cpu %.0f ns/frame%@",
                system.rawValue,
                direction.rawValue, size.description, repetition, m.deliveredPerSecond, m.lossPercent,
                m.cpuNsPerFrame,
                m.outputChecked ? "" : " (OUTPUT NOT VERIFIED)"))
            measurements.append(m)
            if options.search && repetition == 0 {
              let result = try search(system, direction, size: size, pcap: pcap, pid: pid)
              progress("  \(system) \(direction) \(size): loss-free rate \(result.lossFreeRate) frames/s")
              searches.append(result)
            }
          }
        }
      }
    }
    return Report(
      generator: (options.generator == "tcpreplay" ? "tcpreplay -K" : "Bench send (AF_PACKET sendmmsg)")
        + (options.rate > 0 ? " at \(options.rate) pps" : " flat out"),
      rate: options.rate > 0 ? "\(options.rate) pps" : "flat out", vxswitch: unavailable ?? options.vxswitch,
      notes: notes, measurements: measurements, summary: Self.summarize(measurements, searches: searches),
      searches: searches)
  }

  static func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    return sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }

  /// Medians per (direction, size, system); figures whose output failed the check are left out.
  static func summarize(_ measurements: [Measurement], searches: [SearchResult] = []) -> [Summary] {
    var keys: [(Direction, String)] = []
    for m in measurements where !keys.contains(where: { $0 == (m.direction, m.frameSize) }) {
      keys.append((m.direction, m.frameSize))
    }
    return keys.map { direction, size in
      func pick(_ system: System, _ value: (Measurement) -> Double) -> Double? {
        median(
          measurements.filter {
            $0.system == system && $0.direction == direction && $0.frameSize == size && $0.outputChecked
          }
          .map(value))
      }
      func lossFree(_ system: System) -> Int? {
        searches.first { $0.system == system && $0.direction == direction && $0.frameSize == size }?
          .lossFreeRate
      }
      /// A generator-bound figure is a lower bound only: no ratio from it.
      func bound(_ system: System) -> Bool {
        searches.contains {
          $0.system == system && $0.direction == direction && $0.frameSize == size && $0.generatorBound
        }
      }
      func divide(_ x: Double?, _ y: Double?) -> Double? {
        x.flatMap { x in y.flatMap { $0 > 0 ? x / $0 : nil } }
      }
      let a = pick(.vxswitch, \.deliveredPerSecond)
      let b = pick(.bridge, \.deliveredPerSecond)
      let c = pick(.baseline, \.deliveredPerSecond)
      let x = pick(.vxswitchXDP, \.deliveredPerSecond)
      let y = pick(.baselineXDP, \.deliveredPerSecond)
      return Summary(
        direction: direction, frameSize: size, vxswitchFramesPerSecond: a, bridgeFramesPerSecond: b,
        vxswitchLossPercent: pick(.vxswitch, \.lossPercent), bridgeLossPercent: pick(.bridge, \.lossPercent),
        vxswitchCPUNsPerFrame: pick(.vxswitch, \.cpuNsPerFrame),
        bridgeCPUNsPerFrame: pick(.bridge, \.cpuNsPerFrame),
        ratio: divide(a, b), baselineFramesPerSecond: c, baselineLossPercent: pick(.baseline, \.lossPercent),
        baselineCPUNsPerFrame: pick(.baseline, \.cpuNsPerFrame), baselineRatio: divide(a, c),
        xdpFramesPerSecond: x, xdpLossPercent: pick(.vxswitchXDP, \.lossPercent),
        xdpCPUNsPerFrame: pick(.vxswitchXDP, \.cpuNsPerFrame), xdpRatio: divide(x, b),
        baselineXDPFramesPerSecond: y, baselineXDPLossPercent: pick(.baselineXDP, \.lossPercent),
        baselineXDPCPUNsPerFrame: pick(.baselineXDP, \.cpuNsPerFrame), xdpBaselineRatio: divide(x, y),
        xdpTwoWorkersFramesPerSecond: pick(.vxswitchXDPTwoWorkers, \.deliveredPerSecond),
        xdpTwoWorkersCPUNsPerFrame: pick(.vxswitchXDPTwoWorkers, \.cpuNsPerFrame),
        xdpTwoWorkersRatio: divide(pick(.vxswitchXDPTwoWorkers, \.deliveredPerSecond), x),
        xdpCopyFramesPerSecond: pick(.vxswitchXDPCopy, \.deliveredPerSecond),
        xdpCopyCPUNsPerFrame: pick(.vxswitchXDPCopy, \.cpuNsPerFrame),
        xdpInPlaceOverCopyRatio: divide(x, pick(.vxswitchXDPCopy, \.deliveredPerSecond)),
        vxswitchLossFreeRate: lossFree(.vxswitch), bridgeLossFreeRate: lossFree(.bridge),
        baselineLossFreeRate: lossFree(.baseline),
        lossFreeBaselineRatio: bound(.vxswitch) || bound(.baseline)
          ? nil : divide(lossFree(.vxswitch).map(Double.init), lossFree(.baseline).map(Double.init)))
    }
  }
}

/// `Bench live --search`: bisection of the offered rate for the largest one with loss
/// below `lossLimit` percent.
enum RateSearch {
  static let lossLimit = 0.1

  struct Probe: Codable, Equatable {
    var rate: Int
    var offeredPerSecond: Double
    var deliveredPerSecond: Double
    var lossPercent: Double
  }

  /// Largest rate in 1...`high` that `lossAt` found below the limit after `steps` probes
  /// (midpoints of the interval still in doubt), or 0 if no probe passed. Assumes loss
  /// grows with the rate; `high` itself is known to fail (it is not probed).
  static func bisect(low: Int = 0, high: Int, steps: Int, lossAt: (Int) throws -> Double) rethrows -> Int {
    var passed = low
    var failed = high
    for _ in 0..<steps {
      let rate = passed + (failed - passed) / 2
      if rate <= passed || rate >= failed { break }
      if try lossAt(rate) < lossLimit { passed = rate } else { failed = rate }
    }
    return passed
  }
}
