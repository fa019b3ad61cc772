import Foundation
import SystemCommand
import XCTest

/// Runs the packet tools the tests cross-check against (tcpdump, tshark, editcap) when they
/// are installed; tests skip with a message otherwise, so the suite passes on bare machines.
enum ExternalTool {
  struct Output {
    let status: Int32
    let standardOutput: String
    let standardError: String
  }

  /// Absolute path of `name` on PATH, or nil when not installed.
  static func locate(_ name: String) -> String? {
    let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in searchPath.split(separator: ":") {
      let candidate = "\(directory)/\(name)"
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
  }

  /// Skips the calling test (with the reason in the log) when `name` is not installed.
  static func require(_ name: String) throws -> String {
    guard let path = locate(name) else {
      throw XCTSkip("\(name) is not installed; skipping the cross-check against it")
    }
    return path
  }

  /// Runs the tool to completion, collecting both streams.
  static func run(_ executable: String, _ arguments: [String]) throws -> Output {
    // tshark wants a writable HOME for its profile; keep it away from the real one.
    let outcome = try SystemCommand.run(
      [executable] + arguments, environment: ["HOME": NSTemporaryDirectory()])
    return Output(
      status: outcome.status, standardOutput: outcome.outputText, standardError: outcome.errorText)
  }

  /// Decodes `file` with tshark and returns, per frame, the requested fields. Repeated
  /// fields (outer and inner headers) come back comma-separated, outermost first.
  static func tsharkFields(
    file: String, fields: [String], options: [String] = []
  ) throws -> [[String: String]] {
    let tshark = try require("tshark")
    var arguments = ["-n", "-r", file, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"]
    arguments += options
    for field in fields { arguments += ["-e", field] }
    let output = try run(tshark, arguments)
    guard output.status == 0 else {
      throw ToolFailure(message: "tshark failed (\(output.status)): \(output.standardError)")
    }
    return output.standardOutput.split(separator: "\n", omittingEmptySubsequences: true).map {
      line in
      let values = line.split(separator: "\t", omittingEmptySubsequences: false)
      var row: [String: String] = [:]
      for (index, field) in fields.enumerated() where index < values.count {
        row[field] = String(values[index])
      }
      return row
    }
  }

  /// Options that make tshark verify (rather than ignore) IP/UDP/TCP checksums.
  static let checksumVerification = [
    "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
    "-o", "tcp.check_checksum:TRUE",
  ]

  struct ToolFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
  }
}

/// A directory under the system temp dir, removed when the test case finishes.
func makeScratchDirectory(for testCase: XCTestCase) throws -> String {
  let directory = FileManager.default.temporaryDirectory
    .appendingPathComponent("vxswitch-pcap-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  testCase.addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
  return directory.path
}

final class PcapExternalToolsTests: XCTestCase {
  func testMissingToolIsReportedAsNotInstalled() {
    XCTAssertNil(ExternalTool.locate("vxswitch-no-such-tool"))
    XCTAssertThrowsError(try ExternalTool.require("vxswitch-no-such-tool")) { error in
      XCTAssertTrue(error is XCTSkip)
    }
  }
}
