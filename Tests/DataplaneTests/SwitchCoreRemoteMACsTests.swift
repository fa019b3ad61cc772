import Dataplane
import Foundation
import Synchronization
import XCTest

/// `SwitchCore.applyRemoteMACs`: the bulk control-plane install path keeps the
/// semantics of `installRemoteMAC` / `removeRemoteMAC`, and readers never see a torn entry.
final class SwitchCoreRemoteMACsTests: XCTestCase {
  static let vtepA = IPAddress("10.0.0.2")!
  static let vtepB = IPAddress("10.0.0.3")!
  static let staticMAC = MACAddress("02:00:00:00:aa:01")!

  private func makeCore(capacity: Int = 4096) -> SwitchCore {
    var site = SiteConfig.Site(name: "t", vtep: IPAddress("10.0.0.1")!, underlay: "eth1")
    site.fdbCapacity = capacity
    var config = SiteConfig(site: site)
    var domain = SiteConfig.BridgeDomain(vni: 100)
    domain.ports = [.init(interface: "vm1")]
    config.bridgeDomains = [domain]
    config.staticMACs = [.init(vni: 100, mac: Self.staticMAC, target: .port(.init(interface: "vm1")))]
    return SwitchCore(config: config)
  }

  private func entry(_ core: SwitchCore, _ mac: MACAddress) -> FDBEntry {
    core.fdb.lookup(FDBKey(bridgeDomain: core.state.domainIndex(vni: 100)!, mac: mac.rawValue))
  }

  private func vtep(_ core: SwitchCore, _ entry: FDBEntry) -> IPAddress? {
    guard entry.isPresent, entry.kind == .vtep else { return nil }
    return core.state.vtepAddresses[Int(entry.index)]
  }

  func testInstallsInOrderAndMatchesSingleInstalls() {
    let bulk = makeCore()
    let single = makeCore()
    let macs = (0..<3000).map { MACAddress(rawValue: 0x0200_0000_0000 | UInt64($0)) }
    var changes: [SwitchCore.RemoteMACChange] = []
    for (index, mac) in macs.enumerated() {
      changes.append(.install(vni: 100, mac: mac, vtep: index % 2 == 0 ? Self.vtepA : Self.vtepB))
    }
    // Later changes win: the first MAC moves to B, the second goes away.
    changes.append(.install(vni: 100, mac: macs[0], vtep: Self.vtepB))
    changes.append(.remove(vni: 100, mac: macs[1]))
    XCTAssertEqual(bulk.applyRemoteMACs(changes), macs.count + 1)
    for change in changes {
      if let vtep = change.vtep {
        single.installRemoteMAC(vni: change.vni, mac: change.mac, vtep: vtep)
      } else {
        single.removeRemoteMAC(vni: change.vni, mac: change.mac)
      }
    }
    XCTAssertEqual(bulk.fdb.count, single.fdb.count)
    XCTAssertEqual(bulk.fdb.count, macs.count - 1 + 1)  // minus the removed one, plus the static MAC
    for mac in macs {
      let (a, b) = (entry(bulk, mac), entry(single, mac))
      XCTAssertEqual(vtep(bulk, a), vtep(single, b), "\(mac)")
      XCTAssertEqual(a.isPresent ? a.origin : nil, b.isPresent ? b.origin : nil)
    }
    XCTAssertEqual(vtep(bulk, entry(bulk, macs[0])), Self.vtepB)
    XCTAssertFalse(entry(bulk, macs[1]).isPresent)
    XCTAssertEqual(entry(bulk, macs[2]).origin, .control)
  }

  func testStaticEntryIsNeverReplacedOrRemoved() {
    let core = makeCore()
    let before = entry(core, Self.staticMAC)
    XCTAssertEqual(before.origin, .static)
    XCTAssertEqual(
      core.applyRemoteMACs([
        .install(vni: 100, mac: Self.staticMAC, vtep: Self.vtepA),
        .remove(vni: 100, mac: Self.staticMAC),
      ]), 0)
    XCTAssertEqual(entry(core, Self.staticMAC), before)
  }

  func testLocalEntryIsOverriddenAndOnlyControlEntriesAreRemoved() {
    let core = makeCore()
    let domain = core.state.domainIndex(vni: 100)!
    let local = MACAddress("02:00:00:00:bb:01")!
    let learned = FDBEntry(
      kind: .port, index: 1, origin: .local, domainGeneration: 0, targetGeneration: 0, stamp: 5)
    core.fdb.update(FDBKey(bridgeDomain: domain, mac: local.rawValue)) { _ in .set(learned) }
    // A removal does not touch a local entry.
    core.applyRemoteMACs([.remove(vni: 100, mac: local)])
    XCTAssertEqual(entry(core, local).origin, .local)
    // An install (the speaker already arbitrated MAC mobility) replaces it.
    XCTAssertEqual(core.applyRemoteMACs([.install(vni: 100, mac: local, vtep: Self.vtepA)]), 1)
    XCTAssertEqual(entry(core, local).origin, .control)
    XCTAssertEqual(vtep(core, entry(core, local)), Self.vtepA)
  }

  func testUnknownVNIsAreIgnored() {
    let core = makeCore()
    let count = core.fdb.count
    XCTAssertEqual(
      core.applyRemoteMACs([.install(vni: 999, mac: MACAddress("02:00:00:00:cc:01")!, vtep: Self.vtepA)]), 0)
    XCTAssertEqual(core.fdb.count, count)
  }

  func testNewVTEPsArePublishedBeforeTheirEntries() {
    let core = makeCore()
    let mac = MACAddress("02:00:00:00:dd:01")!
    core.applyRemoteMACs([.install(vni: 100, mac: mac, vtep: IPAddress("10.9.9.9")!)])
    XCTAssertEqual(vtep(core, entry(core, mac)), IPAddress("10.9.9.9")!)
    XCTAssertTrue(core.remoteVTEPs.contains(IPAddress("10.9.9.9")!))
  }

  /// A reader looking up the MACs while batches install, move and remove them sees
  /// each either absent or a complete control entry pointing at one of the two VTEPs.
  func testConcurrentReadersSeeCompleteEntries() {
    let core = makeCore(capacity: 1 << 14)
    let domain = core.state.domainIndex(vni: 100)!
    let macs = (0..<4096).map { MACAddress(rawValue: 0x0200_0001_0000 | UInt64($0)) }
    core.applyRemoteMACs([.install(vni: 100, mac: macs[0], vtep: Self.vtepA)])
    core.applyRemoteMACs([.install(vni: 100, mac: macs[0], vtep: Self.vtepB)])
    let valid: Set<UInt16> = Set(
      [Self.vtepA, Self.vtepB].compactMap { address in core.state.vtepAddresses.firstIndex(of: address) }.map
      {
        UInt16($0)
      })
    XCTAssertEqual(valid.count, 2)
    let stop = Atomic<Bool>(false)
    let torn = Atomic<Int>(0)
    let seen = Atomic<Int>(0)
    let done = DispatchSemaphore(value: 0)
    let started = DispatchSemaphore(value: 0)
    Thread {
      started.signal()
      while !stop.load(ordering: .relaxed) {
        for mac in macs {
          let entry = core.fdb.lookup(FDBKey(bridgeDomain: domain, mac: mac.rawValue))
          guard entry.isPresent else { continue }
          seen.add(1, ordering: .relaxed)
          if entry.kind != .vtep || entry.origin != .control || !valid.contains(entry.index) {
            torn.add(1, ordering: .relaxed)
          }
        }
      }
      done.signal()
    }.start()
    started.wait()
    // At least 20 rounds, and on until the reader has met entries (a busy machine may
    // not schedule it during the first ones); bounded so a broken table fails, not hangs.
    let deadline = Date().addingTimeInterval(30)
    var round = 0
    while round < 20 || (seen.load(ordering: .relaxed) == 0 && Date() < deadline) {
      let vtep = round % 2 == 0 ? Self.vtepA : Self.vtepB
      core.applyRemoteMACs(macs.map { .install(vni: 100, mac: $0, vtep: vtep) })
      if round % 5 == 4 { core.applyRemoteMACs(macs.map { .remove(vni: 100, mac: $0) }) }
      round += 1
    }
    stop.store(true, ordering: .relaxed)
    done.wait()
    XCTAssertEqual(torn.load(ordering: .relaxed), 0)
    XCTAssertGreaterThan(seen.load(ordering: .relaxed), 0)
  }
}
