import ArgumentParser
import Dataplane
import Foundation

struct MemoryCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "memory",
    abstract: "Replay pcap files through an in-memory switch (no I/O) and report frames/s and ns/frame.",
    discussion: """
      Encap = frames entering an access port; decap = frames entering the underlay port.
      Each --in is timed on its own. Drops, floods and frames that did not leave the switch
      are counted from the switch's statistics; such a run is flagged (exit status 3).
      Warm-up rounds (not timed) repeat until a whole round queues no learn event, so the
      measured rounds see the steady state; learn events queued while measuring flag the run.

      JSON (--json): {config, fdb_size_requested, fdb_entries, fdb_capacity, mode, flagged,
      results: [{port, file, direction, frame_size, frames_per_round, average_frame_bytes,
      rounds, frames, nanoseconds, ns_per_frame, frames_per_second, delivered, encapsulated,
      decapsulated, flood_copies, drops, drop_reasons, learn_events_queued,
      warm_up_rounds, flagged, warnings}], sweep: [{axis, fdb_size, frame_size, direction, ns_per_frame,
      frames_per_second, flagged}] (with --sweep)}.
      """)

  @Option(help: "Site config (TOML), e.g. written by `Bench gen`.")
  var config: String

  @Option(name: .customLong("in"), help: "PORT=FILE.pcap: frames entering port PORT (repeatable).")
  var inputs: [String] = []

  @Option(help: "Measured rounds over every input (0: load and set up only, for callgrind baselines).")
  var rounds: Int?

  @Option(help: "Measure for this many seconds instead of a number of rounds (default 2).")
  var seconds: Double?

  @Option(
    name: .customLong("fdb-size"),
    help: "Fill the FDB to this many entries (1k..1M) with MACs the traffic does not use.")
  var fdbSize: Int?

  @Flag(help: "Sweep FDB sizes 1k..1M and frame sizes 64..1518 and IMIX.")
  var sweep = false

  @Flag(help: "Print JSON instead of a table.")
  var json = false

  @Flag(
    name: .customLong("underlay-gso"),
    help: "The underlay transmits behind a virtio_net_hdr, joining datagrams into UDP GSO frames, as live.")
  var underlayGSO = false

  @Option(help: "Write an SVG plot of the sweep to this file.")
  var plot: String?

  mutating func validate() throws {
    if inputs.isEmpty { throw ValidationError("give at least one --in PORT=FILE.pcap") }
    if rounds != nil && seconds != nil { throw ValidationError("--rounds and --seconds exclude each other") }
    if let rounds, rounds < 0 { throw ValidationError("--rounds must be at least 0") }
    if let seconds, seconds <= 0 { throw ValidationError("--seconds must be positive") }
    if let fdbSize, !(1...16_000_000).contains(fdbSize) {
      throw ValidationError("--fdb-size must be 1...16000000")
    }
  }

  func run() throws {
    let report = try MemoryCommand.execute(
      configPath: config, inputs: inputs, rule: rounds.map { .rounds($0) } ?? .seconds(seconds ?? 2),
      fdbSize: fdbSize, sweep: sweep, verbose: !json, underlayGSO: underlayGSO)
    if json {
      print(Output.json(report))
    } else {
      print(Output.memoryTable(report))
    }
    if let plot {
      try Generator.writeText(plot, Plot.svg(memory: report, live: nil))
      progress("wrote \(plot)")
    }
    if report.flagged { throw ExitCode(3) }
  }

  static func parseInputs(_ inputs: [String]) throws -> [(port: String, path: String)] {
    try inputs.map { text in
      guard let equals = text.firstIndex(of: "=") else {
        throw ValidationError("--in takes PORT=FILE.pcap (got \(text))")
      }
      return (String(text[..<equals]), String(text[text.index(after: equals)...]))
    }
  }

  static let sweepFDBSizes = [1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20]
  static let sweepFrameSizes: [FrameSize] =
    [64, 128, 256, 512, 1024, 1280, 1518].map { .fixed($0) } + [.imix]

  static func execute(
    configPath: String, inputs: [String], rule: StopRule, fdbSize: Int?, sweep: Bool, verbose: Bool,
    underlayGSO: Bool = false
  ) throws -> MemoryReport {
    let config = try SiteConfig.load(path: configPath)
    var loaded: [MemoryInput] = []
    for (port, path) in try parseInputs(inputs) {
      let trace = try PcapTrace(path: path)
      if trace.count == 0 { throw BenchError.failed("\(path) holds no frames") }
      loaded.append(MemoryInput(port: port, file: path, frames: FrameSet(trace: trace)))
    }
    let label = sizeLabel(loaded)
    let bench = try MemoryBench(
      config: config, inputs: loaded, fdbSize: fdbSize, frameSizeLabel: label, underlayGSO: underlayGSO)
    let results = bench.run(rule)
    var report = MemoryReport(
      config: configPath, fdbSizeRequested: fdbSize, fdbEntries: bench.offline.core.fdb.count,
      fdbCapacity: bench.config.site.fdbCapacity, mode: modeName(rule), results: results, sweep: nil,
      flagged: results.contains { $0.flagged })
    guard sweep else { return report }

    // Every point's switch is built first; the points then take turns (A B C .. A B C ..)
    // over `sweepRepetitions` slices and each reports its median slice, so that load from
    // other tenants of a shared machine spreads over all points instead of skewing a few.
    var points: [SweepPoint] = []
    var fdbBenches: [(Int, MemoryBench)] = []
    for size in sweepFDBSizes {
      progress("sweep: building FDB \(size) entries, frames \(label)")
      fdbBenches.append(
        (
          size,
          try MemoryBench(
            config: config, inputs: loaded, fdbSize: size, frameSizeLabel: label, underlayGSO: underlayGSO)
        ))
    }
    let slice = slicedRule(rule)
    progress("sweep: measuring FDB sizes, \(sweepRepetitions) interleaved slices of \(modeName(slice))")
    for (bench, results) in zip(fdbBenches, interleaved(fdbBenches.map(\.1), slice)) {
      for result in results { points.append(point("fdb_size", bench.1, bench.0, result)) }
    }
    fdbBenches.removeAll()
    // Frame sizes: the same flows rebuilt at each size; the MTU is raised for jumbo encap.
    var sizedConfig = config
    sizedConfig.site.mtu = max(config.site.mtu, 9000)
    let fdbForSizes = fdbSize ?? (1 << 16)
    var sizeBenches: [MemoryBench] = []
    for size in sweepFrameSizes {
      progress("sweep: building frames \(size), FDB \(fdbForSizes) entries")
      var resized: [MemoryInput] = []
      for input in loaded {
        var frames: [[UInt8]] = []
        frames.reserveCapacity(input.frames.count)
        for index in 0..<input.frames.count {
          let original = input.frames.frameArray(index)
          frames.append(FrameResizer.resize(original, to: size.size(at: index)) ?? original)
        }
        resized.append(MemoryInput(port: input.port, file: input.file, frames: FrameSet(frames: frames)))
      }
      sizeBenches.append(
        try MemoryBench(
          config: sizedConfig, inputs: resized, fdbSize: fdbForSizes, frameSizeLabel: size.description))
    }
    progress("sweep: measuring frame sizes, \(sweepRepetitions) interleaved slices of \(modeName(slice))")
    for (bench, results) in zip(sizeBenches, interleaved(sizeBenches, slice)) {
      for result in results { points.append(point("frame_size", bench, fdbForSizes, result)) }
    }
    report.sweep = points
    report.flagged = report.flagged || points.contains { $0.flagged }
    return report
  }

  static let sweepRepetitions = 5

  /// One slice of a sweep point: the stop rule split over the repetitions.
  static func slicedRule(_ rule: StopRule) -> StopRule {
    switch rule {
    case .rounds(let n): return .rounds(max(1, n / sweepRepetitions))
    case .seconds(let s): return .seconds(s / Double(sweepRepetitions))
    }
  }

  /// Runs the benches in turn, `sweepRepetitions` times; per bench and input, the slice
  /// with the median ns/frame (flagged when any slice was).
  static func interleaved(_ benches: [MemoryBench], _ slice: StopRule) -> [[DirectionResult]] {
    var slices = Array(repeating: [[DirectionResult]](), count: benches.count)
    for _ in 0..<sweepRepetitions {
      for (index, bench) in benches.enumerated() { slices[index].append(bench.run(slice)) }
    }
    return slices.map { runs in
      (0..<(runs.first?.count ?? 0)).map { input in
        let sorted = runs.map { $0[input] }.sorted { $0.nsPerFrame < $1.nsPerFrame }
        var median = sorted[sorted.count / 2]
        let warnings = Set(sorted.flatMap(\.warnings))
        median.warnings = Array(warnings).sorted()
        median.flagged = sorted.contains { $0.flagged }
        return median
      }
    }
  }

  static func point(_ axis: String, _ bench: MemoryBench, _ fdb: Int, _ result: DirectionResult) -> SweepPoint
  {
    if result.flagged {
      progress(
        "  \(axis) \(fdb)/\(result.frameSize) \(result.direction): FLAGGED: \(result.warnings.joined(separator: "; "))"
      )
    }
    return SweepPoint(
      axis: axis, fdbSize: bench.offline.core.fdb.count, frameSize: result.frameSize,
      direction: result.direction,
      nsPerFrame: result.nsPerFrame, framesPerSecond: result.framesPerSecond, flagged: result.flagged)
  }

  static func modeName(_ rule: StopRule) -> String {
    switch rule {
    case .rounds(let n): return "rounds=\(n)"
    case .seconds(let s): return "seconds=\(s)"
    }
  }

  /// "64", "imix" (when the sizes are IMIX's), or "mixed".
  static func sizeLabel(_ inputs: [MemoryInput]) -> String {
    var sizes = Set<Int>()
    for input in inputs where input.frames.count > 0 {
      // Access sizes; VXLAN frames are labelled by their inner size.
      for index in 0..<min(input.frames.count, 1200) {
        let frame = input.frames.frameArray(index)
        if let (_, inner) = FrameResizer.splitVXLAN(frame) {
          sizes.insert(inner.count)
        } else {
          sizes.insert(frame.count)
        }
      }
    }
    if sizes.count == 1 { return String(sizes.first!) }
    if sizes == [64, 570, 1518] { return "imix" }
    return "mixed"
  }
}
