import ArgumentParser
import Foundation
import SystemCommand

/// `Bench tcp`: TCP between two VMs at two sites (`vxswitch lab` namespaces, VMs with
/// default offloads, VM MTU = underlay MTU - 50, underlay veths carrying MTU-sized
/// frames as a wire does), iperf3 for a fixed time with 1 and 4 streams, for vxswitch at
/// both sites, Linux bridge + kernel vxlan at both, and mixed, alternating in one run.
struct TCPBenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tcp",
    abstract:
      "iperf3 between two sites' VMs: vxswitch at both vs Linux bridge + kernel vxlan at both vs mixed.",
    discussion: """
      Needs root and iperf3 (installed with apt-get when missing). Each round builds a two-site
      lab per system (`vxswitch lab --static` / `--kernel-only` / `--kernel-peer`, prefix btcp),
      runs iperf3 from s1-vm1 to s2-vm1 for --duration seconds with 1 then 4 streams, and
      removes the lab; systems alternate within each round. Gbit/s is iperf3's received rate.
      CPU per Gbit is the busy time of the whole machine (all CPUs: user, nice, system, irq
      and softirq time, not steal, from /proc/stat) during the iperf3 run divided by the gigabits received: it
      charges each system for its softirq, NAPI and process work, and iperf3's own work
      alike. The table shows medians over --repetitions rounds.
      """)

  @Option(help: "Seconds per iperf3 run.") var duration = 10
  @Option(help: "Rounds (each runs every system once).") var repetitions = 1
  @Option(
    help:
      "Systems (repeatable): vxswitch, kernel, mixed, vxswitch-uncoalesced, vxswitch-single-flow, vxswitch-nogso, vxswitch-gso-copy, vxswitch-deferred-payloads, vxswitch-stack, vxswitch-switch-cut, vxswitch-vm-ring, vxswitch-no-taps."
  )
  var system: [String] = ["vxswitch", "kernel", "mixed"]
  @Option(help: "Stream counts (repeatable).") var streams: [Int] = [1, 4]
  @Option(help: "vxswitch binary.") var vxswitch = ".build/release/vxswitch"
  @Flag(
    name: .customLong("exclude-nice"),
    help:
      "Leave niced user time out of the busy time (a shared machine whose other tenants run niced, e.g. fuzzers, which would otherwise fill every idle cycle)."
  )
  var excludeNice = false
  @Flag(
    name: .customLong("ipv6-underlay"),
    help: "An IPv6 underlay (`vxswitch lab --ipv6-underlay`: VM MTU 1430, outer UDP checksums)."
  )
  var ipv6Underlay = false
  @Flag(help: "JSON output.") var json = false

  enum System: String, CaseIterable {
    case vxswitch, kernel, mixed
    /// vxswitch at both sites with TCP coalescing off (`VXSWITCH_TCP_COALESCING=off`).
    case uncoalesced = "vxswitch-uncoalesced"
    /// vxswitch at both sites coalescing one flow at a time per port
    /// (`VXSWITCH_TCP_COALESCING=single-flow`).
    case singleFlow = "vxswitch-single-flow"
    /// vxswitch at both sites without UDP GSO on the underlay (`VXSWITCH_UNDERLAY_GSO=off`).
    case noGSO = "vxswitch-nogso"
    /// vxswitch at both sites joining datagrams into UDP GSO frames by copying each
    /// one's payload, as before it was encapsulated in the frame itself
    /// (`VXSWITCH_UNDERLAY_GSO=copy`).
    case gsoCopy = "vxswitch-gso-copy"
    /// vxswitch at both sites leaving the payloads of a VM's super-frame's segments in
    /// the super-frame until the pipeline copies them (`VXSWITCH_SEGMENT_PAYLOADS=defer`).
    case deferredPayloads = "vxswitch-deferred-payloads"
    /// vxswitch at both sites with the underlay's VXLAN datagrams climbing the host's
    /// stack to the port holder (`VXSWITCH_UNDERLAY_STACK_BYPASS=off`).
    case stack = "vxswitch-stack"
    /// vxswitch at both sites cutting VM super-frames itself instead of handing them to
    /// the kernel through the tunnel tap (`VXSWITCH_UNDERLAY_TUNNEL_GSO=off`); sending
    /// coalesced super-frames to VMs through their ports' rings instead of their taps
    /// (`VXSWITCH_VM_TAPS=off`); both, as before the taps.
    case switchCut = "vxswitch-switch-cut"
    case vmRing = "vxswitch-vm-ring"
    case noTaps = "vxswitch-no-taps"
    /// vxswitch at both sites with an AF_XDP underlay (`vxswitch lab --underlay-io
    /// af_xdp`), the VMs' ports on AF_PACKET.
    case xdpUnderlay = "vxswitch-xdp-underlay"
    var labArguments: [String] {
      switch self {
      case .vxswitch, .uncoalesced, .singleFlow, .noGSO, .gsoCopy, .deferredPayloads, .stack, .switchCut,
        .vmRing, .noTaps:
        return ["--static"]
      case .xdpUnderlay: return ["--static", "--underlay-io", "af_xdp"]
      case .kernel: return ["--kernel-only"]
      case .mixed: return ["--kernel-peer"]
      }
    }
    var label: String {
      switch self {
      case .vxswitch: return "vxswitch at both sites"
      case .kernel: return "Linux bridge + kernel vxlan at both"
      case .mixed: return "vxswitch (site 1) to kernel (site 2)"
      case .uncoalesced: return "vxswitch at both, TCP coalescing off"
      case .singleFlow: return "vxswitch at both, coalescing one flow at a time"
      case .noGSO: return "vxswitch at both, underlay UDP GSO off"
      case .gsoCopy: return "vxswitch at both, GSO frames joined by copy"
      case .deferredPayloads: return "vxswitch at both, segment payloads deferred"
      case .stack: return "vxswitch at both, datagrams also up the host stack"
      case .xdpUnderlay: return "vxswitch at both, AF_XDP underlay"
      case .switchCut: return "vxswitch at both, super-frames cut by the switch"
      case .vmRing: return "vxswitch at both, super-frames to VMs through the ring"
      case .noTaps: return "vxswitch at both, no taps (cut by the switch, ring to VMs)"
      }
    }
    /// The environment the lab (and so each site's daemon) starts with.
    var environment: [String] {
      switch self {
      case .uncoalesced: return ["env", "VXSWITCH_TCP_COALESCING=off"]
      case .singleFlow: return ["env", "VXSWITCH_TCP_COALESCING=single-flow"]
      case .noGSO: return ["env", "VXSWITCH_UNDERLAY_GSO=off"]
      case .gsoCopy: return ["env", "VXSWITCH_UNDERLAY_GSO=copy"]
      case .deferredPayloads: return ["env", "VXSWITCH_SEGMENT_PAYLOADS=defer"]
      case .stack: return ["env", "VXSWITCH_UNDERLAY_STACK_BYPASS=off"]
      case .switchCut: return ["env", "VXSWITCH_UNDERLAY_TUNNEL_GSO=off"]
      case .vmRing: return ["env", "VXSWITCH_VM_TAPS=off"]
      case .noTaps: return ["env", "VXSWITCH_UNDERLAY_TUNNEL_GSO=off", "VXSWITCH_VM_TAPS=off"]
      default: return []
      }
    }
  }

  struct Sample: Codable {
    var system: String
    var streams: Int
    var gigabitsPerSecond: Double
    var cpuSecondsPerGigabit: Double
    var retransmits: Int
  }

  func run() throws {
    guard getuid() == 0 else { throw ValidationError("Bench tcp needs root (network namespaces)") }
    let systems = try system.map { name -> System in
      guard let value = System(rawValue: name) else { throw ValidationError("unknown system \(name)") }
      return value
    }
    guard FileManager.default.isExecutableFile(atPath: vxswitch) else {
      throw ValidationError("\(vxswitch) is not built (swift build -c release)")
    }
    if !Shell.exists("iperf3") {
      progress("installing iperf3")
      try Shell.check(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "iperf3"])
    }
    var samples: [Sample] = []
    for round in 1...repetitions {
      for system in systems {
        progress("round \(round)/\(repetitions): \(system.label)")
        try Shell.check(
          system.environment + [vxswitch, "lab", "--sites", "2", "--prefix", "btcp"] + system.labArguments
            + (ipv6Underlay ? ["--ipv6-underlay"] : []))
        defer { Shell.run([vxswitch, "lab", "--down", "--prefix", "btcp"]) }
        // One server for the lab's lifetime (a one-off server would exit after a failed try).
        let serverCommand = ["ip", "netns", "exec", "btcp-s2-vm1", "iperf3", "-s", "-p", "5201"]
        var server = try SystemCommand.start(serverCommand)
        defer {
          server.terminate()
          server.wait()
        }
        for count in streams {
          var attempt = 0
          let sample: Sample
          while true {
            do {
              sample = try measure(system: system, streams: count)
              break
            } catch {
              // The server sometimes stops listening ("Connection refused" for 10 s,
              // every system alike): a fresh one, twice, before giving up the run.
              attempt += 1
              if attempt > 2 { throw error }
              progress("  iperf3 could not connect; restarting its server (try \(attempt + 1))")
              server.terminate()
              server.wait()
              sleep(1)
              server = try SystemCommand.start(serverCommand)
            }
          }
          progress(
            String(
              format: "  %d stream(s): %.2f Gbit/s, %.3f CPU s/Gbit, %d retransmits", count,
              sample.gigabitsPerSecond, sample.cpuSecondsPerGigabit, sample.retransmits))
          samples.append(sample)
        }
      }
    }
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try encoder.encode(samples), as: UTF8.self))
      return
    }
    print(Self.table(samples, systems: systems, streams: streams))
  }

  /// One iperf3 run from s1-vm1 to s2-vm1 (192.168.100.21).
  func measure(system: System, streams: Int) throws -> Sample {
    let client = [
      "ip", "netns", "exec", "btcp-s1-vm1", "iperf3", "-c", "192.168.100.21", "-p", "5201", "-t",
      "\(duration)", "-P", "\(streams)", "-J",
    ]
    // The server needs a moment to listen, and a run can fail on its own (a lost SYN
    // of a data stream): a failed run is retried, up to 10 s of tries.
    var result = Shell.Result(status: 1, output: "", error: "")
    var before = 0.0
    for _ in 0..<50 {
      before = Self.busySeconds(excludingNice: excludeNice)
      result = Shell.run(client)
      if result.status == 0 { break }
      usleep(200_000)
    }
    let busy = Self.busySeconds(excludingNice: excludeNice) - before
    guard result.status == 0,
      let object = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any],
      let end = object["end"] as? [String: Any],
      let received = end["sum_received"] as? [String: Any],
      let bits = received["bits_per_second"] as? Double,
      let seconds = received["seconds"] as? Double
    else {
      throw BenchError.failed(
        "iperf3 failed for \(system.label): \(result.output.prefix(400)) \(result.error)")
    }
    let retransmits = (end["sum_sent"] as? [String: Any])?["retransmits"] as? Int ?? 0
    let gigabits = bits * seconds / 1e9
    return Sample(
      system: system.rawValue, streams: streams, gigabitsPerSecond: bits / 1e9,
      cpuSecondsPerGigabit: gigabits > 0 ? busy / gigabits : .infinity, retransmits: retransmits)
  }

  /// Busy CPU seconds of the whole machine so far: every CPU's time but idle and iowait
  /// (and, `excludingNice`, but user time at a positive nice value).
  static func busySeconds(excludingNice: Bool = false) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
      let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
    else { return 0 }
    let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard fields.count >= 8 else { return 0 }
    // user nice system idle iowait irq softirq steal: steal is the hypervisor running
    // another guest, no system's work here.
    let busy = fields[0] + (excludingNice ? 0 : fields[1]) + fields[2] + fields[5] + fields[6]
    return busy / Double(sysconf(Int32(_SC_CLK_TCK)))
  }

  static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }

  static func table(_ samples: [Sample], systems: [System], streams: [Int]) -> String {
    var rows = [["system"] + streams.flatMap { ["\($0) stream Gbit/s", "\($0) stream CPU s/Gbit"] }]
    var medians: [System: [Int: (Double, Double)]] = [:]
    for system in systems {
      var row = [system.label]
      for count in streams {
        let picked = samples.filter { $0.system == system.rawValue && $0.streams == count }
        let rate = median(picked.map(\.gigabitsPerSecond))
        let cpu = median(picked.map(\.cpuSecondsPerGigabit))
        medians[system, default: [:]][count] = (rate, cpu)
        row += [String(format: "%.2f", rate), String(format: "%.3f", cpu)]
      }
      rows.append(row)
    }
    var text = rows.map { $0.joined(separator: " | ") }.joined(separator: "\n")
    if let ours = medians[.vxswitch], let kernel = medians[.kernel] {
      for count in streams {
        guard let a = ours[count], let b = kernel[count] else { continue }
        text += String(
          format: "\nvxswitch/kernel, %d stream(s): %.2fx the Gbit/s, %.2fx the CPU per Gbit", count,
          a.0 / b.0,
          a.1 / b.1)
      }
    }
    return text
  }
}
