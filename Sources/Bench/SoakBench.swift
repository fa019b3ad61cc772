import ArgumentParser
import Dataplane
import Foundation
import SystemCommand

/// `Bench soak`: a two-site lab (`vxswitch lab`, the inter-site extension, BGP EVPN
/// between the sites) under fixed-rate traffic whose source MACs keep changing, with a
/// short aging time: site 2 learns new MACs, advertises them, ages them out and withdraws
/// them all the time (MAC churn there, BGP route churn at site 1). Both daemons' RSS, file
/// descriptors and threads are sampled over the run; they must stay flat.
struct SoakCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "soak",
    abstract:
      "Two lab sites under fixed-rate traffic with MAC and BGP route churn; RSS, fds and threads over time.",
    discussion: """
      Needs root. Builds `vxswitch lab --sites 2 --prefix PREFIX --aging-time AGING`, sends
      --rate frames/s from s2-vm1 to s1-vm1's MAC (`Bench send`), --new-macs new source MACs
      a second (each MAC's frames are sent for 1/--new-macs s, and it comes back only after
      more than 2 x AGING s, once it has aged out and its route was withdrawn), and pings
      s1-vm1 -> s2-vm1 5 times a second throughout. Every --interval seconds, for each site's
      daemon: RSS (/proc/PID/status VmRSS), open file descriptors (/proc/PID/fd), threads
      (/proc/PID/task), and from its /metrics: FDB entries, MACs learnt and aged, BGP routes
      received and advertised (totals).

      Flat means, over the samples after the warm-up (--warm-up, default the larger of
      3 x AGING and a fifth of the run): no more file descriptors at the end than at the
      first measured sample and never more than 2 above it (a pooled connection may come
      and go), threads alike within 1 at the end and 2 overall, RSS grown by at most
      --rss-slack-mib; churn really happened (MACs learnt and aged at site 2,
      routes received at site 1 during the measured part); at most 1% of the pings lost.
      A run that is not is flagged (exit status 3). --plot writes an SVG of the series.
      JSON (--json): {flagged, warnings, pings_sent, pings_received, samples: [{seconds,
      site, rss_kibibytes, fds, threads, fdb_entries, learned, aged, routes_received,
      routes_advertised}]}.
      """)

  @Option(help: "Seconds of traffic.") var duration: Double = 600
  @Option(help: "Seconds between samples.") var interval: Double = 5
  @Option(help: "Frames per second from s2-vm1.") var rate = 10000
  @Option(name: .customLong("new-macs"), help: "New source MACs per second.") var newMACs = 100
  @Option(name: .customLong("aging-time"), help: "The sites' MAC aging time (s).") var agingTime = 10
  @Option(name: .customLong("warm-up"), help: "Seconds before samples count toward the verdict.")
  var warmUp: Double?
  @Option(name: .customLong("rss-slack-mib"), help: "RSS growth allowed after the warm-up (MiB).")
  var rssSlackMiB = 8.0
  @Option(help: "Lab prefix (namespaces, state).") var prefix = "bsoak"
  @Option(help: "vxswitch binary.") var vxswitch = ".build/release/vxswitch"
  @Option(help: "Write an SVG plot of the series here.") var plot: String?
  @Flag(help: "JSON output.") var json = false

  func validate() throws {
    guard duration >= 10 else { throw ValidationError("--duration must be at least 10 s") }
    guard interval >= 0.5, interval <= duration / 3 else {
      throw ValidationError("--interval must be 0.5 s to a third of --duration")
    }
    guard (100...1_000_000).contains(rate) else { throw ValidationError("--rate must be 100 to 1000000") }
    guard newMACs >= 1, newMACs <= rate else { throw ValidationError("--new-macs must be 1 to --rate") }
    guard (1...3600).contains(agingTime) else { throw ValidationError("--aging-time must be 1 to 3600") }
  }

  func run() throws {
    guard getuid() == 0 else { throw ValidationError("Bench soak needs root (network namespaces)") }
    guard FileManager.default.isExecutableFile(atPath: vxswitch) else {
      throw ValidationError("\(vxswitch) is not built (swift build -c release)")
    }
    let report = try SoakRun(command: self).run()
    if json {
      print(Output.json(report))
    } else {
      print(SoakRun.table(report))
    }
    if let plot {
      try SoakPlot.svg(report).write(toFile: plot, atomically: true, encoding: .utf8)
      progress("plot written to \(plot)")
    }
    if report.flagged { throw ExitCode(3) }
  }
}

struct SoakSample: Codable {
  var seconds: Double
  var site: Int
  var rssKibibytes: Int
  var fds: Int
  var threads: Int
  var fdbEntries: Int
  var learned: Int
  var aged: Int
  var routesReceived: Int
  var routesAdvertised: Int
}

struct SoakReport: Codable {
  var durationSeconds: Double
  var warmUpSeconds: Double
  var rate: Int
  var newMACsPerSecond: Int
  var agingTime: Int
  var rssSlackMiB: Double
  var pingsSent: Int
  var pingsReceived: Int
  var samples: [SoakSample]
  var warnings: [String]
  var flagged: Bool
}

/// One soak run: the lab up, traffic and pings started, the samples taken, all torn down.
struct SoakRun {
  let command: SoakCommand
  static let sites = [1, 2]

  var warmUp: Double { command.warmUp ?? max(3 * Double(command.agingTime), command.duration / 5) }
  var stateDirectory: String { "/run/vxswitch-lab/\(command.prefix)" }

  func run() throws -> SoakReport {
    let c = command
    progress("soak: lab \(c.prefix), \(c.duration) s at \(c.rate) frames/s, \(c.newMACs) new MACs/s")
    try Shell.check([
      c.vxswitch, "lab", "--sites", "2", "--prefix", c.prefix, "--aging-time", "\(c.agingTime)",
    ])
    defer { Shell.run([c.vxswitch, "lab", "--down", "--prefix", c.prefix]) }
    let vm1 = "\(c.prefix)-s1-vm1"
    let vm2 = "\(c.prefix)-s2-vm1"
    // Site 2 must know s1-vm1's MAC (through BGP) before the flow is known unicast.
    var reached = false
    for _ in 0..<60 where !reached {
      reached =
        Shell.run(["ip", "netns", "exec", vm1, "ping", "-c", "1", "-W", "1", "192.168.100.21"]).status == 0
    }
    guard reached else { throw BenchError.failed("s1-vm1 does not reach s2-vm1 in lab \(c.prefix)") }

    let directory = NSTemporaryDirectory() + "vxswitch-soak-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let pcap = "\(directory)/churn.pcap"
    try writeChurnTrace(to: pcap)

    let bench =
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
      ?? CommandLine.arguments[0]
    let sender = try Shell.spawn(
      [
        "ip", "netns", "exec", vm2, bench, "send", "--interface", "eth0", "--pcap", pcap, "--seconds",
        "\(c.duration)", "--pps", "\(c.rate)",
      ], stdout: "\(directory)/send.out", stderr: "\(directory)/send.err")
    defer {
      sender.terminate()
      _ = sender.wait()
    }
    let pingCount = Int(c.duration * 5)
    let pinger = try Shell.spawn(
      [
        "ip", "netns", "exec", vm1, "ping", "-q", "-i", "0.2", "-W", "1", "-c", "\(pingCount)",
        "192.168.100.21",
      ],
      stdout: "\(directory)/ping.out", stderr: "\(directory)/ping.err")
    defer {
      pinger.terminate()
      _ = pinger.wait()
    }

    var samples: [SoakSample] = []
    let start = Date()
    var next = 0.0
    while true {
      let elapsed = Date().timeIntervalSince(start)
      if elapsed >= next {
        for site in Self.sites {
          let sample = try self.sample(site: site, seconds: elapsed)
          samples.append(sample)
          progress(
            String(
              format:
                "  %6.1f s site %d: RSS %.1f MiB, %d fds, %d threads, FDB %d, learnt %d, aged %d, routes in %d, out %d",
              elapsed, site, Double(sample.rssKibibytes) / 1024, sample.fds, sample.threads,
              sample.fdbEntries,
              sample.learned, sample.aged, sample.routesReceived, sample.routesAdvertised))
        }
        next += c.interval
      }
      if elapsed >= c.duration { break }
      usleep(UInt32(min(c.interval, max(0.05, next - elapsed)) * 1_000_000))
    }
    _ = pinger.wait()
    let pingSummary = (try? String(contentsOfFile: "\(directory)/ping.out", encoding: .utf8)) ?? ""
    let (sent, received) = Self.pingCounts(pingSummary)
    var report = SoakReport(
      durationSeconds: c.duration, warmUpSeconds: warmUp, rate: c.rate, newMACsPerSecond: c.newMACs,
      agingTime: c.agingTime, rssSlackMiB: c.rssSlackMiB, pingsSent: sent, pingsReceived: received,
      samples: samples, warnings: [],
      flagged: false)
    report.warnings = verdict(report)
    report.flagged = !report.warnings.isEmpty
    return report
  }

  /// Frames from s2-vm1's side to s1-vm1's MAC, to an address no VM has (s1-vm1 drops them
  /// in IP, and sends nothing back); source MAC k for frames [k*n, (k+1)*n) with n =
  /// rate / new MACs, over more than twice the aging time, so that a MAC comes back
  /// only after it has aged out.
  func writeChurnTrace(to path: String) throws {
    let c = command
    let framesPerMAC = max(1, c.rate / c.newMACs)
    let period = max(30, 3 * c.agingTime)
    let macs = c.newMACs * period
    let writer = try PcapWriter(path: path)
    let destination = MACAddress("02:00:00:00:01:01")!
    for index in 0..<macs {
      let source = MACAddress(rawValue: 0x025C_0000_0000 | UInt64(index))
      let frame = FrameBuilder.udpFrame(
        link: .init(destination: destination, source: source),
        source: IPAddress("192.168.100.200")!, destination: IPAddress("192.168.100.250")!, sourcePort: 40000,
        destinationPort: 9, payload: Array(repeating: 0x5C, count: 18))
      for _ in 0..<framesPerMAC { try writer.write(frame, timestampNanos: 0) }
    }
    try writer.close()
  }

  func sample(site: Int, seconds: Double) throws -> SoakSample {
    let pidText = try String(contentsOfFile: "\(stateDirectory)/site-\(site).pid", encoding: .utf8)
    guard let pid = Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0 else {
      throw BenchError.failed("site \(site)'s daemon is not running")
    }
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let rss =
      status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
      .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") } ?? 0
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count) ?? 0
    let metrics = Shell.run([
      "curl", "-s", "--max-time", "5", "--unix-socket", "\(stateDirectory)/site-\(site).sock",
      "http://localhost/metrics",
    ]).output
    let values = Self.metricSums(metrics)
    return SoakSample(
      seconds: seconds, site: site, rssKibibytes: rss, fds: fds, threads: threads,
      fdbEntries: values["vxswitch_fdb_entries", default: 0],
      learned: values["vxswitch_fdb_learned_total", default: 0],
      aged: values["vxswitch_fdb_aged_total", default: 0],
      routesReceived: values["vxswitch_bgp_routes_received_total", default: 0],
      routesAdvertised: values["vxswitch_bgp_routes_advertised_total", default: 0])
  }

  /// Each metric summed over its labels, from the Prometheus text format.
  static func metricSums(_ text: String) -> [String: Int] {
    var sums: [String: Int] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
      let parts = line.split(separator: " ")
      guard parts.count >= 2, let value = Double(parts[parts.count - 1]) else { continue }
      let name = String(parts[0].prefix { $0 != "{" })
      sums[name, default: 0] += Int(value)
    }
    return sums
  }

  /// "N packets transmitted, M received" from ping's summary.
  static func pingCounts(_ text: String) -> (sent: Int, received: Int) {
    guard let line = text.split(separator: "\n").first(where: { $0.contains("packets transmitted") }) else {
      return (0, 0)
    }
    let numbers = line.split(separator: " ").compactMap { Int($0) }
    return numbers.count >= 2 ? (numbers[0], numbers[1]) : (0, 0)
  }

  func verdict(_ report: SoakReport) -> [String] {
    var warnings: [String] = []
    let measured = report.samples.filter { $0.seconds >= report.warmUpSeconds }
    for site in Self.sites {
      let series = measured.filter { $0.site == site }
      guard let first = series.first, let last = series.last, series.count >= 2 else {
        warnings.append("site \(site): fewer than 2 samples after the \(report.warmUpSeconds) s warm-up")
        continue
      }
      // A leak is growth that stays; a pooled connection (the site channel's HTTPS client
      // closes idle ones after 60 s) or a metrics request being served may come and go.
      let fds = series.map(\.fds)
      if last.fds > first.fds || fds.max()! > first.fds + 2 {
        warnings.append(
          "site \(site): file descriptors \(first.fds) -> \(last.fds) (\(fds.min()!)..\(fds.max()!)) after the warm-up"
        )
      }
      let threads = series.map(\.threads)
      if last.threads > first.threads + 1 || threads.max()! - threads.min()! > 2 {
        warnings.append(
          "site \(site): threads \(first.threads) -> \(last.threads) (\(threads.min()!)..\(threads.max()!)) after the warm-up"
        )
      }
      let growth = Double(last.rssKibibytes - first.rssKibibytes) / 1024
      if growth > command.rssSlackMiB {
        warnings.append(String(format: "site %d: RSS grew %.1f MiB after the warm-up", site, growth))
      }
    }
    let site2 = measured.filter { $0.site == 2 }
    let site1 = measured.filter { $0.site == 1 }
    if let first = site2.first, let last = site2.last,
      last.learned == first.learned || last.aged == first.aged
    {
      warnings.append("no MAC churn at site 2 after the warm-up (learnt and aged MACs unchanged)")
    }
    if let first = site1.first, let last = site1.last, last.routesReceived == first.routesReceived {
      warnings.append("no BGP route churn at site 1 after the warm-up (no route received)")
    }
    if report.pingsSent == 0 || report.pingsReceived * 100 < report.pingsSent * 99 {
      warnings.append("pings s1-vm1 -> s2-vm1: \(report.pingsReceived) of \(report.pingsSent) answered")
    }
    return warnings
  }

  static func table(_ report: SoakReport) -> String {
    var text = Output.table(
      ["s", "site", "RSS MiB", "fds", "threads", "FDB", "learnt", "aged", "routes in", "routes out"],
      report.samples.map {
        [
          String(format: "%.0f", $0.seconds), "\($0.site)",
          String(format: "%.1f", Double($0.rssKibibytes) / 1024),
          "\($0.fds)", "\($0.threads)", "\($0.fdbEntries)", "\($0.learned)", "\($0.aged)",
          "\($0.routesReceived)",
          "\($0.routesAdvertised)",
        ]
      })
    text += "\npings answered: \(report.pingsReceived) of \(report.pingsSent)\n"
    text +=
      report.flagged
      ? "FLAGGED:\n" + report.warnings.map { "  \($0)" }.joined(separator: "\n")
      : String(
        format:
          "flat after the %.0f s warm-up: file descriptors unchanged, threads within 2, RSS within %.0f MiB",
        report.warmUpSeconds, report.rssSlackMiB)
    return text
  }
}
