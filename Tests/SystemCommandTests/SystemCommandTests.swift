import Dispatch
import Foundation
import Synchronization
import SystemCommand
import XCTest

final class SystemCommandTests: XCTestCase {
  /// A child that writes far more than a pipe holds to standard error before it writes
  /// anything to standard output: a parent that reads standard output to the end first
  /// waits for ever (and so does the child).
  func testAChildFillingStandardErrorFirstDoesNotDeadlock() throws {
    let script = "head -c 1048576 /dev/zero | tr '\\0' e >&2; head -c 300000 /dev/zero | tr '\\0' o"
    let finished = DispatchGroup()
    let result = Mutex<Result<SystemCommand.Outcome, Error>?>(nil)
    DispatchQueue.global().async(group: finished) {
      let outcome = Result { try SystemCommand.run(["sh", "-c", script]) }
      result.withLock { $0 = outcome }
    }
    // The deadlock is a non-event: bounded, generously.
    XCTAssertEqual(
      finished.wait(timeout: .now() + 60), .success, "the child and the parent deadlocked on a pipe")
    let outcome = try XCTUnwrap(result.withLock { $0 }).get()
    XCTAssertTrue(outcome.succeeded)
    XCTAssertEqual(outcome.errors.count, 1_048_576)
    XCTAssertEqual(outcome.output.count, 300_000)
  }

  /// Input larger than a pipe, to a child that writes as it reads.
  func testLargeInputToAChildThatAnswersAsItReads() throws {
    let input = Data(repeating: UInt8(ascii: "x"), count: 2_000_000)
    let outcome = try SystemCommand.run(["cat"], input: input)
    XCTAssertEqual(outcome.output, input)
  }

  func testFailureCarriesStatusAndMessage() {
    XCTAssertThrowsError(try SystemCommand.check(["sh", "-c", "echo broken >&2; exit 3"])) { error in
      let failure = error as? SystemCommand.Failure
      XCTAssertEqual(failure?.status, 3)
      XCTAssertEqual(failure?.message, "broken")
    }
    XCTAssertEqual(try SystemCommand.check(["echo", "fine"]), "fine\n")
  }
}
