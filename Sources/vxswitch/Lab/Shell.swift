import Foundation
import SystemCommand

/// Runs the system tools the lab is made of (`ip`, `bridge`, `ping`, ...).
enum Shell {
  typealias Failure = SystemCommand.Failure

  /// Runs `command`, returns its standard output; throws with stderr on failure.
  @discardableResult
  static func run(_ command: [String], input: Data? = nil) throws -> String {
    try SystemCommand.check(command, input: input)
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
    try SystemCommand.spawn(command, log: log)
  }
}
