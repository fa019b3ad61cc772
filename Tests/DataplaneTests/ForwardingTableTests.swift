import Foundation
import Synchronization
import XCTest

@testable import Dataplane

final class ForwardingTableTests: XCTestCase {
  private func entry(_ kind: FDBTargetKind, _ index: UInt16, origin: FDBOrigin = .local, stamp: UInt32 = 1)
    -> FDBEntry
  {
    FDBEntry(kind: kind, index: index, origin: origin, domainGeneration: 0, targetGeneration: 0, stamp: stamp)
  }

  func testKeyPacksDomainAboveMAC() {
    let key = FDBKey(bridgeDomain: 7, mac: 0x0200_0000_AA01)
    XCTAssertEqual(key.rawValue, 0x0007_0200_0000_AA01)
    XCTAssertEqual(key.bridgeDomain, 7)
    XCTAssertEqual(key.mac, MACAddress("02:00:00:00:aa:01"))
  }

  func testEntryFieldsRoundTrip() {
    let value = FDBEntry(
      kind: .vtep, index: 513, origin: .control, domainGeneration: 9, targetGeneration: 250, stamp: 123_456)
    XCTAssertEqual(value.kind, .vtep)
    XCTAssertEqual(value.index, 513)
    XCTAssertEqual(value.origin, .control)
    XCTAssertEqual(value.domainGeneration, 9)
    XCTAssertEqual(value.targetGeneration, 250)
    XCTAssertEqual(value.stamp, 123_456)
    XCTAssertEqual(value.withStamp(7).stamp, 7)
    XCTAssertEqual(value.withStamp(7).index, 513)
    XCTAssertFalse(FDBEntry.none.isPresent)
  }

  func testInsertLookupUpdateRemove() {
    let table = ForwardingTable(capacity: 1024)
    let key = FDBKey(bridgeDomain: 1, mac: 0x0200_0000_0001)
    XCTAssertEqual(table.lookup(key), .none)
    XCTAssertEqual(table.update(key) { _ in .set(self.entry(.port, 3)) }, .inserted)
    XCTAssertEqual(table.lookup(key).index, 3)
    XCTAssertEqual(table.count, 1)
    let old = table.lookup(key)
    XCTAssertEqual(table.update(key) { _ in .set(self.entry(.vtep, 4)) }, .updated(old: old))
    XCTAssertEqual(table.lookup(key).kind, .vtep)
    let moved = table.lookup(key)
    XCTAssertEqual(table.update(key) { _ in .remove }, .removed(old: moved))
    XCTAssertEqual(table.lookup(key), .none)
    XCTAssertEqual(table.count, 0)
  }

  func testFillsToCapacityAndFindsEverything() {
    let table = ForwardingTable(capacity: 65_536)
    for mac in 1...65_536 {
      let outcome = table.update(FDBKey(bridgeDomain: 1, mac: UInt64(mac))) { _ in
        .set(self.entry(.port, UInt16(truncatingIfNeeded: mac)))
      }
      XCTAssertEqual(outcome, .inserted, "insert \(mac)")
    }
    XCTAssertEqual(table.count, 65_536)
    for mac in 1...65_536 {
      XCTAssertEqual(
        table.lookup(FDBKey(bridgeDomain: 1, mac: UInt64(mac))).index, UInt16(truncatingIfNeeded: mac))
    }
    XCTAssertEqual(table.lookup(FDBKey(bridgeDomain: 2, mac: 1)), .none)
    // Delete every other entry: the survivors stay reachable past freed slots.
    for mac in stride(from: 1, through: 65_536, by: 2) {
      table.update(FDBKey(bridgeDomain: 1, mac: UInt64(mac))) { _ in .remove }
    }
    for mac in 1...65_536 {
      let found = table.lookup(FDBKey(bridgeDomain: 1, mac: UInt64(mac))).isPresent
      XCTAssertEqual(found, mac % 2 == 0, "mac \(mac)")
    }
  }

  func testRefusesInsertWhenFull() {
    let table = ForwardingTable(capacity: 64)
    var full = false
    for mac in 1...100_000
    where table.update(FDBKey(bridgeDomain: 1, mac: UInt64(mac)), { _ in .set(self.entry(.port, 1)) })
      == .full
    {
      full = true
      break
    }
    XCTAssertTrue(full)
    XCTAssertLessThanOrEqual(table.count, table.bucketCount * 3)
  }

  func testFlushByDomainAndTargetIsImmediate() {
    let table = ForwardingTable(capacity: 1024)
    let a = FDBKey(bridgeDomain: 1, mac: 0xA)
    let b = FDBKey(bridgeDomain: 2, mac: 0xB)
    let c = FDBKey(bridgeDomain: 2, mac: 0xC)
    table.update(a) { _ in .set(self.entry(.port, 1)) }
    table.update(b) { _ in .set(self.entry(.port, 2)) }
    table.update(c) { _ in .set(self.entry(.vtep, 5)) }
    table.flush(bridgeDomain: 1)
    XCTAssertFalse(table.isCurrent(table.lookup(a), bridgeDomain: 1))
    XCTAssertTrue(table.isCurrent(table.lookup(b), bridgeDomain: 2))
    table.flush(port: 2)
    XCTAssertFalse(table.isCurrent(table.lookup(b), bridgeDomain: 2))
    XCTAssertTrue(table.isCurrent(table.lookup(c), bridgeDomain: 2))
    table.flush(vtep: 5)
    XCTAssertFalse(table.isCurrent(table.lookup(c), bridgeDomain: 2))
    // The ager's sweep reclaims what the flushes hid.
    let removed = table.removeAll { key, value in !table.isCurrent(value, bridgeDomain: key.bridgeDomain) }
    XCTAssertEqual(removed, 3)
    XCTAssertEqual(table.count, 0)
  }

  func testGenerationWrapReclaimsStaleEntries() {
    let table = ForwardingTable(capacity: 1024)
    let key = FDBKey(bridgeDomain: 3, mac: 0x42)
    table.update(key) { _ in .set(self.entry(.port, 1)) }
    for _ in 0..<256 { table.flush(bridgeDomain: 3) }
    // After 256 flushes the generation is back to 0; the stale entry must not revive.
    XCTAssertEqual(table.lookup(key), .none)
  }

  func testRefreshStampOnlyWhenUnchanged() {
    let table = ForwardingTable(capacity: 1024)
    let key = FDBKey(bridgeDomain: 1, mac: 0x55)
    table.update(key) { _ in .set(self.entry(.port, 1, stamp: 10)) }
    var slot = 0
    let seen = table.lookup(key.rawValue, slot: &slot)
    table.refreshStamp(slot: slot, entry: seen, stamp: 20)
    XCTAssertEqual(table.lookup(key).stamp, 20)
    // A stale view (the stamp-10 entry) no longer matches: the refresh is dropped.
    table.refreshStamp(slot: slot, entry: seen, stamp: 30)
    XCTAssertEqual(table.lookup(key).stamp, 20)
  }

  /// Readers on several threads look keys up while writers insert, move and delete
  /// them. Every value a writer stores for a key carries that key's signature in its
  /// index and stamp fields; a torn read (key of one entry, value of another, or half a
  /// value) would break the signature.
  func testConcurrentReadersNeverSeeTornEntries() {
    let table = ForwardingTable(capacity: 1 << 14)
    let keyCount = 12_000
    @Sendable func signature(_ mac: UInt64) -> (UInt16, UInt32) {
      let hash = mac &* 0x9E37_79B9_7F4A_7C15
      return (UInt16(truncatingIfNeeded: hash >> 20), UInt32(truncatingIfNeeded: hash >> 40) & 0xFF_FFFF)
    }
    let stop = Atomic<Bool>(false)
    let torn = Atomic<Int>(0)
    let hits = Atomic<Int>(0)
    let readers = 3
    let group = DispatchGroup()
    for reader in 0..<readers {
      group.enter()
      Thread.detachNewThread {
        var local = 0
        var found = 0
        var mac = UInt64(reader * 977 % keyCount) + 1
        while !stop.load(ordering: .relaxed) {
          let value = table.lookup(FDBKey(bridgeDomain: 1, mac: mac))
          if value.isPresent {
            found += 1
            let (index, stamp) = signature(mac)
            if value.index != index || value.stamp >> 4 != stamp >> 4 || value.kind == nil { local += 1 }
          }
          mac = mac % UInt64(keyCount) + 1
        }
        torn.add(local, ordering: .relaxed)
        hits.add(found, ordering: .relaxed)
        group.leave()
      }
    }
    // Two writers on disjoint halves of the key space, serialised by the table's lock.
    let writers = DispatchGroup()
    for writer in 0..<2 {
      writers.enter()
      Thread.detachNewThread {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<150_000 {
          let mac = UInt64(Int.random(in: 0..<(keyCount / 2), using: &rng) * 2 + writer + 1)
          let (index, stamp) = signature(mac)
          let kind: FDBTargetKind = round % 3 == 0 ? .vtep : .port
          let key = FDBKey(bridgeDomain: 1, mac: mac)
          if round % 5 == 4 {
            table.update(key) { _ in .remove }
          } else {
            table.update(key) { _ in
              .set(
                FDBEntry(
                  kind: kind, index: index, origin: .control, domainGeneration: 0, targetGeneration: 0,
                  stamp: stamp & ~0xF | UInt32(round & 0xF)))
            }
          }
        }
        writers.leave()
      }
    }
    writers.wait()
    stop.store(true, ordering: .relaxed)
    group.wait()
    XCTAssertEqual(torn.load(ordering: .relaxed), 0, "readers saw torn entries")
    XCTAssertGreaterThan(
      hits.load(ordering: .relaxed), 0, "readers never found an entry: the test proved nothing")
  }
}
