import Dispatch
import Synchronization
import XCTest

@testable import Dataplane

/// The snapshot cell's reclamation: what a reader holds is never freed under it.
final class SnapshotCellTests: XCTestCase {
  final class Tally: Sendable {
    let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
  }

  final class Snapshot: Sendable {
    let number: Int
    let freed: Tally

    init(_ number: Int, freed: Tally) {
      self.number = number
      self.freed = freed
    }

    deinit { freed.add() }
  }

  /// A control-plane reader between loading the pointer and retaining it holds no
  /// reference yet: a `publish` in that window, with every worker idle, would free the
  /// snapshot at once. `publish` must wait for the reader instead.
  func testPublishCannotRetireTheSnapshotAControlReaderIsLoading() {
    let freed = Tally()
    let readerLoaded = DispatchSemaphore(value: 0)
    let readerMayRetain = DispatchSemaphore(value: 0)
    let holdFirstReader = Atomic<Bool>(true)
    // The test keeps its own reference to the first snapshot so that the bug shows as a
    // publish completing in the window, not as a use after free.
    let first = Snapshot(1, freed: freed)
    let cell = SnapshotCell(first) {
      guard holdFirstReader.exchange(false, ordering: .relaxed) else { return }
      readerLoaded.signal()
      readerMayRetain.wait()
    }
    let reader = DispatchGroup()
    let readNumber = Atomic<Int>(0)
    DispatchQueue.global().async(group: reader) { readNumber.store(cell.value.number, ordering: .relaxed) }
    readerLoaded.wait()

    let publisher = DispatchGroup()
    DispatchQueue.global().async(group: publisher) { cell.publish(Snapshot(2, freed: freed)) }
    // Nothing to await here: the point is that the publish does not happen.
    XCTAssertEqual(
      publisher.wait(timeout: .now() + .milliseconds(300)), .timedOut,
      "publish swapped out the snapshot a control-plane reader had loaded but not retained")
    readerMayRetain.signal()
    reader.wait()
    publisher.wait()
    XCTAssertEqual(readNumber.load(ordering: .relaxed), 1)
    XCTAssertEqual(cell.value.number, 2)
    XCTAssertEqual(freed.value, 0, "the first snapshot is still the test's")
  }

  /// Workers read without retaining: a replaced snapshot is freed only once every
  /// registered worker entered a later epoch or went idle.
  func testRetiredSnapshotLivesUntilEveryWorkerMovedOn() {
    let freed = Tally()
    let cell = SnapshotCell(Snapshot(1, freed: freed))
    let busy = cell.register()
    let other = cell.register()
    XCTAssertEqual(cell.enter(busy).takeUnretainedValue().number, 1)
    cell.idle(other)
    cell.publish(Snapshot(2, freed: freed))
    XCTAssertEqual(freed.value, 0, "a worker still reads the first snapshot")
    XCTAssertEqual(cell.enter(busy).takeUnretainedValue().number, 2)
    cell.reclaim()
    XCTAssertEqual(freed.value, 1)
    cell.unregister(busy)
    cell.unregister(other)
  }

  /// Control readers and workers against a publisher that frees at once when it can:
  /// every snapshot read is whole (run under ThreadSanitizer in CI).
  func testConcurrentControlReadersAndWorkersAgainstPublishes() {
    let freed = Tally()
    let cell = SnapshotCell(Snapshot(0, freed: freed))
    let rounds = 20_000
    let done = Atomic<Bool>(false)
    let group = DispatchGroup()
    let bad = Atomic<Int>(0)
    for worker in 0..<2 {
      DispatchQueue.global().async(group: group) {
        let token = worker == 0 ? cell.register() : nil
        var last = 0
        while !done.load(ordering: .relaxed) {
          let number =
            token.map { cell.enter($0).takeUnretainedValue().number } ?? cell.value.number
          if number < last { bad.add(1, ordering: .relaxed) }
          last = number
          if let token { cell.idle(token) }
        }
        if let token { cell.unregister(token) }
      }
    }
    for round in 1...rounds { cell.publish(Snapshot(round, freed: freed)) }
    done.store(true, ordering: .relaxed)
    group.wait()
    cell.reclaim()
    XCTAssertEqual(bad.load(ordering: .relaxed), 0, "a reader went back to an older snapshot")
    XCTAssertEqual(freed.value, rounds, "every replaced snapshot was freed")
  }
}
