import XCTest

@testable import Dataplane

/// When a direction's batch loop stops probing the flow cache, and when it tries again.
final class FlowCachePolicyTests: XCTestCase {
  func testMostlyMissingBatchesTurnTheCacheOffAndItIsRetriedAfter32Batches() {
    var policy = FlowCachePolicy()
    XCTAssertTrue(policy.cachesNextBatch)
    // Hits, and small batches whatever they miss, keep it on.
    policy.record(cached: true, misses: 10, frames: 256)
    policy.record(cached: true, misses: 31, frames: 31)
    XCTAssertTrue(policy.cachesNextBatch)
    // Three quarters missed in a batch of 32 or more: off.
    policy.record(cached: true, misses: 192, frames: 256)
    XCTAssertFalse(policy.cachesNextBatch)
    for _ in 0..<31 { policy.record(cached: false, misses: 256, frames: 256) }
    XCTAssertFalse(policy.cachesNextBatch)
    policy.record(cached: false, misses: 256, frames: 256)
    XCTAssertTrue(policy.cachesNextBatch, "retried after 32 batches")
    // The first batch back fills the cache and is not judged; the second is.
    policy.record(cached: true, misses: 256, frames: 256)
    XCTAssertTrue(policy.cachesNextBatch)
    policy.record(cached: true, misses: 250, frames: 256)
    XCTAssertFalse(policy.cachesNextBatch)
  }

  /// Each retry that finds the traffic still missing doubles the wait, up to 256 batches;
  /// a retry that keeps the cache starts over at 32.
  func testFailedRetriesDoubleTheWaitUpTo256AndASuccessfulOneResetsIt() {
    var policy = FlowCachePolicy()
    /// Bypassed batches until the policy retries (bounded, so a policy that never
    /// retries fails the test instead of hanging it).
    func batchesUntilRetry() -> Int {
      var batches = 0
      while !policy.cachesNextBatch && batches < 10_000 {
        policy.record(cached: false, misses: 256, frames: 256)
        batches += 1
      }
      return batches
    }
    func retryFails() {
      policy.record(cached: true, misses: 256, frames: 256)
      policy.record(cached: true, misses: 256, frames: 256)
    }
    XCTAssertTrue(policy.isSettled, "caching from the start")
    policy.record(cached: true, misses: 256, frames: 256)
    XCTAssertFalse(policy.cachesNextBatch)
    XCTAssertFalse(policy.isSettled, "bypassing, retries still close together")
    var waits: [Int] = []
    var settled: [Bool] = []
    for _ in 0..<6 {
      waits.append(batchesUntilRetry())
      XCTAssertFalse(policy.isSettled, "retrying")
      retryFails()
      settled.append(policy.isSettled)
    }
    XCTAssertEqual(waits, [32, 64, 128, 256, 256, 256])
    XCTAssertEqual(
      settled, [false, false, true, true, true, true], "settled once retries are 256 batches apart")
    // A retry that finds few flows keeps the cache; when traffic later misses again, the
    // first wait is 32 again.
    XCTAssertEqual(batchesUntilRetry(), 256)
    policy.record(cached: true, misses: 256, frames: 256)
    policy.record(cached: true, misses: 10, frames: 256)
    XCTAssertTrue(policy.cachesNextBatch)
    policy.record(cached: true, misses: 250, frames: 256)
    XCTAssertFalse(policy.cachesNextBatch)
    XCTAssertEqual(batchesUntilRetry(), 32)
  }

  func testForcedChoiceWins() {
    var policy = FlowCachePolicy()
    policy.forced = false
    XCTAssertFalse(policy.cachesNextBatch)
    policy.forced = nil
    XCTAssertTrue(policy.cachesNextBatch)
  }

  /// A switch fed traffic with more flows than the cache holds goes over to the loop
  /// that bypasses it, and back once the traffic has few flows again.
  func testPipelineBypassesTheCacheForManyFlowsAndReturnsForFew() {
    var config = TestSite.config()
    config.staticMACs = (0..<300).map {
      .init(
        vni: 100, mac: MACAddress(rawValue: 0x02_CC_00_00_10_00 + UInt64($0)),
        target: .remote(TestSite.remoteA))
    }
    let sw = OfflineSwitch(config: config, output: { _ in .discard })
    func frames(sources: Int, destinations: Int, count: Int) -> [[UInt8]] {
      (0..<count).map {
        TestSite.ping(
          from: MACAddress(rawValue: 0x02_AA_00_00_10_00 + UInt64($0 % sources)),
          to: MACAddress(rawValue: 0x02_CC_00_00_10_00 + UInt64($0 % destinations)))
      }
    }
    let many = frames(sources: 251, destinations: 256, count: 4096)
    for _ in 0..<3 { sw.forward(interface: "vm1", frames: many) }
    XCTAssertFalse(sw.pipeline.accessCaching.cachesNextBatch, "many flows: the cache is bypassed")
    // One batch per call: back within the longest retry wait, and two batches to judge.
    let few = frames(sources: 4, destinations: 4, count: 256)
    for _ in 0..<(FlowCachePolicy.longestRetryWait + 2) { sw.forward(interface: "vm1", frames: few) }
    XCTAssertTrue(sw.pipeline.accessCaching.cachesNextBatch, "few flows: the cache is used again")
    XCTAssertEqual(sw.drops(.noNextHop), 0)
    XCTAssertEqual(sw.core.statistics[Counter.floodCopies], 0)
  }
}
