import Foundation
import XCTest

@testable import Dataplane

final class ReplayTests: XCTestCase {
  typealias S = TestSite
  var directory = ""

  override func setUpWithError() throws {
    directory = NSTemporaryDirectory() + "vxswitch-replay-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: directory)
  }

  private func writePcap(_ name: String, _ frames: [(UInt64, [UInt8])]) throws -> String {
    let path = directory + "/" + name
    let writer = try PcapWriter(path: path)
    for (time, frame) in frames { try writer.write(frame, timestampNanos: time) }
    try writer.close()
    return path
  }

  private func read(_ path: String) throws -> [[UInt8]] {
    let trace = try PcapTrace(path: path)
    return (0..<trace.count).map { trace.frameArray(at: $0) }
  }

  func testReplayMergesInputsByTimeAndWritesEveryPortsOutput() throws {
    let second: UInt64 = 1_000_000_000
    let hello = S.ping(from: S.hostA, to: .broadcast)
    let reply = S.vxlan(S.ping(from: S.hostR, to: S.hostA))
    let again = S.ping(from: S.hostA, to: S.hostR)
    // vm1's file holds the first and third frame, eth1's the second: merged by time.
    let vm1 = try writePcap("vm1-in.pcap", [(10 * second, hello), (12 * second, again)])
    let eth1 = try writePcap("eth1-in.pcap", [(11 * second, reply)])
    let report = try Replay(
      config: S.config(),
      inputs: [.init(port: "vm1", path: vm1), .init(port: "eth1", path: eth1)],
      outputDirectory: directory + "/out"
    ).run()
    XCTAssertEqual(try read(directory + "/out/vm2.pcap"), [hello])
    XCTAssertEqual(try read(directory + "/out/vm1.pcap"), [S.ping(from: S.hostR, to: S.hostA)])
    let underlay = try read(directory + "/out/eth1.pcap")
    XCTAssertEqual(underlay.count, 3, "hello flooded to two VTEPs, then the reply's sender learned: one copy")
    XCTAssertEqual(Array(underlay[2][30...33]), [10, 0, 0, 2])
    XCTAssertEqual(report.encapsulated, 3)
    XCTAssertEqual(report.decapsulated, 1)
    XCTAssertEqual(report.ports.first { $0.name == "vm1" }?.rxFrames, 2)
    XCTAssertEqual(report.drops, [:])
    let timestamps = try PcapTrace(path: directory + "/out/eth1.pcap").timestampsNanos
    XCTAssertEqual(timestamps, [10 * second, 10 * second, 12 * second])
  }

  func testUnderlayOutputDecodesInTshark() throws {
    guard
      let tshark = ["/usr/bin/tshark", "/usr/local/bin/tshark"].first(where: FileManager.default.fileExists)
    else {
      throw XCTSkip("tshark is not installed: apt-get install tshark")
    }
    let input = try writePcap("in.pcap", [(1, S.ping(from: S.hostA, to: S.hostR))])
    _ = try Replay(config: S.config(), inputs: [.init(port: "vm1", path: input)], outputDirectory: directory)
      .run()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tshark)
    process.arguments = [
      "-r", directory + "/eth1.pcap", "-o", "ip.check_checksum:TRUE", "-T", "fields", "-e", "vxlan.vni", "-e",
      "ip.dst", "-e", "ip.checksum.status", "-e", "eth.src", "-E", "occurrence=f",
    ]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    let lines = output.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
    XCTAssertEqual(lines.count, 2)
    XCTAssertEqual(lines.map { $0.first }, ["100", "100"])
    XCTAssertEqual(Set(lines.map { $0[1] }), ["10.0.0.2", "10.0.0.3"])
    XCTAssertEqual(lines.map { $0[2] }, ["1", "1"], "tshark: outer IPv4 checksum good (1 = good)")
    XCTAssertEqual(lines.map { $0[3] }, ["02:00:00:00:00:01", "02:00:00:00:00:01"])
  }

  func testUnknownPortAndUnreadableFileAreClearErrors() throws {
    XCTAssertThrowsError(
      try Replay(
        config: S.config(), inputs: [.init(port: "nope", path: "/dev/null")], outputDirectory: directory
      ).run()
    ) { error in
      XCTAssertTrue("\(error)".contains("port 'nope' is not in the configuration"), "\(error)")
    }
    let garbage = directory + "/garbage.pcap"
    _ = FileManager.default.createFile(atPath: garbage, contents: Data("not a capture".utf8))
    XCTAssertThrowsError(
      try Replay(config: S.config(), inputs: [.init(port: "vm1", path: garbage)], outputDirectory: directory)
        .run()
    ) { error in
      XCTAssertTrue("\(error)".contains(garbage), "\(error)")
    }
  }
}
