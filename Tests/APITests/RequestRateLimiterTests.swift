import Management
import Synchronization
import XCTest

/// The token bucket behind `[api] rate_limit` and `[peering] rate_limit`, on a clock the
/// test moves.
final class RequestRateLimiterTests: XCTestCase {
  final class Clock: Sendable {
    let now = Mutex<Double>(1000)
    func advance(_ seconds: Double) { now.withLock { $0 += seconds } }
  }

  func testBurstThenRateWithRetryAfterPerClient() {
    let clock = Clock()
    let limiter = RequestRateLimiter(rate: 2, burst: 4, clock: { clock.now.withLock { $0 } })
    for _ in 0..<4 { XCTAssertEqual(limiter.admit("10.0.0.1"), .admitted) }
    XCTAssertEqual(limiter.admit("10.0.0.1"), .refused(retryAfter: 0.5))
    XCTAssertEqual(limiter.admit("10.0.0.2"), .admitted, "another client has its own bucket")
    clock.advance(0.25)
    XCTAssertEqual(limiter.admit("10.0.0.1"), .refused(retryAfter: 0.25))
    clock.advance(0.25)
    XCTAssertEqual(limiter.admit("10.0.0.1"), .admitted, "one token after 1/rate seconds")
    XCTAssertEqual(limiter.admit("10.0.0.1"), .refused(retryAfter: 0.5))
    clock.advance(60)
    for _ in 0..<4 {
      XCTAssertEqual(limiter.admit("10.0.0.1"), .admitted, "refilled to the burst, not beyond")
    }
    XCTAssertEqual(limiter.admit("10.0.0.1"), .refused(retryAfter: 0.5))
    XCTAssertEqual(limiter.refused, 4)
  }

  func testTheClientTableIsBoundedAndNewcomersShareABucketWhenItIsFull() {
    let clock = Clock()
    let limiter = RequestRateLimiter(
      rate: 1, burst: 1, maximumClients: 3, clock: { clock.now.withLock { $0 } })
    for client in ["a", "b", "c"] { XCTAssertEqual(limiter.admit(client), .admitted) }
    XCTAssertEqual(limiter.trackedClients, 3)
    // Full, and nobody's bucket has refilled: newcomers share one bucket.
    XCTAssertEqual(limiter.admit("d"), .admitted)
    XCTAssertEqual(limiter.admit("e"), .refused(retryAfter: 1), "d used the shared bucket's token")
    XCTAssertLessThanOrEqual(limiter.trackedClients, 4)
    // Once buckets have refilled, their clients are forgotten to make room.
    clock.advance(5)
    XCTAssertEqual(limiter.admit("f"), .admitted)
    XCTAssertLessThanOrEqual(limiter.trackedClients, 3)
    // A flood of distinct clients never grows the table past its bound (+ the shared one).
    for index in 0..<10_000 { _ = limiter.admit("flood-\(index)") }
    XCTAssertLessThanOrEqual(limiter.trackedClients, 4)
  }
}
