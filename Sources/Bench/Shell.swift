import Foundation
import SystemCommand

/// Runs external tools (ip, bridge, tcpreplay, tcpdump) for `Bench live`.
enum Shell {
  struct Result {
    var status: Int32
    var output: String
    var error: String
  }

  static var trace = false

  @discardableResult
  static func run(_ argv: [String], input: String? = nil) -> Result {
    if trace { progress("+ " + argv.joined(separator: " ")) }
    do {
      let outcome = try SystemCommand.run(argv, input: input.map { Data($0.utf8) })
      return Result(status: outcome.status, output: outcome.outputText, error: outcome.errorText)
    } catch {
      return Result(status: 127, output: "", error: "\(argv[0]): \(error)")
    }
  }

  /// Runs and throws with the tool's message when it fails.
  @discardableResult
  static func check(_ argv: [String], input: String? = nil) throws -> String {
    let result = run(argv, input: input)
    guard result.status == 0 else {
      throw BenchError.failed(
        "\(argv.joined(separator: " ")) failed (\(result.status)): \(result.error.trimmingCharacters(in: .whitespacesAndNewlines))"
      )
    }
    return result.output
  }

  static func exists(_ tool: String) -> Bool {
    run(["sh", "-c", "command -v \(tool)"]).status == 0
  }

  /// Starts a background process with output to files.
  static func spawn(_ argv: [String], stdout: String, stderr: String) throws -> SystemCommand.Child {
    if trace { progress("+ (bg) " + argv.joined(separator: " ")) }
    return try SystemCommand.start(argv, output: stdout, errors: stderr)
  }
}
