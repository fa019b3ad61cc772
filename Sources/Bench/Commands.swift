import ArgumentParser
import Dataplane
import Foundation

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "Bench",
    abstract: "vxswitch benchmarks: traffic generation, in-memory pcap replay, live veth runs.",
    subcommands: [
      GenCommand.self, MemoryCommand.self, LiveCommand.self, ControlCommand.self, SendCommand.self,
      BaselineForwardCommand.self, TXRingCommand.self, ExtensionBenchCommand.self, TCPBenchCommand.self,
      SoakCommand.self, ReferenceCommand.self,
    ])
}

struct GenCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gen",
    abstract: "Write access.pcap, underlay.pcap and a matching site config.",
    discussion: """
      access.pcap: IPv4/UDP frames from N local VMs (02:00:01:xx:xx:xx, 10.200/16) to M remote
      VMs (02:00:02:xx:xx:xx, 10.201/16), frame k from source k%N to destination k%M, ports
      varied. underlay.pcap: the replies (remote VM to local VM) VXLAN-encapsulated from the
      remote VTEP to the local VTEP. Sizes are frame sizes without FCS; IMIX is 7:4:1 of
      64/570/1518 bytes. The config (default DIR/site.toml) has access port vm1, underlay
      eth1, the remote VTEP in flood and [[neighbor]], the remote VMs as [[static_mac]]
      remote entries and the local VMs as [[static_mac]] port = "vm1".
      """)

  @Option(help: "Output directory.")
  var out: String
  @Option(help: "Number of source (local VM) MACs.")
  var sources = 16
  @Option(help: "Number of destination (remote VM) MACs.")
  var destinations = 16
  @Option(help: "Frame size without FCS (60...9000) or imix.")
  var size = "64"
  @Option(help: "Frames per file.")
  var frames = 10_000
  @Option(help: "Underlay family: ipv4 or ipv6.")
  var underlay = "ipv4"
  @Option(help: "VNI.")
  var vni: UInt32 = 100
  @Option(name: .customLong("config-out"), help: "Where to write the site config (default DIR/site.toml).")
  var configOut: String?

  func run() throws {
    guard let frameSize = FrameSize(size) else { throw ValidationError("--size must be 60...9000 or imix") }
    guard let family = UnderlayFamily(rawValue: underlay) else {
      throw ValidationError("--underlay must be ipv4 or ipv6")
    }
    var plan = TrafficPlan()
    plan.sources = sources
    plan.destinations = destinations
    plan.size = frameSize
    plan.frames = frames
    plan.underlay = family
    plan.vni = vni
    let output = try Generator.write(plan, directory: out, configPath: configOut)
    print(
      "wrote \(output.accessPath) (\(output.accessFrames) frames), \(output.underlayPath) (\(output.underlayFrames) frames), \(output.configPath)"
    )
    print(
      "try: Bench memory --config \(output.configPath) --in \(TrafficPlan.accessPort)=\(output.accessPath) --in \(TrafficPlan.underlayPort)=\(output.underlayPath)"
    )
  }
}

struct LiveCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "live",
    abstract: "Measure vxswitch run against a Linux bridge + vxlan over veth pairs in namespaces.",
    discussion: """
      Needs root, ip, bridge and tcpdump; with --generator tcpreplay, tcpreplay (installed
      with apt-get when missing).
      Namespaces vxb-<pid>-{vm,sw,rem} are removed on exit and on SIGINT/SIGTERM. vxswitch
      (A), the bridge (B) and the baseline forwarder (C: `Bench baseline-forward`, RX ring
      to TX ring, prepends/strips a fixed 50-byte header) alternate A B C A B C; the table
      shows medians. The generator runs on --generator-cpu; the measured system's process
      and the threaded NAPI kthreads of the veths it receives on (GRO on, or with
      --receive-napi xdp an XDP program passing every frame and GRO off) on --measured-cpu.
      CPU per frame, for every system: the busy time of the measured CPU (wall clock minus
      idle, iowait and steal, /proc/stat), plus the process's time elsewhere if it left that CPU.
      --search: per system, direction and size,
      bisects the offered rate (--search-steps probes of --search-duration s) for the
      largest rate with < 0.1% loss.
      """)

  @Option(name: .customLong("size"), help: "Frame size(s) (repeatable): 60...9000 or imix.")
  var sizes: [String] = ["64", "512", "1518"]
  @Option(name: .customLong("direction"), help: "encap and/or decap (repeatable).")
  var directions: [String] = ["encap", "decap"]
  @Option(help: "A/B repetitions.")
  var repetitions = 3
  @Option(help: "Seconds per measurement.")
  var duration = 3.0
  @Option(help: "Offered rate in frames/s (0: flat out).")
  var rate = 0
  @Flag(help: "Also search the largest offered rate with < 0.1% loss per system.")
  var search = false
  @Option(help: "Bisection steps of --search.")
  var searchSteps = 6
  @Option(help: "Seconds per --search probe.")
  var searchDuration = 2.0
  @Option(
    help:
      "Systems (repeatable): vxswitch, vxswitch-xdp (AF_XDP ports), bridge, baseline, baseline-xdp, vxswitch-xdp-2w (AF_XDP, two workers sharing each queue), vxswitch-xdp-copy (AF_XDP, every frame copied into a transmit slot)."
  )
  var system: [String] = ["vxswitch", "vxswitch-xdp", "bridge", "baseline", "baseline-xdp"]
  @Option(help: "Source MACs.")
  var sources = 16
  @Option(help: "Destination MACs.")
  var destinations = 16
  @Option(help: "vxswitch binary.")
  var vxswitch = ".build/release/vxswitch"
  @Flag(help: "Print JSON instead of a table.")
  var json = false
  @Option(help: "Write an SVG plot (frames/s versus frame size).")
  var plot: String?
  @Option(help: "Also plot this `Bench memory --sweep --json` output beside the live figures.")
  var memoryJSON: String?
  @Flag(help: "Print every command run.")
  var verbose = false
  @Flag(help: "Keep the generated files.")
  var keep = false
  @Option(help: "Traffic generator: builtin (AF_PACKET sendmmsg, `Bench send`) or tcpreplay.")
  var generator = "builtin"
  @Option(help: "The generator's CPU (default: the first this process may use).")
  var generatorCPU: Int?
  @Option(help: "The measured system's CPU (default: the last this process may use).")
  var measuredCPU: Int?
  @Option(
    help: "What gives the receiving veths their NAPI: gro (GRO on) or xdp (a passing XDP program, GRO off).")
  var receiveNAPI = "gro"

  func run() throws {
    var options = LiveBench.Options()
    options.sizes = try sizes.map { text in
      guard let size = FrameSize(text) else { throw ValidationError("bad --size \(text)") }
      return size
    }
    options.directions = try directions.map { text in
      guard let direction = Direction(rawValue: text) else {
        throw ValidationError("bad --direction \(text)")
      }
      return direction
    }
    options.repetitions = max(1, repetitions)
    options.duration = max(1, duration)
    options.rate = rate
    options.search = search
    options.searchSteps = max(1, searchSteps)
    options.searchDuration = max(0.5, searchDuration)
    options.systems = try system.map { text in
      guard let value = LiveBench.System(rawValue: text) else {
        throw ValidationError("bad --system \(text)")
      }
      return value
    }
    options.sources = sources
    options.destinations = destinations
    options.vxswitch = vxswitch
    options.keepDirectory = keep
    guard ["builtin", "tcpreplay"].contains(generator) else {
      throw ValidationError("--generator: builtin or tcpreplay")
    }
    options.generator = generator
    if let generatorCPU { options.generatorCPU = generatorCPU }
    if let measuredCPU { options.measuredCPU = measuredCPU }
    guard let mode = ThreadedNAPI.Mode(rawValue: receiveNAPI) else {
      throw ValidationError("--receive-napi: gro or xdp")
    }
    options.receiveNAPI = mode
    Shell.trace = verbose
    LiveBench.installSignalHandlers()
    let report = try LiveBench(options: options).run()
    print(json ? Output.json(report) : Output.liveTable(report))
    if let plot {
      var memory: MemoryReport?
      if let memoryJSON {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        memory = try decoder.decode(
          MemoryReport.self, from: Data(contentsOf: URL(fileURLWithPath: memoryJSON)))
      }
      try Generator.writeText(plot, Plot.svg(memory: memory, live: report))
      progress("wrote \(plot)")
    }
  }
}

struct ControlCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "control",
    abstract: "Control-plane benchmark: N EVPN type-2 routes over one BGP session into a vxswitch FDB.",
    discussion: """
      In one process: a vxswitch control plane (SwitchCore + EVPNControlPlane, listening on
      127.0.0.1) and a second EVPNSpeaker as the sender, holding N MAC routes (one next hop,
      VNI 100) before its session comes up, so that it sends its whole table, packed, as fast as
      the session takes it. Reports the time from Established until all N are FDB entries, and
      memory per route (process RSS delta; receiver table sizes). --while-forwarding keeps an
      OfflineSwitch on the same SwitchCore forwarding frames towards those MACs on another
      thread, and reports its frame rate before, during and after the import.

      --fdb-entries N puts N control-plane entries (VNI 200) in the receiver's FDB first.
      --reader runs the import three times: without a client; with a client of the HTTP API
      (served on a Unix socket by the same SiteService as `vxswitch run`) paging through the
      whole FDB over and over (GET /v1/fdb, 1000 rows a page, as `vxswitch show fdb` does);
      and with an in-process client doing the same listing work without HTTP
      (SwitchCore.fdbPage, each page JSON-encoded); it prints the install rates, their
      ratios and the pages read. --locked-reader adds a third run whose client lists the FDB
      the way it was listed before fdbPage (rows built inside ForwardingTable.forEach, which
      holds the FDB writer lock for the whole walk). --encode-only-reader adds a run whose
      client only JSON-encodes one page over and over, without reading the FDB: the cost of
      sharing the CPU (two cores) with a client, without any FDB access. Each import starts
      while the client is in the middle of a listing.

      --mac-move instead measures MAC-move convergence between two in-process sites (each a
      SwitchCore + EVPNControlPlane, iBGP over 127.0.0.1): for --moves fresh MACs, a frame from
      the MAC at site A (new MAC: until B's FDB points at A), then at site B (move: until A's
      FDB points at B), timed from the frame entering the learning dataplane; median, p99, max.
      """)

  @Option(help: "Type-2 routes to send.") var routes = 100_000
  @Flag(name: .customLong("while-forwarding"), help: "Forward frames on another thread meanwhile.")
  var whileForwarding = false
  @Flag(
    name: .customLong("no-size-hint"),
    help: "Do not size the receiver's RIB and sink for --routes up front (as vxswitch run does).")
  var noSizeHint = false
  @Option(name: .customLong("fdb-entries"), help: "FDB entries (VNI 200) installed before the import.")
  var fdbEntries = 0
  @Flag(help: "Compare the install rate without and with a client paging through the FDB.")
  var reader = false
  @Flag(
    name: .customLong("locked-reader"),
    help: "With --reader: also run with a client listing the FDB under its writer lock (before fdbPage).")
  var lockedReader = false
  @Flag(
    name: .customLong("encode-only-reader"),
    help: "With --reader: also run with a client that JSON-encodes pages without reading the FDB.")
  var encodeOnlyReader = false
  @Flag(name: .customLong("mac-move"), help: "Measure MAC-move convergence between two sites instead.")
  var macMove = false
  @Option(help: "MACs moved with --mac-move.") var moves = 50
  @Flag(help: "Print JSON instead of text.") var json = false

  func run() throws {
    if macMove {
      guard moves > 0 else { throw ValidationError("--moves must be positive") }
      let report = try MoveBench(moves: moves).run()
      print(json ? Output.json(report) : report.text)
      return
    }
    guard routes > 0 else { throw ValidationError("--routes must be positive") }
    guard fdbEntries >= 0 else { throw ValidationError("--fdb-entries must not be negative") }
    var bench = ControlBench(routes: routes, whileForwarding: whileForwarding)
    bench.sizeHint = !noSizeHint
    bench.prefill = fdbEntries
    guard reader || lockedReader || encodeOnlyReader else {
      let report = try bench.run()
      print(json ? Output.json(report) : report.text)
      return
    }
    var comparison = ReaderComparison(runs: [])
    var modes: [FDBReaderMode] = [.none, .http, .paged]
    if lockedReader { modes.append(.locked) }
    if encodeOnlyReader { modes.append(.encodeOnly) }
    for mode in modes {
      bench.reader = mode
      let report = try bench.run()
      if !json { print(report.text) }
      comparison.runs.append(report)
    }
    print(json ? Output.json(comparison) : comparison.text)
  }
}

/// `Bench control --reader`: the install rate without and with an FDB client.
struct ReaderComparison: Codable {
  var runs: [ControlBench.Report]

  var text: String {
    guard let alone = runs.first else { return "" }
    var lines = [
      String(format: "Install rate without FDB reader: %.0f routes/s", alone.routesPerSecond)
    ]
    for run in runs.dropFirst() {
      lines.append(
        String(
          format:
            "Install rate with FDB reader %@: %.0f routes/s (%.2f of the rate alone); reader: %d pages, %d rows, %d complete listings",
          run.reader ?? "?", run.routesPerSecond, run.routesPerSecond / alone.routesPerSecond,
          run.readerPages ?? 0, run.readerRows ?? 0, run.readerListings ?? 0))
    }
    return lines.joined(separator: "\n")
  }
}
