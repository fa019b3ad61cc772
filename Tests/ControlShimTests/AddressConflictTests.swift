import Dataplane
import XCTest

@testable import ControlShim

/// Records the sink calls of a RIB in order, as text.
final class ConflictLogSink: EVPNRouteSink, @unchecked Sendable {
  var calls: [String] = []

  func installMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, sticky: Bool,
    peer: String
  ) {
    calls.append("install \(mac) \(ip.map { "\($0)" } ?? "-") \(vtep)")
  }
  func removeMAC(vni: UInt32, mac: MACAddress, ip: IPAddress?) {
    calls.append("remove \(mac) \(ip.map { "\($0)" } ?? "-")")
  }
  func addFloodMember(vni: UInt32, vtep: IPAddress) {}
  func removeFloodMember(vni: UInt32, vtep: IPAddress) {}
  func addressConflictStarted(vni: UInt32, ip: IPAddress, mac: MACAddress) {
    calls.append("conflict \(ip) \(mac)")
  }
  func addressConflictCleared(vni: UInt32, ip: IPAddress, mac: MACAddress?, local: Bool) {
    calls.append("cleared \(ip) \(mac.map { "\($0)" } ?? "-") \(local ? "local" : "remote")")
  }
}

/// The conflict rule and the RIB's use of it: two simulated sites (a RIB each) given the
/// same pair of claims in either order reach the same outcome; the sink hears of an IP
/// conflict before the second claim's route; it clears when a claim goes.
final class AddressConflictTests: XCTestCase {
  typealias Candidate = ConflictRule.Candidate
  let vtepA = ip("10.0.0.1")
  let vtepB = ip("10.0.0.2")
  let m1 = mac("02:00:00:00:00:01")
  let m2 = mac("02:00:00:00:00:02")
  let m3 = mac("02:00:00:00:00:03")
  let address = ip("192.168.1.5")

  // MARK: the rule

  func testRuleOrdersBySequenceThenVTEPThenMACWhateverTheInputOrder() {
    let newer = Candidate(mac: m2, vtep: vtepB, sequence: 3)
    let lowVTEP = Candidate(mac: m3, vtep: vtepA, sequence: 1)
    let highVTEP = Candidate(mac: m1, vtep: vtepB, sequence: 1)
    let sameVTEPHigherMAC = Candidate(mac: mac("02:00:00:00:00:04"), vtep: vtepA, sequence: 1)
    XCTAssertEqual(ConflictRule.rank([highVTEP, newer]).ranked.first, newer)
    XCTAssertEqual(ConflictRule.rank([highVTEP, newer]).reason, .higherSequence)
    XCTAssertEqual(ConflictRule.rank([highVTEP, lowVTEP]).ranked.first, lowVTEP)
    XCTAssertEqual(ConflictRule.rank([highVTEP, lowVTEP]).reason, .lowerVTEP)
    XCTAssertEqual(ConflictRule.rank([sameVTEPHigherMAC, lowVTEP]).ranked.first, lowVTEP)
    XCTAssertEqual(ConflictRule.rank([sameVTEPHigherMAC, lowVTEP]).reason, .lowerMAC)
    XCTAssertNil(ConflictRule.rank([newer]).reason)
    // Every order of the same inputs gives the same ranking.
    let all = [newer, lowVTEP, highVTEP, sameVTEPHigherMAC]
    let expected = ConflictRule.rank(all).ranked
    XCTAssertEqual(expected, [newer, lowVTEP, sameVTEPHigherMAC, highVTEP])
    for permutation in permutations(all) {
      XCTAssertEqual(ConflictRule.rank(permutation).ranked, expected)
    }
  }

  private func permutations<T>(_ items: [T]) -> [[T]] {
    guard items.count > 1 else { return [items] }
    var result: [[T]] = []
    for index in items.indices {
      var rest = items
      let item = rest.remove(at: index)
      for tail in permutations(rest) { result.append([item] + tail) }
    }
    return result
  }

  // MARK: two simulated sites

  private struct Site {
    let rib: EVPNRIB
    let sink: ConflictLogSink
    let vtep: IPAddress
  }

  private func makeSite(_ vtep: IPAddress, peer: String) -> Site {
    let sink = ConflictLogSink()
    let rib = EVPNRIB(
      sink: sink, maxMoves: 5, moveWindow: 180, peerName: { $0 == 0 ? "local" : peer }, clock: { 0 })
    _ = rib.vtepID(vtep)
    return Site(rib: rib, sink: sink, vtep: vtep)
  }

  private func local(_ site: Site, sequence: UInt32) -> MACPath {
    MACPath(routeDistinguisher: 1, vtepID: site.rib.vtepID(site.vtep), sequence: sequence, peer: 0, flags: 0)
  }

  private func remote(_ site: Site, from vtep: IPAddress, sequence: UInt32) -> MACPath {
    MACPath(routeDistinguisher: 2, vtepID: site.rib.vtepID(vtep), sequence: sequence, peer: 1, flags: 0)
  }

  /// What must agree between sites: every claim's MAC, VTEP, sequence and winner flag,
  /// and the rule's step (the peer names differ: each site calls its own claim local).
  private func outcome(_ conflict: AddressConflict) -> [String] {
    conflict.claims.map { "\($0.mac)@\($0.vtep)#\($0.sequence)\($0.winner ? " winner" : "")" } + [
      conflict.rule.rawValue, conflict.ip ?? "", conflict.mac ?? "",
    ]
  }

  /// Site A has m1 on IP x, site B m2 on x (a partition let both happen); each receives
  /// the other's MAC/IP route, before or after learning its own binding.
  func testBothSitesReachTheSameIPConflictOutcomeInEitherOrder() {
    for (sequenceA, sequenceB) in [(0, 0), (0, 3), (2, 1)] as [(UInt32, UInt32)] {
      for localFirst in [true, false] {
        let a = makeSite(vtepA, peer: "site-b")
        let b = makeSite(vtepB, peer: "site-a")
        let keyM1 = MACRouteKey(vni: 100, mac: m1.rawValue, ip: address)
        let keyM2 = MACRouteKey(vni: 100, mac: m2.rawValue, ip: address)
        let claimsA = [
          (keyM1, local(a, sequence: sequenceA)), (keyM2, remote(a, from: vtepB, sequence: sequenceB)),
        ]
        let claimsB = [
          (keyM2, local(b, sequence: sequenceB)), (keyM1, remote(b, from: vtepA, sequence: sequenceA)),
        ]
        for (key, path) in localFirst ? claimsA : claimsA.reversed() { a.rib.upsert(key, path: path) }
        for (key, path) in localFirst ? claimsB : claimsB.reversed() { b.rib.upsert(key, path: path) }
        let what = "sequences \(sequenceA)/\(sequenceB), local first: \(localFirst)"
        let atA = a.rib.conflictReport().conflicts
        let atB = b.rib.conflictReport().conflicts
        XCTAssertEqual(atA.count, 1, what)
        XCTAssertEqual(atB.count, 1, what)
        guard let conflictA = atA.first, let conflictB = atB.first else { continue }
        XCTAssertEqual(outcome(conflictA), outcome(conflictB), what)
        let expectedWinner = sequenceB > sequenceA ? m2 : m1
        XCTAssertEqual(conflictA.winner?.mac, "\(expectedWinner)", what)
        XCTAssertEqual(conflictA.rule, sequenceA == sequenceB ? .lowerVTEP : .higherSequence, what)
        XCTAssertEqual(conflictA.kind, .ip)
        XCTAssertEqual(conflictA.outcome, "arp_suppression_off")
        XCTAssertEqual(a.rib.conflictReport().started[.ip], 1)
        if localFirst {
          // The remote claim reached the sink only after the conflict did: its binding
          // never replaced the local one in the ARP table.
          XCTAssertEqual(
            a.sink.calls, ["conflict \(address) \(expectedWinner)", "install \(m2) \(address) \(vtepB)"], what
          )
        } else {
          XCTAssertEqual(
            a.sink.calls, ["install \(m2) \(address) \(vtepB)", "conflict \(address) \(expectedWinner)"], what
          )
        }
        // B's binding goes: the conflict clears at both, each left with A's binding.
        a.rib.remove(keyM2, peer: 1, routeDistinguisher: 2)
        b.rib.remove(keyM2, peer: 0, routeDistinguisher: 1)
        XCTAssertEqual(a.rib.conflictReport().conflicts, [], what)
        XCTAssertEqual(b.rib.conflictReport().conflicts, [], what)
        XCTAssertEqual(
          a.sink.calls.suffix(2), ["cleared \(address) \(m1) local", "remove \(m2) \(address)"], what)
        XCTAssertEqual(b.sink.calls.last, "cleared \(address) \(m1) remote", what)
      }
    }
  }

  /// A third claim joins and leaves; the conflict lasts until one claim is left.
  func testAConflictLastsWhileTwoClaimsRemain() {
    let a = makeSite(vtepA, peer: "site-b")
    let keys = [m1, m2, m3].map { MACRouteKey(vni: 100, mac: $0.rawValue, ip: address) }
    a.rib.upsert(keys[0], path: local(a, sequence: 0))
    a.rib.upsert(keys[1], path: remote(a, from: vtepB, sequence: 0))
    a.rib.upsert(keys[2], path: remote(a, from: ip("10.0.0.3"), sequence: 5))
    XCTAssertEqual(a.rib.conflictReport().conflicts.first?.claims.count, 3)
    XCTAssertEqual(a.rib.conflictReport().conflicts.first?.winner?.mac, "\(m3)", "the higher sequence")
    a.rib.remove(keys[2], peer: 1, routeDistinguisher: 2)
    XCTAssertEqual(a.rib.conflictReport().conflicts.first?.winner?.mac, "\(m1)", "then the lower VTEP")
    XCTAssertEqual(a.rib.conflictReport().started[.ip], 1, "one conflict, updated")
    a.rib.remove(keys[0], peer: 0, routeDistinguisher: 1)
    XCTAssertEqual(a.rib.conflictReport().conflicts, [])
    XCTAssertEqual(a.sink.calls.last, "cleared \(address) \(m2) remote")
    // The same MAC under two IPs is no conflict.
    a.rib.upsert(MACRouteKey(vni: 100, mac: m2.rawValue, ip: ip("192.168.1.6")), path: local(a, sequence: 0))
    XCTAssertEqual(a.rib.conflictReport().conflicts, [])
  }

  /// The same MAC learnt at both sites with the same sequence number (RFC 7432 section
  /// 15 tie): both report it with the same winner (the lower VTEP); the loser holds its
  /// MAC unannounced while the winner's route stands, and owes an announcement when it
  /// goes.
  func testAMACTieIsOneConflictWithTheSameWinnerAtBothSites() {
    let a = makeSite(vtepA, peer: "site-b")
    let b = makeSite(vtepB, peer: "site-a")
    var changesA: [ConflictChange] = []
    var changesB: [ConflictChange] = []
    a.rib.onConflict = { changesA.append($0) }
    b.rib.onConflict = { changesB.append($0) }
    let key = MACRouteKey(vni: 100, mac: m1.rawValue, ip: nil)
    a.rib.upsert(key, path: local(a, sequence: 0))
    b.rib.upsert(key, path: local(b, sequence: 0))
    XCTAssertEqual(a.rib.upsert(key, path: remote(a, from: vtepB, sequence: 0)), .unchanged, "A's route wins")
    if case .localLost = b.rib.upsert(key, path: remote(b, from: vtepA, sequence: 0)) {
    } else {
      XCTFail("B's route must lose to the lower VTEP")
    }
    let atA = a.rib.conflictReport().conflicts
    let atB = b.rib.conflictReport().conflicts
    XCTAssertEqual(atA.map(outcome), atB.map(outcome))
    XCTAssertEqual(atA.first?.winner?.vtep, "\(vtepA)")
    XCTAssertEqual(atA.first?.outcome, "remote_withdraws")
    XCTAssertEqual(atB.first?.outcome, "local_withdrawn")
    XCTAssertEqual(atB.first?.kind, .mac)
    // B learns the MAC locally again: no new sequence while A's route stands.
    let macKey = DuplicateMACDetector.Key(vni: 100, mac: m1.rawValue)
    XCTAssertFalse(b.rib.mayAnnounceLocalMAC(macKey))
    XCTAssertTrue(a.rib.mayAnnounceLocalMAC(macKey))
    // B's withdrawal reaches A: cleared there.
    a.rib.remove(key, peer: 1, routeDistinguisher: 2)
    XCTAssertEqual(a.rib.conflictReport().conflicts, [])
    // A's MAC goes: cleared at B, which announces its own.
    b.rib.remove(key, peer: 1, routeDistinguisher: 2)
    XCTAssertEqual(b.rib.conflictReport().conflicts, [])
    XCTAssertTrue(b.rib.mayAnnounceLocalMAC(macKey))
    guard case .reannounce(let vni, let mac)? = changesB.last else {
      return XCTFail("B owes an announcement: \(changesB)")
    }
    XCTAssertEqual([UInt64(vni), mac.rawValue], [100, m1.rawValue])
    XCTAssertEqual(changesA.count, 2, "started, cleared")
  }

  /// Different sequence numbers are a move, not a conflict.
  func testAMACMoveWithAHigherSequenceIsNoConflict() {
    let a = makeSite(vtepA, peer: "site-b")
    let key = MACRouteKey(vni: 100, mac: m1.rawValue, ip: nil)
    a.rib.upsert(key, path: local(a, sequence: 0))
    a.rib.upsert(key, path: remote(a, from: vtepB, sequence: 1))
    XCTAssertEqual(a.rib.conflictReport().conflicts, [])
    XCTAssertTrue(a.rib.mayAnnounceLocalMAC(.init(vni: 100, mac: m1.rawValue)))
  }
}
