import XCTest

@testable import Dataplane

/// `SwitchStatistics.absorb`: every scratch word a worker moved reaches the shared
/// counters exactly once, whichever group it is in (per interface, or switch-wide, which
/// are tested four words at a time), and the scratch is zeroed.
final class SwitchStatisticsTests: XCTestCase {
  func testAbsorbMovesEveryWordOnce() {
    let statistics = SwitchStatistics()
    let scratch = UnsafeMutablePointer<UInt64>.allocate(capacity: Counter.count)
    defer { scratch.deallocate() }
    scratch.initialize(repeating: 0, count: Counter.count)
    // Each word alone: the others' groups are skipped, this one is not.
    for index in 0..<Counter.count {
      scratch[index] = UInt64(index + 1)
      var touched = true
      statistics.absorb(scratch, touched: &touched, interfaces: Counter.interfaces)
      XCTAssertFalse(touched)
      XCTAssertEqual(statistics[index], UInt64(index + 1), "word \(index)")
      XCTAssertEqual(scratch[index], 0, "word \(index)")
    }
    // Every word at once.
    scratch.update(repeating: 1, count: Counter.count)
    var touched = true
    statistics.absorb(scratch, touched: &touched, interfaces: Counter.interfaces)
    for index in 0..<Counter.count {
      XCTAssertEqual(statistics[index], UInt64(index + 2), "word \(index)")
      XCTAssertEqual(scratch[index], 0, "word \(index)")
    }
    // Untouched: nothing moves.
    scratch[Counter.count - 1] = 5
    touched = false
    statistics.absorb(scratch, touched: &touched, interfaces: Counter.interfaces)
    XCTAssertEqual(statistics[Counter.count - 1], UInt64(Counter.count + 1))
  }
}
