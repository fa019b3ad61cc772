import XCTest

@testable import ControlShim

final class ControlShimSmokeTests: XCTestCase { func testLoads() { XCTAssertTrue(true) } }
