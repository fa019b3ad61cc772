import Dataplane
import XCTest

@testable import ControlShim

final class EVPNRIBTests: XCTestCase {
  var sink: RecordingSink!
  var now = 0.0
  var rib: EVPNRIB!

  override func setUp() {
    sink = RecordingSink()
    now = 0
    rib = EVPNRIB(
      sink: sink, maxMoves: 5, moveWindow: 180, peerName: { "p\($0)" }, clock: { [unowned self] in self.now })
  }

  private func path(peer: UInt16, vtep: String, sequence: UInt32 = 0, sticky: Bool = false, rd: UInt64 = 1)
    -> MACPath
  {
    MACPath(
      routeDistinguisher: rd, vtepID: rib.vtepID(ip(vtep)), sequence: sequence, peer: peer,
      flags: sticky ? MACPath.stickyFlag : 0)
  }

  let key = MACRouteKey(vni: 100, mac: 0x0011_2233_4455, ip: nil)
  let theMAC = mac("00:11:22:33:44:55")

  func testKeyPacksVNIMACAndIP() {
    let v6 = MACRouteKey(vni: 0xABCDEF, mac: 1, ip: ip("2001:db8::1"))
    XCTAssertEqual(v6.vni, 0xABCDEF)
    XCTAssertEqual(v6.ip, ip("2001:db8::1"))
    XCTAssertEqual(MACRouteKey(vni: 1, mac: 1, ip: ip("10.0.0.1")).ip, ip("10.0.0.1"))
    XCTAssertNotEqual(MACRouteKey(vni: 1, mac: 1, ip: nil), MACRouteKey(vni: 1, mac: 1, ip: .v4(0)))
    XCTAssertEqual(MemoryLayout<MACRouteKey>.stride, 32)
    XCTAssertLessThanOrEqual(MemoryLayout<MACPath>.stride, 24)
  }

  /// RFC 7432 section 15: sticky beats sequence, higher sequence wins, lower VTEP on ties.
  func testBestPathOrder() {
    rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.9", sequence: 1))
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.9"))
    rib.upsert(key, path: path(peer: 2, vtep: "10.0.0.5", sequence: 1))
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.5"), "equal sequence: lower VTEP")
    rib.upsert(key, path: path(peer: 3, vtep: "10.0.0.7", sequence: 2))
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.7"), "higher sequence")
    rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.9", sequence: 0, sticky: true))
    XCTAssertEqual(
      sink.snapshot.installed(100, theMAC), .init(vtep: ip("10.0.0.9"), sequence: 0, sticky: true, peer: "p1")
    )
    rib.remove(key, peer: 1, routeDistinguisher: 1)
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.7"))
    rib.remove(key, peer: 3, routeDistinguisher: 1)
    rib.remove(key, peer: 2, routeDistinguisher: 1)
    XCTAssertNil(sink.snapshot.installed(100, theMAC))
    XCTAssertNil(rib.macRoutes[key])
    XCTAssertEqual((0..<4).map { self.rib.routeCount(peer: $0) }, [0, 0, 0, 0])
  }

  func testLocalRouteLosesToNewerRemote() {
    rib.upsert(key, path: path(peer: MACPath.localPeer, vtep: "10.0.0.1", sequence: 1))
    XCTAssertNil(sink.snapshot.installed(100, theMAC))
    XCTAssertEqual(
      rib.upsert(key, path: path(peer: 2, vtep: "10.0.0.2", sequence: 1)), .unchanged,
      "equal sequence, lower VTEP is ours")
    let outcome = rib.upsert(key, path: path(peer: 2, vtep: "10.0.0.2", sequence: 2))
    guard case .localLost = outcome else { return XCTFail("\(outcome)") }
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.2"))
    XCTAssertEqual(rib.highestRemoteSequence(key), 2)
    XCTAssertNil(rib.macRoutes[key]?.localIndex)
  }

  func testDuplicateDetectionFreezesAfterFiveMovesInWindow() {
    var vteps = ["10.0.0.2", "10.0.0.3"]
    for sequence in 1...4 {
      rib.upsert(key, path: path(peer: 1, vtep: vteps[sequence % 2], sequence: UInt32(sequence)))
      now += 10
    }
    XCTAssertTrue(sink.snapshot.frozen.isEmpty, "3 moves so far")
    now += 200  // the early moves leave the window
    rib.upsert(key, path: path(peer: 1, vtep: vteps[1], sequence: 5))
    XCTAssertTrue(sink.snapshot.frozen.isEmpty)
    vteps.append("10.0.0.4")
    for sequence in 6...9 {
      rib.upsert(key, path: path(peer: 1, vtep: vteps[sequence % 3], sequence: UInt32(sequence)))
      now += 1
    }
    XCTAssertEqual(sink.snapshot.frozen.count, 1)
    XCTAssertEqual(sink.snapshot.frozen.first?.2, 5)
    XCTAssertTrue(rib.detector.isFrozen(.init(vni: 100, mac: key.mac)))
    rib.detector.unfreeze(.init(vni: 100, mac: key.mac))
    XCTAssertFalse(rib.detector.isFrozen(.init(vni: 100, mac: key.mac)))
  }

  /// While frozen the sink hears nothing about the MAC and a remote route does not push
  /// the local one out; unfreezing catches the sink up and drops the local route that lost.
  func testFrozenMACIsNotProcessedUntilUnfrozen() {
    rib = EVPNRIB(
      sink: sink, maxMoves: 2, moveWindow: 180, peerName: { "p\($0)" }, clock: { [unowned self] in self.now })
    var frozen: [(DuplicateMACDetector.Key, Int)] = []
    rib.onFreeze = { frozen.append(($0, $1)) }
    let ipKey = MACRouteKey(vni: 100, mac: key.mac, ip: ip("10.1.1.1"))
    rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.2", sequence: 0))
    rib.upsert(key, path: path(peer: MACPath.localPeer, vtep: "10.0.0.1", sequence: 1))
    rib.upsert(ipKey, path: path(peer: MACPath.localPeer, vtep: "10.0.0.1", sequence: 1))
    XCTAssertTrue(frozen.isEmpty, "one move")
    guard case .localLost = rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.2", sequence: 2)) else {
      return XCTFail("the newer remote route wins the move that freezes")
    }
    XCTAssertEqual(frozen.map(\.1), [2])
    XCTAssertEqual(frozen.first?.0, .init(vni: 100, mac: key.mac))
    XCTAssertEqual(rib.localIPKeys(.init(vni: 100, mac: key.mac)), [ipKey])
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.sequence, 2, "the freezing move is applied")
    // Frozen: the local route comes back and is kept although a newer remote one arrives;
    // the sink is not told.
    let calls = sink.snapshot.installCalls + sink.snapshot.removeCalls
    XCTAssertEqual(
      rib.upsert(key, path: path(peer: MACPath.localPeer, vtep: "10.0.0.1", sequence: 3)), .unchanged)
    XCTAssertEqual(rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.2", sequence: 4)), .unchanged)
    XCTAssertNotNil(rib.macRoutes[key]?.localIndex)
    XCTAssertEqual(sink.snapshot.installCalls + sink.snapshot.removeCalls, calls)
    XCTAssertEqual(rib.detector.frozen[.init(vni: 100, mac: key.mac)]?.moves, 2)
    // Unfrozen: the local route lost to sequence 4 and is dropped; the sink gets sequence 4.
    XCTAssertEqual(rib.unfreeze(.init(vni: 100, mac: key.mac)), [key])
    XCTAssertNil(rib.macRoutes[key]?.localIndex)
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.sequence, 4)
    XCTAssertNil(rib.unfreeze(.init(vni: 100, mac: key.mac)), "not frozen any more")
    XCTAssertEqual(frozen.count, 1)
  }

  func testStaleRoutesSurviveUntilSweep() {
    let other = MACRouteKey(vni: 100, mac: 7, ip: nil)
    rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.2"))
    rib.upsert(other, path: path(peer: 1, vtep: "10.0.0.2"))
    rib.addFlood(
      vni: 100, key: .init(peer: 1, routeDistinguisher: 1, ethernetTag: 0, originatingRouter: ip("10.0.0.2")),
      vtep: ip("10.0.0.2"))
    rib.markStale(peer: 1)
    XCTAssertEqual(rib.staleCount(peer: 1), 3)
    XCTAssertEqual(sink.snapshot.macs.count, 2)
    let installsBefore = sink.snapshot.installCalls
    rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.2"))  // refreshed after reconnect
    XCTAssertEqual(sink.snapshot.installCalls, installsBefore, "refresh is invisible to the dataplane")
    XCTAssertEqual(rib.staleCount(peer: 1), 2)
    _ = rib.sweepStale(peer: 1)
    XCTAssertNotNil(sink.snapshot.installed(100, theMAC))
    XCTAssertNil(sink.snapshot.installed(100, MACAddress(rawValue: 7)))
    XCTAssertEqual(sink.snapshot.flood[100], [])
    XCTAssertEqual(rib.routeCount(peer: 1), 1)
  }

  /// RFC 9494: GR-stale -> long-lived stale (NO_LLGR routes go, the others stay
  /// installed but lose to any path that is not long-lived stale) -> refreshed (fresh
  /// again, best again) or swept.
  func testLongLivedStaleRoutesAreLeastPreferredAndNoLLGRRoutesGo() {
    let other = MACRouteKey(vni: 100, mac: 7, ip: nil)
    let single = MACRouteKey(vni: 100, mac: 8, ip: nil)
    // Peer 1 wins `key` on sequence; peer 2 (another VTEP) holds a lower one.
    rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.2", sequence: 5))
    rib.upsert(key, path: path(peer: 2, vtep: "10.0.0.3", sequence: 1, rd: 2))
    var noLLGR = path(peer: 1, vtep: "10.0.0.2")
    noLLGR.flags |= MACPath.noLongLivedFlag
    rib.upsert(other, path: noLLGR)
    rib.upsert(single, path: path(peer: 1, vtep: "10.0.0.2"))
    let kept = EVPNRIB.FloodKey(
      peer: 1, routeDistinguisher: 1, ethernetTag: 0, originatingRouter: ip("10.0.0.2"))
    let dropped = EVPNRIB.FloodKey(
      peer: 1, routeDistinguisher: 9, ethernetTag: 0, originatingRouter: ip("10.0.0.4"))
    rib.addFlood(vni: 100, key: kept, vtep: ip("10.0.0.2"))
    rib.addFlood(vni: 100, key: dropped, vtep: ip("10.0.0.4"))
    rib.refreshFlood(vni: 100, key: dropped, noLongLived: true)
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.2"))

    // Graceful-restart phase: stale, still best, nothing long-lived yet.
    rib.markStale(peer: 1)
    XCTAssertEqual(rib.staleCount(peer: 1), 5)
    XCTAssertEqual(rib.longLivedStaleCount(peer: 1), 0)
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.2"))

    // Long-lived phase: NO_LLGR routes removed, the rest kept but least preferred.
    XCTAssertEqual(rib.enterLongLivedStale(peer: 1), 3, "key, single and the kept type-3 route")
    XCTAssertNil(sink.snapshot.installed(100, MACAddress(rawValue: 7)), "NO_LLGR route removed")
    XCTAssertEqual(sink.snapshot.flood[100], [ip("10.0.0.2")], "NO_LLGR type-3 route removed")
    XCTAssertEqual(
      sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.3"), "a fresh path beats a long-lived stale one")
    XCTAssertEqual(
      sink.snapshot.installed(100, MACAddress(rawValue: 8))?.vtep, ip("10.0.0.2"),
      "alone, a long-lived stale route keeps forwarding")
    XCTAssertEqual(rib.longLivedStaleCount(peer: 1), 3)
    XCTAssertTrue(rib.best(for: single)?.isLongLivedStale ?? false)
    XCTAssertFalse(rib.isBetter(rib.best(for: single)!, than: path(peer: 3, vtep: "10.0.0.9")))

    // The session is back: a refreshed route is fresh (and best) again; End-of-RIB
    // sweeps what was not refreshed.
    rib.upsert(key, path: path(peer: 1, vtep: "10.0.0.2", sequence: 5))
    XCTAssertEqual(sink.snapshot.installed(100, theMAC)?.vtep, ip("10.0.0.2"))
    XCTAssertEqual(rib.longLivedStaleCount(peer: 1), 2)
    _ = rib.sweepStale(peer: 1)
    XCTAssertNil(sink.snapshot.installed(100, MACAddress(rawValue: 8)))
    XCTAssertEqual(sink.snapshot.flood[100], [])
    XCTAssertEqual(rib.longLivedStaleCount(peer: 1), 0)
    XCTAssertEqual(rib.routeCount(peer: 1), 1)
  }

  func testFloodListIsReferenceCounted() {
    let vtep = ip("10.0.0.2")
    let a = EVPNRIB.FloodKey(peer: 1, routeDistinguisher: 1, ethernetTag: 0, originatingRouter: vtep)
    let b = EVPNRIB.FloodKey(peer: 2, routeDistinguisher: 1, ethernetTag: 0, originatingRouter: vtep)
    rib.addFlood(vni: 100, key: a, vtep: vtep)
    rib.addFlood(vni: 100, key: b, vtep: vtep)
    XCTAssertEqual(sink.snapshot.flood[100], [vtep])
    rib.removeFlood(vni: 100, key: a)
    XCTAssertEqual(sink.snapshot.flood[100], [vtep])
    _ = rib.removeAll(peer: 2)
    XCTAssertEqual(sink.snapshot.flood[100], [])
  }
}
