import Foundation

/// Runs the system tools the lab is made of (`ip`, `bridge`, `ping`, ...).
enum Shell {
  struct Failure: Error, CustomStringConvertible {
    var command: [String]
    var status: Int32
    var output: String
    var description: String { "`\(command.joined(separator: " "))` exited \(status): \(output)" }
  }

  /// Runs `command`, returns its standard output; throws with stderr on failure.
  @discardableResult
  static func run(_ command: [String], input: Data? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    let inputPipe = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
    try process.run()
    if let input {
      inputPipe.fileHandleForWriting.write(input)
      try? inputPipe.fileHandleForWriting.close()
    }
    let stdout = output.fileHandleForReading.readDataToEndOfFile()
    let stderr = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw Failure(
        command: command, status: process.terminationStatus,
        output: String(decoding: stderr + stdout, as: UTF8.self).trimmingCharacters(
          in: .whitespacesAndNewlines))
    }
    return String(decoding: stdout, as: UTF8.self)
  }

  /// Runs `command` and reports only whether it succeeded.
  static func succeeds(_ command: [String]) -> Bool { (try? run(command)) != nil }

  /// `ip netns exec NS command...`
  @discardableResult
  static func inNamespace(_ namespace: String, _ command: [String]) throws -> String {
    try run(["ip", "netns", "exec", namespace] + command)
  }

  /// Starts a process in the background with output to `log`; returns its PID.
  static func spawn(_ command: [String], log: String) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    FileManager.default.createFile(atPath: log, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
    process.standardOutput = handle
    process.standardError = handle
    process.standardInput = FileHandle.nullDevice
    try process.run()
    return process.processIdentifier
  }
}
