import Foundation

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
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = argv
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let inputPipe = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
    do {
      try process.run()
    } catch {
      return Result(status: 127, output: "", error: "\(argv[0]): \(error)")
    }
    if let input {
      inputPipe.fileHandleForWriting.write(input.data(using: .utf8)!)
      try? inputPipe.fileHandleForWriting.close()
    }
    // Read both pipes before waiting so that a chatty tool cannot block on a full pipe.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    let errHandle = err.fileHandleForReading
    DispatchQueue.global().async {
      errBox.data = errHandle.readDataToEndOfFile()
      group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errData = errBox.data
    process.waitUntilExit()
    return Result(
      status: process.terminationStatus, output: String(decoding: outData, as: UTF8.self),
      error: String(decoding: errData, as: UTF8.self))
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
  static func spawn(_ argv: [String], stdout: String, stderr: String) throws -> Process {
    if trace { progress("+ (bg) " + argv.joined(separator: " ")) }
    _ = FileManager.default.createFile(atPath: stdout, contents: nil)
    _ = FileManager.default.createFile(atPath: stderr, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = argv
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = FileHandle(forWritingAtPath: stdout)
    process.standardError = FileHandle(forWritingAtPath: stderr)
    try process.run()
    return process
  }
}
