import AllocationCounter
import Foundation
import XCTest

@testable import Dataplane

/// The packet path allocates nothing per frame in steady state: after warm-up, forwarding
/// thousands of batches (encap with known unicast and flooding, ARP suppression, decap) makes zero heap
/// allocations, counted by a malloc interposer linked into the test binary.
final class AllocationTests: XCTestCase {
  typealias S = TestSite

  func testSteadyStateForwardingAllocatesNothing() throws {
    #if DEBUG
      throw XCTSkip("allocation-freedom holds for optimized builds; the suite runs it with -c release")
    #endif
    var config = S.config()
    config.bridgeDomains[0].arpSuppression = true
    let sw = OfflineSwitch(config: config) { _ in .discard }
    sw.core.installARP(vni: 100, ip: IPAddress("192.168.1.20")!, mac: MACAddress("02:bb:00:00:00:20")!)
    var frames: [[UInt8]] = []
    for index in 0..<256 {
      let host = MACAddress(rawValue: 0x0200_0000_1000 + UInt64(index % 16))
      if index % 8 == 1 || index % 8 == 5 {
        // ARP requests: for a bound IP (answered locally) and an unknown one (flooded).
        let target = IPAddress(index % 8 == 1 ? "192.168.1.20" : "192.168.1.99")!
        frames.append(
          FrameBuilder.arpRequestFrame(
            senderMAC: host, senderIP: .v4(0xC0A8_0200 + UInt32(index % 16)), targetIP: target)
        )
        continue
      }
      let destination = index % 4 == 0 ? MACAddress.broadcast : S.hostR
      frames.append(S.ping(from: host, to: destination))
    }
    let decap = (0..<256).map { index in
      S.vxlan(S.ping(from: S.hostR, to: MACAddress(rawValue: 0x0200_0000_1000 + UInt64(index % 16))))
    }
    let access = Self.pin(frames)
    let underlay = Self.pin(decap)
    defer {
      for (pointer, _) in access + underlay { pointer.deallocate() }
    }
    var vector = FrameVector()
    let vm1 = UInt16(sw.interfaceIndex("vm1")!)
    let eth1 = UInt16(sw.interfaceIndex("eth1")!)
    // One batch per call, not a loop over an array literal of (frames, ingress) pairs:
    // that literal is the test's own per-round heap allocation when not stack-promoted.
    func batch(_ set: [(UnsafeMutableRawPointer, Int)], _ ingress: UInt16, _ round: Int) {
      vector.count = 0
      vector.ingress = ingress
      vector.now = 1 + UInt32(round / 1000)
      for (pointer, length) in set { vector.append(pointer, length: length) }
      sw.process(&vector)
      sw.flush()
    }
    func run(_ rounds: Int) {
      for round in 0..<rounds {
        batch(access, vm1, round)
        batch(underlay, eth1, round)
      }
    }
    run(50)
    sw.core.drainLearnQueues()
    run(50)
    ac_start_counting()
    run(2000)
    let allocations = ac_stop_counting()
    XCTAssertEqual(allocations, 0, "allocations while forwarding \(2000 * 512) frames")
    XCTAssertGreaterThan(sw.core.statistics[Counter.encapsulated], 2000 * 256 / 2)
    XCTAssertGreaterThan(sw.core.statistics[Counter.decapsulated], 2000 * 256 - 1)
    XCTAssertGreaterThan(sw.core.statistics[Counter.arpSuppressed], 2000 * 256 / 8 - 1)
    // The interposer itself works: an allocation is seen.
    ac_start_counting()
    let array = [Int](repeating: 1, count: Int.random(in: 100...200))
    XCTAssertGreaterThan(ac_stop_counting(), 0)
    XCTAssertFalse(array.isEmpty)
  }

  /// What the test above measures is the thread it forwards on: threads that earlier
  /// tests left in the process allocate when the scheduler lets them (most likely what
  /// once made the count 8 in CI). An allocation made by another thread while this one
  /// counts is not counted; this thread's own is.
  func testOnlyTheCountingThreadIsCounted() {
    let go = DispatchSemaphore(value: 0)
    let done = DispatchSemaphore(value: 0)
    let other = Thread {
      go.wait()
      var arrays: [[Int]] = []
      for count in 1...100 { arrays.append([Int](repeating: count, count: count)) }
      precondition(arrays.count == 100)
      done.signal()
    }
    other.start()
    // Warm the semaphores' paths on this thread before counting.
    done.signal()
    done.wait()
    ac_start_counting()
    go.signal()
    done.wait()
    let whileTheOtherAllocated = ac_stop_counting()
    XCTAssertEqual(whileTheOtherAllocated, 0, "another thread's allocations were counted")
    ac_start_counting()
    let array = [Int](repeating: 1, count: Int.random(in: 100...200))
    XCTAssertGreaterThan(ac_stop_counting(), 0)
    XCTAssertFalse(array.isEmpty)
  }

  static func pin(_ frames: [[UInt8]]) -> [(UnsafeMutableRawPointer, Int)] {
    frames.map { frame in
      let memory = UnsafeMutableRawPointer.allocate(byteCount: frame.count, alignment: 64)
      frame.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
      return (memory, frame.count)
    }
  }
}
