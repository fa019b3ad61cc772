import Foundation
import Logging
import Synchronization

/// Keeps repeated events (MAC moves, drops, session flaps) from flooding the log: per
/// event key at most `burst` lines per `interval`; the rest are counted and summarised in
/// one line ("... N similar events suppressed") when the key next logs after the window.
///
/// Thread-safety: `log` may be called from any thread.
public final class RateLimitedLog: Sendable {
  public let logger: Logger
  let burst: Int
  let interval: Double
  let now: @Sendable () -> Double

  struct Window {
    var start: Double
    var logged: Int
    var suppressed: Int
  }
  private let windows = Mutex<[String: Window]>([:])

  public init(
    logger: Logger, burst: Int = 10, interval: Double = 10,
    now: @escaping @Sendable () -> Double = RateLimitedLog.monotonicSeconds
  ) {
    self.logger = logger
    self.burst = burst
    self.interval = interval
    self.now = now
  }

  /// Logs `message` unless `key` has used its burst in the current window.
  public func log(
    _ level: Logger.Level, key: String, _ message: @autoclosure () -> String, metadata: Logger.Metadata = [:]
  ) {
    let time = now()
    let (allowed, summary): (Bool, Int) = windows.withLock { windows in
      var window = windows[key] ?? Window(start: time, logged: 0, suppressed: 0)
      var summary = 0
      if time - window.start >= interval {
        summary = window.suppressed
        window = Window(start: time, logged: 0, suppressed: 0)
      }
      let allowed = window.logged < burst
      if allowed { window.logged += 1 } else { window.suppressed += 1 }
      windows[key] = window
      return (allowed, summary)
    }
    if summary > 0 {
      logger.log(
        level: level, "\(key): \(summary) similar events suppressed in the last window",
        metadata: ["suppressed": "\(summary)", "event": "\(key)"])
    }
    if allowed { logger.log(level: level, "\(message())", metadata: metadata) }
  }

  /// Events suppressed in the current windows (for tests and `/metrics`).
  public var suppressedNow: Int { windows.withLock { $0.values.reduce(0) { $0 + $1.suppressed } } }
}

extension RateLimitedLog {
  /// Seconds on the monotonic clock.
  public static let monotonicSeconds: @Sendable () -> Double = {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
  }
}
