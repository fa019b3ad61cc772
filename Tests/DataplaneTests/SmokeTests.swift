import XCTest

@testable import Dataplane

final class SmokeTests: XCTestCase { func testVersion() { XCTAssertFalse(DataplaneVersion.string.isEmpty) } }
