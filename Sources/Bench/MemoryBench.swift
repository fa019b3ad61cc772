import Dataplane

/// One input of `Bench memory`: frames entering the switch on `port`.
struct MemoryInput {
  var port: String
  var file: String
  var frames: FrameSet
}

enum Direction: String, Codable {
  case encap, decap
}

/// Result of one input over the measured rounds. JSON keys are snake_case (see README in
/// `Bench memory --help`).
struct DirectionResult: Codable {
  var port: String
  var file: String
  var direction: Direction
  var frameSize: String
  var framesPerRound: Int
  var averageFrameBytes: Double
  var rounds: Int
  var frames: Int
  var nanoseconds: UInt64
  var nsPerFrame: Double
  var framesPerSecond: Double
  /// Frames transmitted by the switch on any port (encapsulated or delivered locally).
  var delivered: UInt64
  var encapsulated: UInt64
  var decapsulated: UInt64
  var floodCopies: UInt64
  var drops: UInt64
  var dropReasons: [String: UInt64]
  /// Learn events queued during the measured rounds: 0 in the steady state.
  var learnEventsQueued: UInt64
  /// Unmeasured rounds run before measuring (the last of them queued no learn event).
  var warmUpRounds: Int
  var flagged: Bool
  var warnings: [String]
}

struct MemoryReport: Codable {
  var config: String
  var fdbSizeRequested: Int?
  var fdbEntries: Int
  var fdbCapacity: Int
  var mode: String
  var results: [DirectionResult]
  var sweep: [SweepPoint]?
  var flagged: Bool
}

struct SweepPoint: Codable {
  /// "fdb_size" or "frame_size": which parameter this point varies.
  var axis: String
  var fdbSize: Int
  var frameSize: String
  var direction: Direction
  var nsPerFrame: Double
  var framesPerSecond: Double
  var flagged: Bool
}

enum StopRule {
  case rounds(Int)
  case seconds(Double)
}

/// Builds an `OfflineSwitch` with discarding ports, fills its FDB, warms it up, and
/// replays the inputs through `process` in vectors of 256.
final class MemoryBench {
  let config: SiteConfig
  let offline: OfflineSwitch
  let inputs: [MemoryInput]
  let ingress: [UInt16]
  let directions: [Direction]
  let frameSizeLabel: String
  private(set) var fillWarning: String?

  static let now: UInt32 = 1

  /// - Parameter fdbSize: total FDB entries wanted (traffic's own entries included).
  /// - Parameter underlayGSO: the underlay port transmits behind a `virtio_net_hdr`, so
  ///   its ring joins datagrams into UDP GSO frames (`UnderlaySegmenter`), as live.
  init(
    config original: SiteConfig, inputs: [MemoryInput], fdbSize: Int?, frameSizeLabel: String,
    underlayGSO: Bool = false
  ) throws {
    var config = original
    let trafficMACs = inputs.reduce(0) { $0 + min($1.frames.count, 2 * 65536) } + config.staticMACs.count
    if let fdbSize, fdbSize + trafficMACs > config.site.fdbCapacity {
      config.site.fdbCapacity = fdbSize + trafficMACs
    }
    self.config = config
    self.inputs = inputs
    self.frameSizeLabel = frameSizeLabel
    let underlayName = config.site.underlay
    offline = OfflineSwitch(
      config: config, output: { _ in .discard }, virtioNetHeader: { underlayGSO && $0 == underlayName })
    let underlay = offline.interfaceIndex(config.site.underlay)
    var ingress: [UInt16] = []
    var directions: [Direction] = []
    for input in inputs {
      guard let index = offline.interfaceIndex(input.port) else {
        throw BenchError.usage(
          "--in \(input.port)=...: no such port in the config (ports: \(offline.core.interfaces.joined(separator: ", ")))"
        )
      }
      ingress.append(UInt16(index))
      directions.append(index == underlay ? .decap : .encap)
    }
    self.ingress = ingress
    self.directions = directions

    warmUp()
    if let fdbSize { fill(to: fdbSize) }
    warmUp()
  }

  /// Most unmeasured rounds `warmUp` runs before it gives up on learning converging.
  static let warmUpRoundLimit = 32

  /// Unmeasured rounds run so far, and whether the last `warmUp` saw learning converge
  /// and the flow cache policies settle.
  private(set) var warmUpRounds = 0
  private(set) var learningConverged = false
  private(set) var flowCachePoliciesSettled = false

  /// Unmeasured rounds of every input until a whole round queues no learn event, the
  /// learn queues drained after every vector as the daemon's learner drains them while
  /// traffic flows, and the flow cache policies have settled. One round is not enough
  /// when the traffic has more new sources than a learn queue holds: the rest overflow
  /// and would be learnt during the measured rounds, which would then time the learning
  /// path instead of the steady state. Nor for traffic that misses the flow cache: the
  /// policy's retries start close together and back off to one every 256 batches, the
  /// steady state (`FlowCachePolicy`).
  func warmUp() {
    let statistics = offline.core.statistics
    var vector = FrameVector()
    learningConverged = false
    flowCachePoliciesSettled = false
    var rounds = 0
    while rounds < Self.warmUpRoundLimit && !(learningConverged && flowCachePoliciesSettled) {
      let queuedBefore = statistics[Counter.learnEventsQueued]
      let overflowBefore = statistics[Counter.learnQueueOverflow]
      for (position, input) in inputs.enumerated() {
        pass(input.frames, ingress: ingress[position], vector: &vector, drainingLearnQueues: true)
      }
      offline.core.drainLearnQueues()
      rounds += 1
      warmUpRounds += 1
      learningConverged =
        statistics[Counter.learnEventsQueued] == queuedBefore
        && statistics[Counter.learnQueueOverflow] == overflowBefore
      flowCachePoliciesSettled = offline.pipeline.flowCachePoliciesSettled
    }
  }

  /// Adds remote entries for MACs the traffic never uses until the FDB holds `target`.
  func fill(to target: Int) {
    let core = offline.core
    guard let domainConfig = config.bridgeDomains.first,
      let domain = core.state.domainIndex(vni: domainConfig.vni)
    else {
      fillWarning = "no bridge domain to fill"
      return
    }
    let vtep =
      domainConfig.flood.first ?? config.neighbors.first?.ip
      ?? (config.site.vtep.isIPv4 ? IPAddress.v4(0x0ACA_00FE) : IPAddress("fd00:202::fe")!)
    var index = 0
    guard core.fdb.count < target else { return }
    core.installRemoteMAC(vni: domainConfig.vni, mac: TrafficPlan.fillerMAC(index), vtep: vtep)
    index += 1
    let template = core.fdb.lookup(FDBKey(bridgeDomain: domain, mac: TrafficPlan.fillerMAC(0).rawValue))
    var full = false
    while core.fdb.count < target && !full {
      let chunk = min(4096, target - core.fdb.count)
      core.fdb.batch { access in
        for _ in 0..<chunk {
          let outcome = access.update(
            FDBKey(bridgeDomain: domain, mac: TrafficPlan.fillerMAC(index).rawValue)
          ) { _ in
            .set(template)
          }
          index += 1
          if outcome == .full {
            full = true
            break
          }
        }
      }
    }
    if full { fillWarning = "FDB full at \(core.fdb.count) entries (wanted \(target))" }
  }

  /// Feeds every frame of `set` once, in vectors of 256. Allocation-free.
  @inline(__always)
  func pass(_ set: FrameSet, ingress: UInt16, vector: inout FrameVector, drainingLearnQueues: Bool = false) {
    let frames = set.frames
    let lengths = set.lengths
    let count = set.count
    var start = 0
    while start < count {
      let end = min(count, start &+ FrameVector.capacity)
      // Frame pointers and lengths copied in bulk; VLAN tags and flags stay 0 (the
      // pipeline never writes them), so the harness costs under one instruction a frame.
      vector.frames.update(from: frames + start, count: end &- start)
      vector.lengths.update(from: lengths + start, count: end &- start)
      vector.count = end &- start
      vector.ingress = ingress
      vector.now = Self.now
      offline.process(&vector)
      offline.flush()
      if drainingLearnQueues { offline.core.drainLearnQueues() }
      start = end
    }
  }

  /// Runs the measured rounds. Nothing in here allocates: the vector, the counter
  /// snapshots and the accumulators are allocated before the loop.
  func run(_ rule: StopRule, progressEvery: Double = 0) -> [DirectionResult] {
    let statistics = offline.core.statistics
    let counterCount = Counter.count
    let inputCount = inputs.count
    let before = UnsafeMutablePointer<UInt64>.allocate(capacity: counterCount)
    let sums = UnsafeMutablePointer<UInt64>.allocate(capacity: counterCount * max(1, inputCount))
    sums.initialize(repeating: 0, count: counterCount * max(1, inputCount))
    before.initialize(repeating: 0, count: counterCount)
    let nanos = UnsafeMutablePointer<UInt64>.allocate(capacity: max(1, inputCount))
    nanos.initialize(repeating: 0, count: max(1, inputCount))
    defer {
      before.deallocate()
      sums.deallocate()
      nanos.deallocate()
    }
    var vector = FrameVector()
    var rounds = 0
    let started = monotonicNanos()
    var lastProgress = started
    let limitRounds: Int
    let limitNanos: UInt64
    switch rule {
    case .rounds(let n):
      limitRounds = n
      limitNanos = .max
    case .seconds(let s):
      limitRounds = .max
      limitNanos = UInt64(s * 1e9)
    }
    while rounds < limitRounds {
      for position in 0..<inputCount {
        for counter in 0..<counterCount { before[counter] = statistics[counter] }
        let t0 = monotonicNanos()
        pass(inputs[position].frames, ingress: ingress[position], vector: &vector)
        let t1 = monotonicNanos()
        nanos[position] &+= t1 &- t0
        let row = sums + position &* counterCount
        for counter in 0..<counterCount { row[counter] &+= statistics[counter] &- before[counter] }
      }
      rounds &+= 1
      let now = monotonicNanos()
      if now &- started >= limitNanos { break }
      if progressEvery > 0 && Double(now &- lastProgress) >= progressEvery * 1e9 {
        lastProgress = now
        progress("  round \(rounds), \(Double(now - started) / 1e9) s")
      }
    }
    offline.core.drainLearnQueues()

    var results: [DirectionResult] = []
    for (position, input) in inputs.enumerated() {
      let row = sums + position * counterCount
      let frames = input.frames.count * rounds
      var reasons: [String: UInt64] = [:]
      var drops: UInt64 = 0
      for reason in DropReason.allCases where row[Counter.drop(reason)] > 0 {
        reasons[reason.name] = row[Counter.drop(reason)]
        drops += row[Counter.drop(reason)]
      }
      var delivered: UInt64 = 0
      for interface in 0..<offline.ports.count { delivered += row[Counter.txFrames(interface)] }
      let ns = nanos[position]
      let direction = directions[position]
      var result = DirectionResult(
        port: input.port, file: input.file, direction: direction, frameSize: frameSizeLabel,
        framesPerRound: input.frames.count, averageFrameBytes: input.frames.averageBytes, rounds: rounds,
        frames: frames, nanoseconds: ns, nsPerFrame: frames > 0 ? Double(ns) / Double(frames) : 0,
        framesPerSecond: ns > 0 ? Double(frames) * 1e9 / Double(ns) : 0, delivered: delivered,
        encapsulated: row[Counter.encapsulated], decapsulated: row[Counter.decapsulated],
        floodCopies: row[Counter.floodCopies], drops: drops, dropReasons: reasons,
        learnEventsQueued: row[Counter.learnEventsQueued], warmUpRounds: warmUpRounds, flagged: false,
        warnings: [])
      result.warnings = Self.check(result)
      if let fillWarning { result.warnings.append(fillWarning) }
      if !learningConverged {
        result.warnings.append(
          "learning had not converged after \(Self.warmUpRoundLimit) warm-up rounds: the measured rounds include learning"
        )
      }
      if !flowCachePoliciesSettled {
        result.warnings.append(
          "the flow cache policy had not settled after \(Self.warmUpRoundLimit) warm-up rounds: the measured rounds include its first retries"
        )
      }
      result.flagged = !result.warnings.isEmpty
      results.append(result)
    }
    return results
  }

  /// What makes a run suspect: drops, flooding, frames not forwarded.
  static func check(_ result: DirectionResult) -> [String] {
    guard result.frames > 0 else { return [] }
    var warnings: [String] = []
    let frames = Double(result.frames)
    if result.drops > 0 {
      let reasons = result.dropReasons.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }
      warnings.append(
        String(
          format: "%.1f%% dropped (%@)", Double(result.drops) / frames * 100, reasons.joined(separator: ", "))
      )
    }
    if result.floodCopies > 0 {
      warnings.append(
        String(
          format: "flooding: %llu copies for %d frames (unknown destinations)", result.floodCopies,
          result.frames))
    }
    if result.delivered < UInt64(result.frames) && result.drops == 0 {
      warnings.append("only \(result.delivered) of \(result.frames) frames left the switch")
    }
    if result.learnEventsQueued > 0 {
      warnings.append(
        "\(result.learnEventsQueued) learn events queued during the measured rounds: frames took the learning path"
      )
    }
    if result.direction == .encap && result.encapsulated == 0 && result.delivered > 0 {
      warnings.append("nothing encapsulated: the traffic was switched locally")
    }
    return warnings
  }
}
