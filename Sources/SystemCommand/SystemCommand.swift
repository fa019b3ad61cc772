import Dispatch
import Foundation
import Synchronization

/// Runs external programs (`ip`, `tc`, `tcpdump`, `iperf3`, ...) for the lab, Bench and
/// the tests: the one place the package starts a child process.
///
/// A child's standard output and error are drained at the same time, and its input is
/// written from a thread of its own: a child that fills one pipe (64 KiB) while the
/// parent waits on the other, or that writes before it has read its input, would
/// otherwise block both processes for ever.
///
/// ## Thread safety
/// Every function may be called from any thread; each call owns its process and pipes.
public enum SystemCommand {
  /// How a finished program ended and what it wrote.
  public struct Outcome: Sendable {
    public var command: [String]
    public var status: Int32
    public var output: Data
    public var errors: Data

    public var succeeded: Bool { status == 0 }
    public var outputText: String { String(decoding: output, as: UTF8.self) }
    public var errorText: String { String(decoding: errors, as: UTF8.self) }
  }

  /// A program that exited with a non-zero status, with what it said.
  public struct Failure: Error, CustomStringConvertible {
    public var command: [String]
    public var status: Int32
    /// Standard error then standard output, trimmed.
    public var message: String
    public var description: String { "`\(command.joined(separator: " "))` exited \(status): \(message)" }
  }

  /// Runs `command` (looked up in PATH) to completion, with `environment` added to this
  /// process's. Throws only when it cannot start; a non-zero exit is in the outcome.
  public static func run(
    _ command: [String], input: Data? = nil, environment: [String: String] = [:]
  ) throws -> Outcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    if !environment.isEmpty {
      process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let output = Pipe()
    let errors = Pipe()
    let inputPipe = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
    try process.run()
    let background = DispatchGroup()
    let errorData = Mutex(Data())
    let errorHandle = errors.fileHandleForReading
    DispatchQueue.global().async(group: background) {
      let data = errorHandle.readDataToEndOfFile()
      errorData.withLock { $0 = data }
    }
    if let input {
      let writer = inputPipe.fileHandleForWriting
      DispatchQueue.global().async(group: background) {
        // A child that exits without reading all of it closes the pipe: not our error.
        try? writer.write(contentsOf: input)
        try? writer.close()
      }
    }
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    background.wait()
    process.waitUntilExit()
    return Outcome(
      command: command, status: process.terminationStatus, output: outputData,
      errors: errorData.withLock { $0 })
  }

  /// Runs `command` and returns its standard output; throws `Failure` on a non-zero exit.
  @discardableResult
  public static func check(_ command: [String], input: Data? = nil) throws -> String {
    let outcome = try run(command, input: input)
    guard outcome.succeeded else {
      throw Failure(
        command: command, status: outcome.status,
        message: (outcome.errorText + outcome.outputText).trimmingCharacters(in: .whitespacesAndNewlines))
    }
    return outcome.outputText
  }

  /// A program started in the background; the caller ends it (by its PID) and waits.
  public final class Child {
    private let process: Process

    fileprivate init(_ process: Process) { self.process = process }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    /// The exit status, once it is no longer running.
    public var exitStatus: Int32 { process.terminationStatus }

    /// Sends SIGTERM if it still runs.
    public func terminate() { if process.isRunning { process.terminate() } }

    /// Waits for it to exit; returns its exit status.
    @discardableResult
    public func wait() -> Int32 {
      process.waitUntilExit()
      return process.terminationStatus
    }
  }

  /// Starts `command` in the background, standard output to the file `output` and
  /// standard error to `errors` (each created empty; the same file for both when
  /// `errors` is nil; discarded when `output` is nil too).
  public static func start(_ command: [String], output: String? = nil, errors: String? = nil) throws -> Child
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command
    process.standardInput = FileHandle.nullDevice
    var handles: [FileHandle] = []
    func file(_ path: String) throws -> FileHandle {
      _ = FileManager.default.createFile(atPath: path, contents: nil)
      let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
      handles.append(handle)
      return handle
    }
    let outputHandle = try output.map(file) ?? FileHandle.nullDevice
    process.standardOutput = outputHandle
    process.standardError = try errors.map(file) ?? outputHandle
    defer { for handle in handles { try? handle.close() } }
    try process.run()
    return Child(process)
  }

  /// Starts `command` in the background with standard output and error to the file
  /// `log` (created empty); returns its PID, for the caller to end it by PID.
  public static func spawn(_ command: [String], log: String) throws -> Int32 {
    try start(command, output: log).pid
  }
}
