import Foundation
import Synchronization

/// A token bucket per client for a control input (the API over TCP, the site channel):
/// each client may send `rate` requests a second on average and `burst` at once; what is
/// over is refused (the caller answers 429 with `Retry-After`) and counted. A daemon's
/// control plane must not be something a client, authenticated or not, can keep busy.
///
/// The table of clients is bounded (`maximumClients`): when it is full, clients whose
/// bucket has refilled are forgotten (they lose nothing: a new bucket starts full); if none
/// has, newcomers share one bucket, so a flood from many addresses cannot grow memory.
///
/// Thread safety: every method may be called from any thread; one lock guards the table.
public final class RequestRateLimiter: Sendable {
  public enum Admission: Equatable, Sendable {
    case admitted
    /// Refused; a request can succeed again after this many seconds.
    case refused(retryAfter: Double)
  }

  public let rate: Double
  public let burst: Double
  public let maximumClients: Int
  static let sharedKey = "\u{0}overflow"

  struct Bucket {
    var tokens: Double
    var updated: Double
  }

  struct State {
    var buckets: [String: Bucket] = [:]
    var refused: UInt64 = 0
  }

  private let state = Mutex(State())
  private let clock: @Sendable () -> Double

  /// - Parameters:
  ///   - rate: requests per second per client (greater than 0).
  ///   - burst: requests a client may send at once (at least 1).
  public init(
    rate: Double, burst: Double, maximumClients: Int = 4096,
    clock: @escaping @Sendable () -> Double = RateLimitedLog.monotonicSeconds
  ) {
    precondition(rate > 0 && burst >= 1 && maximumClients >= 1, "rate > 0, burst >= 1, maximumClients >= 1")
    self.rate = rate
    self.burst = burst
    self.maximumClients = maximumClients
    self.clock = clock
  }

  /// Takes one token from `client`'s bucket, or says when one will be there.
  public func admit(_ client: String) -> Admission {
    let now = clock()
    return state.withLock { state in
      var key = client
      if state.buckets[key] == nil && state.buckets.count >= maximumClients {
        forgetRefilled(&state, now: now)
        if state.buckets.count >= maximumClients { key = Self.sharedKey }
      }
      var bucket = state.buckets[key] ?? Bucket(tokens: burst, updated: now)
      bucket.tokens = min(burst, bucket.tokens + max(0, now - bucket.updated) * rate)
      bucket.updated = now
      defer { state.buckets[key] = bucket }
      if bucket.tokens >= 1 {
        bucket.tokens -= 1
        return .admitted
      }
      state.refused += 1
      return .refused(retryAfter: (1 - bucket.tokens) / rate)
    }
  }

  /// Requests refused since start.
  public var refused: UInt64 { state.withLock { $0.refused } }

  /// Clients currently tracked (tests).
  public var trackedClients: Int { state.withLock { $0.buckets.count } }

  private func forgetRefilled(_ state: inout State, now: Double) {
    state.buckets = state.buckets.filter { _, bucket in
      bucket.tokens + max(0, now - bucket.updated) * rate < burst
    }
  }
}
