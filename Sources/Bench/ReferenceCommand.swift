import ArgumentParser
import Dataplane
import Foundation

/// `Bench reference`: the C yardstick of the fast paths on the tables
/// `Bench memory` builds, for `scripts/bench-callgrind.sh` to count its instructions per
/// frame beside the pipeline's.
struct ReferenceCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "reference",
    abstract: "Forward a port's frames with the C yardstick (CReference) instead of the pipeline.",
    discussion: """
      Sets up the switch as `Bench memory` does (same config, FDB fill and warm-up), then
      hands its tables to a tight C implementation of the fast path (CReference.h): for an
      access port, encapsulation of untagged frames toward resolved VTEPs; for the
      underlay port, decapsulation of the first bridge domain's VNI toward untagged
      members; over IPv4 (no UDP checksums) or IPv6, with a fixed DSCP. It replays the input through it in
      vectors of 256: one unmeasured round, then --rounds measured ones. Exit status 3
      when a measured frame was not forwarded (the yardstick covers only that path).
      """)

  @Option(help: "Site config (TOML), e.g. written by `Bench gen`.")
  var config: String

  @Option(name: .customLong("in"), help: "PORT=FILE.pcap: frames entering port PORT.")
  var input: String

  @Option(help: "Measured rounds (0: set up and warm up only, for callgrind baselines).")
  var rounds = 10

  @Option(
    name: .customLong("fdb-size"),
    help: "Fill the FDB to this many entries with MACs the traffic does not use, as `Bench memory` does.")
  var fdbSize: Int?

  mutating func validate() throws {
    if rounds < 0 { throw ValidationError("--rounds must be at least 0") }
    if let fdbSize, !(1...16_000_000).contains(fdbSize) {
      throw ValidationError("--fdb-size must be 1...16000000")
    }
  }

  func run() throws {
    let siteConfig = try SiteConfig.load(path: config)
    guard let (port, path) = try MemoryCommand.parseInputs([input]).first else { throw ExitCode(2) }
    let trace = try PcapTrace(path: path)
    let frames = FrameSet(trace: trace)
    let bench = try MemoryBench(
      config: siteConfig, inputs: [MemoryInput(port: port, file: path, frames: frames)], fdbSize: fdbSize,
      frameSizeLabel: "")
    let direction = bench.directions[0]
    let process: (UnsafeMutablePointer<UnsafeMutableRawPointer>, UnsafeMutablePointer<Int32>, Int) -> Int
    let leftOver: () -> UInt64
    switch direction {
    case .encap:
      guard let inputs = bench.offline.encapsulationReference(interface: port) else {
        throw BenchError.usage(
          "--in \(port)=...: the reference covers a fixed DSCP and, over IPv4, no UDP checksums only")
      }
      let reference = EncapsulationReference(inputs)
      process = { reference.encapsulate(frames: $0, lengths: $1, count: $2) }
      leftOver = { reference.others + reference.ringFull }
    case .decap:
      guard let vni = siteConfig.bridgeDomains.first?.vni,
        let inputs = bench.offline.decapsulationReference(vni: vni)
      else {
        throw BenchError.usage("--in \(port)=...: the config has no bridge domain")
      }
      let reference = DecapsulationReference(inputs)
      process = { reference.decapsulate(frames: $0, lengths: $1, count: $2) }
      leftOver = { reference.others + reference.ringFull }
    }
    let vectorFrames = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: FrameVector.capacity)
    let vectorLengths = UnsafeMutablePointer<Int32>.allocate(capacity: FrameVector.capacity)
    defer {
      vectorFrames.deallocate()
      vectorLengths.deallocate()
    }
    func round() -> Int {
      var forwarded = 0
      var start = 0
      while start < frames.count {
        let end = min(frames.count, start + FrameVector.capacity)
        vectorFrames.update(from: frames.frames + start, count: end - start)
        vectorLengths.update(from: frames.lengths + start, count: end - start)
        forwarded += process(vectorFrames, vectorLengths, end - start)
        start = end
      }
      return forwarded
    }
    _ = round()
    let othersBefore = leftOver()
    let started = monotonicNanos()
    var forwarded = 0
    for _ in 0..<rounds { forwarded += round() }
    let nanoseconds = monotonicNanos() - started
    let measured = rounds * frames.count
    let left = leftOver() - othersBefore
    // Formatted alike with and without measured rounds: callgrind's difference between
    // the two is then the rounds alone.
    print(
      "reference \(direction.rawValue): \(measured) frames, \(forwarded) forwarded, \(left) left to a general path, "
        + "\(Double(nanoseconds) / Double(max(1, measured))) ns/frame")
    if left != 0 { throw ExitCode(3) }
  }
}
