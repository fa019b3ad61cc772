import XCTest

@testable import ControlShim

/// The sink's open-addressing table against a Dictionary: inserts, replacements,
/// removals (backward shift), growth and filtering.
final class PackedRouteTableTests: XCTestCase {
  func testMatchesADictionaryUnderRandomOperations() {
    var generator = SystemRandomNumberGenerator()
    let table = PackedRouteTable()
    var reference: [UInt64: UInt64] = [:]
    // Few distinct keys, so that probe runs are long and removals shift entries back.
    let keys = (0..<3000).map { UInt64($0 % 7 + 1) << 48 | UInt64($0) }
    for step in 0..<60_000 {
      let key = keys[Int.random(in: 0..<keys.count, using: &generator)]
      switch Int.random(in: 0..<3, using: &generator) {
      case 0, 1:
        let value = UInt64(step)
        XCTAssertEqual(table.updateValue(value, forKey: key), reference.updateValue(value, forKey: key))
      default:
        XCTAssertEqual(table.removeValue(forKey: key), reference.removeValue(forKey: key))
      }
      if step % 5000 == 0 {
        XCTAssertEqual(table.count, reference.count)
        for key in keys { XCTAssertEqual(table[key], reference[key]) }
      }
    }
    XCTAssertEqual(table.count, reference.count)
    for key in keys { XCTAssertEqual(table[key], reference[key]) }
    XCTAssertLessThanOrEqual(table.count * 5, table.capacity * 4)
  }

  func testReservedTableDoesNotGrowAndFiltersKeepTheRest() {
    let table = PackedRouteTable(minimumCapacity: 0)
    table.reserveCapacity(10_000)
    let capacity = table.capacity
    for index in 1...10_000 { table[UInt64(index)] = UInt64(index) * 3 }
    XCTAssertEqual(table.capacity, capacity)
    XCTAssertEqual(table.memoryBytes, capacity * 16)
    table.removeAll { key, _ in key % 2 == 0 }
    XCTAssertEqual(table.count, 5000)
    XCTAssertEqual(table[3], 9)
    XCTAssertNil(table[4])
    table[3] = nil
    XCTAssertNil(table[3])
    XCTAssertEqual(table.count, 4999)
  }
}
