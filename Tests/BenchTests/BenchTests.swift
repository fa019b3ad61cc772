import Dataplane
import Foundation
import XCTest

@testable import Bench

/// Fast checks of `Bench gen` and `Bench memory` (no timing assertions).
final class BenchTests: XCTestCase {
  var directory = ""

  override func setUpWithError() throws {
    directory = NSTemporaryDirectory() + "bench-tests-\(getpid())-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: directory)
  }

  func plan(
    sources: Int = 5, destinations: Int = 7, size: FrameSize = .fixed(128), frames: Int = 120,
    underlay: UnderlayFamily = .ipv4
  ) -> TrafficPlan {
    var plan = TrafficPlan()
    plan.sources = sources
    plan.destinations = destinations
    plan.size = size
    plan.frames = frames
    plan.underlay = underlay
    return plan
  }

  static func mac(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
    (0..<6).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[offset + $1]) }
  }

  // MARK: gen

  func testGenWritesRequestedCountsAndSizes() throws {
    for family in [UnderlayFamily.ipv4, .ipv6] {
      let output = try Generator.write(plan(underlay: family), directory: directory + "/\(family)")
      let access = try PcapTrace(path: output.accessPath)
      let underlay = try PcapTrace(path: output.underlayPath)
      XCTAssertEqual(access.count, 120)
      XCTAssertEqual(underlay.count, 120)
      var sources = Set<UInt64>()
      var destinations = Set<UInt64>()
      for index in 0..<access.count {
        let frame = access.frame(at: index)
        XCTAssertEqual(frame.count, 128)
        destinations.insert(Self.mac(frame, 0))
        sources.insert(Self.mac(frame, 6))
        XCTAssertEqual(underlay.frame(at: index).count, 128 + (family == .ipv4 ? 50 : 70))
        // The underlay frame carries the reply: remote VM back to the local VM.
        let (outer, inner) = try XCTUnwrap(FrameResizer.splitVXLAN(underlay.frameArray(at: index)))
        XCTAssertEqual(outer.vni, 100)
        XCTAssertEqual(outer.underlay.destination, plan(underlay: family).localVTEP)
        XCTAssertEqual(Array(inner[0..<6]), Array(frame[6..<12]))
        XCTAssertEqual(Array(inner[6..<12]), Array(frame[0..<6]))
      }
      XCTAssertEqual(sources.count, 5)
      XCTAssertEqual(destinations.count, 7)
      XCTAssertEqual(access.truncatedFrameCount, 0)
    }
  }

  func testIMIXIsSevenFourOne() throws {
    let output = try Generator.write(plan(size: .imix, frames: 1200), directory: directory)
    let trace = try PcapTrace(path: output.accessPath)
    var histogram: [Int: Int] = [:]
    for index in 0..<trace.count { histogram[trace.frame(at: index).count, default: 0] += 1 }
    XCTAssertEqual(histogram, [64: 700, 570: 400, 1518: 100])
  }

  func testGeneratedConfigLoads() throws {
    for family in [UnderlayFamily.ipv4, .ipv6] {
      var p = plan(underlay: family)
      p.size = .fixed(1518)
      let output = try Generator.write(p, directory: directory + "/\(family)")
      let config = try SiteConfig.load(path: output.configPath)
      XCTAssertEqual(config.site.vtep, p.localVTEP)
      XCTAssertEqual(config.bridgeDomains.map(\.vni), [100])
      XCTAssertEqual(config.bridgeDomains[0].flood, [p.remoteVTEP])
      XCTAssertEqual(config.neighbors.map(\.ip), [p.remoteVTEP])
      XCTAssertEqual(config.staticMACs.count, 7 + 5)
      XCTAssertEqual(config.site.mtu, 9000)  // 1518-byte frames need more than 1500 encapsulated
    }
  }

  func testGeneratedFilesDecodeWithTshark() throws {
    guard
      let tshark = ["/usr/bin/tshark", "/usr/local/bin/tshark"].first(
        where: FileManager.default.isExecutableFile)
    else { throw XCTSkip("tshark is not installed") }
    for family in [UnderlayFamily.ipv4, .ipv6] {
      let output = try Generator.write(
        plan(size: .imix, frames: 60, underlay: family), directory: directory + "/\(family)")
      let vxlan = try run(
        tshark,
        [
          "-r", output.underlayPath, "-Y",
          "vxlan.vni == 100 && udp.dstport == 4789 && eth.dst[0:3] == 02:00:01", "-T", "fields", "-e",
          "frame.number",
        ])
      XCTAssertEqual(vxlan.split(separator: "\n").count, 60, "\(family)")
      let udp = try run(
        tshark,
        [
          "-r", output.accessPath, "-Y", "udp && ip.src == 10.200.0.0/16 && ip.dst == 10.201.0.0/16", "-T",
          "fields", "-e", "frame.number",
        ])
      XCTAssertEqual(udp.split(separator: "\n").count, 60)
      for path in [output.accessPath, output.underlayPath] {
        let malformed = try run(
          tshark,
          [
            "-r", path, "-Y", "_ws.malformed || _ws.expert.severity >= error", "-T", "fields", "-e",
            "frame.number",
          ])
        XCTAssertEqual(malformed.trimmingCharacters(in: .whitespacesAndNewlines), "", path)
      }
    }
  }

  func run(_ tool: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0, "\(tool) \(arguments)")
    return String(decoding: data, as: UTF8.self)
  }

  func testResizeKeepsAddresses() throws {
    let p = plan()
    let access = TrafficPlan.accessFrame(p.flow(3), size: 64)
    let resized = try XCTUnwrap(FrameResizer.resize(access, to: 512))
    XCTAssertEqual(resized.count, 512)
    XCTAssertEqual(Array(resized[0..<12]), Array(access[0..<12]))
    XCTAssertEqual(resized, TrafficPlan.accessFrame(p.flow(3), size: 512))
    let underlay = p.underlayFrames()[3]
    let bigger = try XCTUnwrap(FrameResizer.resize(underlay, to: 1518))
    XCTAssertEqual(bigger.count, 1518 + 50)
    XCTAssertEqual(Array(bigger[0..<34]).count, 34)
    XCTAssertEqual(bigger[26..<34], underlay[26..<34])
  }

  // MARK: memory

  func memory(_ p: TrafficPlan, fdbSize: Int? = 4096, rounds: Int = 2, inputs: [String]? = nil) throws
    -> MemoryReport
  {
    let output = try Generator.write(p, directory: directory)
    let list = inputs ?? ["vm1=\(output.accessPath)", "eth1=\(output.underlayPath)"]
    return try MemoryCommand.execute(
      configPath: output.configPath, inputs: list, rule: .rounds(rounds), fdbSize: fdbSize, sweep: false,
      verbose: false)
  }

  func testMemoryForwardsEveryFrameAsKnownUnicast() throws {
    for family in [UnderlayFamily.ipv4, .ipv6] {
      for size in [FrameSize.fixed(64), .imix] {
        let report = try memory(plan(size: size, frames: 600, underlay: family))
        XCTAssertFalse(report.flagged, "\(family) \(size): \(report.results.flatMap(\.warnings))")
        XCTAssertGreaterThanOrEqual(report.fdbEntries, 4096)
        XCTAssertEqual(report.results.map(\.direction), [.encap, .decap])
        for result in report.results {
          XCTAssertEqual(result.frames, 1200)
          XCTAssertEqual(result.drops, 0, "\(result.dropReasons)")
          XCTAssertEqual(result.floodCopies, 0)
          XCTAssertEqual(result.delivered, 1200)
          XCTAssertEqual(result.learnEventsQueued, 0)
          XCTAssertGreaterThan(result.nsPerFrame, 0)
        }
        XCTAssertEqual(report.results[0].encapsulated, 1200)
        XCTAssertEqual(report.results[1].decapsulated, 1200)
        XCTAssertEqual(report.results[0].frameSize, size.description)
      }
    }
  }

  func testMemoryRoundsZeroOnlySetsUp() throws {
    let report = try memory(plan(), rounds: 0)
    XCTAssertEqual(report.results.map(\.frames), [0, 0])
    XCTAssertFalse(report.flagged)
  }

  func testFloodingIsFlagged() throws {
    let output = try Generator.write(plan(), directory: directory)
    // The same site without its static entries: remote VMs are unknown, so encap floods.
    let text = try String(contentsOfFile: output.configPath, encoding: .utf8)
    let cut = try XCTUnwrap(text.range(of: "[[static_mac]]"))
    let config = directory + "/flood.toml"
    try String(text[..<cut.lowerBound]).write(toFile: config, atomically: true, encoding: .utf8)
    let report = try MemoryCommand.execute(
      configPath: config, inputs: ["vm1=\(output.accessPath)"], rule: .rounds(1), fdbSize: nil, sweep: false,
      verbose: false)
    XCTAssertTrue(report.flagged)
    XCTAssertEqual(report.results[0].floodCopies, 120)
    XCTAssertTrue(report.results[0].warnings.contains { $0.contains("flooding") })
  }

  func testUnknownPortIsAnError() throws {
    XCTAssertThrowsError(try memory(plan(), inputs: ["nope=\(directory)/access.pcap"]))
  }

  func testJSONHasDocumentedFields() throws {
    let report = try memory(plan(), fdbSize: 1024, rounds: 1)
    let object = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(Output.json(report).utf8)) as? [String: Any])
    for key in ["config", "fdb_size_requested", "fdb_entries", "fdb_capacity", "mode", "results", "flagged"] {
      XCTAssertNotNil(object[key], key)
    }
    let results = try XCTUnwrap(object["results"] as? [[String: Any]])
    XCTAssertEqual(results.count, 2)
    for key in [
      "port", "file", "direction", "frame_size", "frames_per_round", "average_frame_bytes", "rounds",
      "frames",
      "nanoseconds", "ns_per_frame", "frames_per_second", "delivered", "encapsulated", "decapsulated",
      "flood_copies", "drops", "drop_reasons", "learn_events_queued", "flagged", "warnings",
    ] {
      XCTAssertNotNil(results[0][key], key)
    }
    XCTAssertEqual(results.map { $0["direction"] as? String }, ["encap", "decap"])
    // The JSON reads back (Bench live --memory-json uses it for the plot).
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    XCTAssertEqual(
      try decoder.decode(MemoryReport.self, from: Data(Output.json(report).utf8)).results.count, 2)
  }

  // MARK: output

  func testPlotDrawsBothPanels() {
    var report = MemoryReport(
      config: "c", fdbSizeRequested: nil, fdbEntries: 1, fdbCapacity: 1, mode: "rounds=1", results: [],
      sweep: [],
      flagged: false)
    for (index, fdb) in [1024, 65536].enumerated() {
      report.sweep?.append(
        SweepPoint(
          axis: "fdb_size", fdbSize: fdb + 40, frameSize: "64", direction: .encap, nsPerFrame: 50,
          framesPerSecond: 2e7 - Double(index), flagged: false))
    }
    for size in ["64", "1518"] {
      report.sweep?.append(
        SweepPoint(
          axis: "frame_size", fdbSize: 65536, frameSize: size, direction: .decap, nsPerFrame: 60,
          framesPerSecond: 1.5e7, flagged: false))
    }
    let svg = Plot.svg(memory: report, live: nil)
    XCTAssertTrue(svg.hasPrefix("<svg"))
    XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 2)
    XCTAssertTrue(svg.contains(">64k<"))
    XCTAssertTrue(svg.contains(">1518<"))
  }

  func testLiveOutputCheckClassifiesTcpdumpRecords() {
    let text = """
      1795575875.068444 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 104: 10.202.0.1.49401 > 10.202.0.2.4789: VXLAN, flags [I] (0x08), vni 100
      92:69:21:40:29:66 > 01:00:5e:00:00:16, ethertype IPv4 (0x0800), length 54: 0.0.0.0 > 224.0.0.22: igmp v3 report, 1 group record(s)
      1795575875.320758 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 114: 10.202.0.1.45010 > 10.202.0.2.4789: VXLAN, flags [I] (0x08), vni 100
      02:00:01:00:00:00 > 02:00:02:00:00:00, ethertype IPv4 (0x0800), length 64: 10.200.0.0.1024 > 10.201.0.0.5000: UDP, length 22
      1795575875.320827 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 114: 10.202.0.1.38230 > 10.202.0.2.4789: VXLAN, flags [I] (0x08), vni 200
      02:00:01:00:00:01 > 02:00:02:00:00:01, ethertype IPv4 (0x0800), length 64: 10.200.0.1.8943 > 10.201.0.1.5001: UDP, length 22
      """
    let records = LiveBench.records(text)
    XCTAssertEqual(records.count, 3)
    let (good, bad, foreign) = LiveBench.classify(records, direction: .encap, plan: TrafficPlan())
    XCTAssertEqual(good.count, 1)
    XCTAssertEqual(bad.count, 1)  // wrong VNI
    XCTAssertEqual(foreign.count, 1)  // the bridge's own IGMP
  }
}

/// `Bench baseline-forward`'s header and `Bench live --search`'s bisection.
final class LiveBaselineTests: XCTestCase {
  func testBaselineHeaderBuildsTheVXLANFrameFrameBuilderBuilds() throws {
    let plan = TrafficPlan()
    let template = BaselineHeader.benchTemplate(plan)
    XCTAssertEqual(template.count, 50)
    let header = try XCTUnwrap(BaselineHeader(template: template))
    XCTAssertEqual(BaselineHeader.bytes(hex: BaselineHeader.hex(template)), template)
    for size in [60, 64, 512, 1518, 8950] {
      let inner = TrafficPlan.accessFrame(plan.flow(3), size: size)
      let buffer = UnsafeMutableRawPointer.allocate(byteCount: 50 + inner.count, alignment: 8)
      defer { buffer.deallocate() }
      header.write(to: buffer, innerLength: inner.count)
      inner.withUnsafeBytes { (buffer + 50).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
      let built = Array(UnsafeRawBufferPointer(start: buffer, count: 50 + inner.count))
      let expected = FrameBuilder.vxlanFrame(
        inner: inner, vni: plan.vni,
        underlay: .init(
          link: .init(destination: TrafficPlan.remoteUnderlayMAC, source: TrafficPlan.underlayMAC),
          source: plan.localVTEP, destination: plan.remoteVTEP, sourcePort: 52000))
      XCTAssertEqual(built, expected, "size \(size)")
      let (outer, decoded) = try XCTUnwrap(FrameResizer.splitVXLAN(built))
      XCTAssertEqual(outer.vni, plan.vni)
      XCTAssertEqual(outer.underlay.destination, plan.remoteVTEP)
      XCTAssertEqual(decoded, inner)
      XCTAssertEqual(Int(FrameResizer.be16(built, 16)), 36 + size)
      XCTAssertEqual(Int(FrameResizer.be16(built, 38)), 16 + size)
    }
    XCTAssertNil(BaselineHeader(template: Array(template.dropLast())))
    XCTAssertNil(BaselineHeader.bytes(hex: "zz" + String(BaselineHeader.hex(template).dropFirst(2))))
  }

  func testBaselineFramesDecodeWithTshark() throws {
    guard
      let tsharkPath = ["/usr/bin/tshark", "/usr/local/bin/tshark"].first(
        where: FileManager.default.isExecutableFile)
    else { throw XCTSkip("tshark is not installed") }
    let plan = TrafficPlan()
    let header = try XCTUnwrap(BaselineHeader(template: BaselineHeader.benchTemplate(plan)))
    let sizes = [60, 64, 570, 1518]
    let frames = sizes.map { size -> [UInt8] in
      let inner = TrafficPlan.accessFrame(plan.flow(size), size: size)
      var frame = [UInt8](repeating: 0, count: 50)
      frame.withUnsafeMutableBytes { header.write(to: $0.baseAddress!, innerLength: inner.count) }
      return frame + inner
    }
    let path = NSTemporaryDirectory() + "baseline-\(getpid())-\(UUID().uuidString).pcap"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try Generator.writePcap(path, frames)
    func tshark(_ arguments: [String]) throws -> [String] {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: tsharkPath)
      process.arguments = ["-r", path, "-o", "ip.check_checksum:TRUE"] + arguments
      let pipe = Pipe()
      process.standardOutput = pipe
      process.standardError = FileHandle.nullDevice
      try process.run()
      let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      process.waitUntilExit()
      XCTAssertEqual(process.terminationStatus, 0)
      return text.split(separator: "\n").map(String.init)
    }
    // ip.len appears twice (outer, inner), outer first.
    let lines = try tshark([
      "-Y", "vxlan.vni == 100 && udp.dstport == 4789 && ip.dst == 10.202.0.2", "-T", "fields", "-E",
      "separator=;", "-e", "ip.len", "-e", "udp.length",
    ])
    XCTAssertEqual(lines.count, sizes.count)
    for (line, size) in zip(lines, sizes) {
      XCTAssertTrue(line.hasPrefix("\(36 + size),"), line)
      XCTAssertTrue(line.contains(";\(16 + size),"), line)
    }
    let bad = try tshark([
      "-Y", "ip.checksum.status == 0 || _ws.malformed || _ws.expert.severity >= error", "-T", "fields", "-e",
      "frame.number",
    ])
    XCTAssertEqual(bad, [])
  }

  func testBisectionConvergesToTheLossFreeRate() {
    for threshold in [1, 123_456, 700_000, 999_999] {
      var probes: [Int] = []
      let found = RateSearch.bisect(high: 1_000_000, steps: 30) { rate in
        probes.append(rate)
        return rate <= threshold ? 0.05 : 3
      }
      XCTAssertEqual(found, threshold)
      XCTAssertLessThanOrEqual(probes.count, 30)
    }
    // Six steps: below the threshold by at most high / 2^6.
    var probes = 0
    let six = RateSearch.bisect(high: 640_000, steps: 6) { rate in
      probes += 1
      return rate <= 300_000 ? 0 : 1
    }
    XCTAssertEqual(probes, 6)
    XCTAssertLessThanOrEqual(six, 300_000)
    XCTAssertGreaterThan(six, 300_000 - 640_000 / 64)
    // Nothing passes: 0. Loss exactly at the limit fails.
    XCTAssertEqual(RateSearch.bisect(high: 1000, steps: 6) { _ in 50 }, 0)
    XCTAssertEqual(RateSearch.bisect(high: 1000, steps: 12) { _ in RateSearch.lossLimit }, 0)
  }

  func testSummaryHasBaselineRatios() {
    func m(_ system: LiveBench.System, _ rate: Double) -> LiveBench.Measurement {
      LiveBench.Measurement(
        system: system, direction: .encap, frameSize: "64", repetition: 0, seconds: 1, offered: 100,
        delivered: UInt64(rate), deliveredPerSecond: rate, lossPercent: 0, cpuSeconds: 1, cpuNsPerFrame: 10,
        cpuMethod: "", systemCPUSeconds: 0, softirqCPUSeconds: 0, outputChecked: true)
    }
    func r(_ system: LiveBench.System, _ rate: Int) -> LiveBench.SearchResult {
      LiveBench.SearchResult(
        system: system, direction: .encap, frameSize: "64", lossFreeRate: rate, flatOutRate: 2 * rate,
        generatorBound: false, probes: [])
    }
    let summary = LiveBench.summarize(
      [m(.vxswitch, 90), m(.bridge, 60), m(.baseline, 100)],
      searches: [r(.vxswitch, 80), r(.bridge, 50), r(.baseline, 100)])
    XCTAssertEqual(summary.count, 1)
    XCTAssertEqual(summary[0].ratio ?? 0, 1.5, accuracy: 1e-9)
    XCTAssertEqual(summary[0].baselineRatio ?? 0, 0.9, accuracy: 1e-9)
    XCTAssertEqual(summary[0].lossFreeBaselineRatio ?? 0, 0.8, accuracy: 1e-9)
    XCTAssertEqual(summary[0].bridgeLossFreeRate, 50)
    let report = LiveBench.Report(
      generator: "g", rate: "flat out", vxswitch: "v", notes: [], measurements: [], summary: summary,
      searches: [r(.vxswitch, 80)])
    let table = Output.liveTable(report)
    XCTAssertTrue(table.contains("vxs/baseline"))
    XCTAssertTrue(table.contains("0.90"))
    XCTAssertTrue(table.contains("0.80"))
    var bound = r(.baseline, 100)
    bound.generatorBound = true
    let unbounded = LiveBench.summarize([m(.vxswitch, 90)], searches: [r(.vxswitch, 80), bound])
    XCTAssertNil(unbounded[0].lossFreeBaselineRatio)
    XCTAssertEqual(unbounded[0].baselineLossFreeRate, 100)
  }
}
