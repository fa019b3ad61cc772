import Dispatch
import Synchronization
import XCTest

@testable import Dataplane

/// SIGHUP semantics: a new configuration applies in place; bridge domains that did not
/// change keep their index, their learned MACs and their forwarding.
final class ReloadTests: XCTestCase {
  typealias S = TestSite

  func testUnchangedDomainsKeepTheirMACsRemovedOnesAreFlushed() {
    let sw = OfflineSwitch(config: S.config())
    sw.forward(interface: "vm2", frames: [S.ping(from: S.hostB, to: .broadcast)])
    sw.forward(interface: "vm3", frames: [S.ping(from: S.hostR, to: .broadcast)])
    for port in sw.ports { _ = port.takeTransmitted() }
    let blue = sw.core.state.domainIndex(vni: 100)
    XCTAssertEqual(sw.core.fdbRows(now: 1).count, 2)

    // VNI 200 goes away, VNI 300 arrives on vm3, VNI 100 gains a flood VTEP.
    var next = S.config()
    next.bridgeDomains.removeLast()
    var red = SiteConfig.BridgeDomain(vni: 300)
    red.ports = [.init(interface: "vm3")]
    next.bridgeDomains.append(red)
    sw.core.reload(next)

    XCTAssertEqual(sw.core.state.domainIndex(vni: 100), blue, "unchanged domain keeps its index")
    XCTAssertNil(sw.core.state.domainIndex(vni: 200))
    let rows = sw.core.fdbRows(now: 1)
    XCTAssertEqual(rows.map(\.mac), [S.hostB.description], "hostB survives, VNI 200's hostR is flushed")
    // Known unicast in VNI 100 still goes straight to vm2, without flooding.
    let frame = S.ping(from: S.hostA, to: S.hostB)
    sw.forward(interface: "vm1", frames: [frame])
    XCTAssertEqual(sw.takeOutput("vm2"), [frame])
    XCTAssertEqual(sw.takeOutput("eth1"), [])
    // vm3 now switches in VNI 300 (no other members: nothing to flood to).
    sw.forward(interface: "vm3", frames: [S.ping(from: S.hostR, to: .broadcast)])
    XCTAssertEqual(sw.drops(.noFloodTargets), 1)
    XCTAssertEqual(sw.core.fdbRows(vni: 300, now: 1).map(\.port), ["vm3"])
  }

  /// A local MAC's entry outlives its bridge domain until aging sweeps it. Whether the
  /// reload freed an index in the middle (VNI 200 of 100, 200, 300) or the last one (the
  /// table shrinks past it), the sweep reports nothing for it: that VNI is gone, and the
  /// index holds no VNI (found by AddressSanitizer: the sweep read past the VNI table).
  func testAgingAfterADomainIsRemovedReportsNothingForIt() {
    for removed: UInt32 in [200, 300] {
      var config = S.config()
      var red = SiteConfig.BridgeDomain(vni: 300)
      red.ports = [.init(interface: "trunk0", vlan: 30)]
      if removed == 300 {  // hostR is learnt on vm3: in VNI 300 this time.
        red.ports = [.init(interface: "vm3")]
        config.bridgeDomains[1].ports = [.init(interface: "trunk0", vlan: 20)]
      }
      config.bridgeDomains.append(red)
      let sw = OfflineSwitch(config: config)
      let events = Mutex<[SwitchCore.LocalMACEvent]>([])
      sw.core.observeLocalMACs { event in events.withLock { $0.append(event) } }
      sw.forward(interface: "vm3", frames: [S.ping(from: S.hostR, to: .broadcast)])
      sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)])
      XCTAssertEqual(sw.core.fdbRows(vni: removed, now: 1).map(\.mac), [S.hostR.description])
      let domain = sw.core.state.domainIndex(vni: removed)!
      events.withLock { $0.removeAll() }

      var next = config
      next.bridgeDomains.removeAll { $0.vni == removed }
      sw.core.reload(next)
      XCTAssertNil(sw.core.state.vni(ofDomain: domain), "index \(domain) of VNI \(removed) holds no VNI")
      XCTAssertEqual(sw.core.age(now: 2), 1, "the flushed entry of VNI \(removed) is swept")
      XCTAssertEqual(
        events.withLock { $0.map(\.description) }, [], "nothing reported for VNI \(removed)")
      XCTAssertEqual(sw.core.fdbRows(now: 2).map(\.mac), [S.hostA.description])
      XCTAssertEqual(sw.core.fdbCounts().map(\.vni), [100])
    }
  }
}

extension SwitchCore.LocalMACEvent {
  fileprivate var description: String {
    switch self {
    case .learned(let vni, let mac, let member): "learned \(mac) in \(vni) on \(member)"
    case .removed(let vni, let mac): "removed \(mac) from \(vni)"
    }
  }
}

/// A reload frees bridge-domain indices and gives them to other VNIs: nothing resolved
/// against the old meaning of an index may land under the new one.
final class ReloadIndexReuseTests: XCTestCase {
  typealias S = TestSite

  /// VNI 200 goes and VNI 300 takes its index, on the same port.
  /// Enough reloads for the release run to catch a misplaced route; ThreadSanitizer needs
  /// only the overlap, not the count, and runs every round about ten times slower.
  static let reloadRounds = ThreadSanitizer.isActive ? 300 : 2000

  static func configReusingGreen() -> SiteConfig {
    var next = S.config()
    next.bridgeDomains.removeLast()
    var red = SiteConfig.BridgeDomain(vni: 300)
    red.ports = [.init(interface: "vm3")]
    next.bridgeDomains.append(red)
    return next
  }

  func testLearnEventQueuedBeforeTheReloadDoesNotLandInTheVNIThatTookItsIndex() {
    let sw = OfflineSwitch(config: S.config())
    let green = sw.core.state.domainIndex(vni: 200)
    // hostR is switched in VNI 200; its learn event waits in the queue, not yet applied.
    var frame = S.ping(from: S.hostR, to: .broadcast)
    frame.withUnsafeMutableBytes { bytes in
      var vector = FrameVector()
      vector.ingress = UInt16(sw.interfaceIndex("vm3")!)
      vector.now = 1
      vector.append(bytes.baseAddress!, length: bytes.count)
      sw.process(&vector)
    }
    sw.flush()
    XCTAssertFalse(sw.core.learnQueuesAreEmpty)

    sw.core.reload(Self.configReusingGreen())
    XCTAssertEqual(sw.core.state.domainIndex(vni: 300), green, "the case needs VNI 200's index reused")
    sw.core.drainLearnQueues()
    XCTAssertEqual(sw.core.fdbRows(vni: 300, now: 1).map(\.mac), [], "hostR was seen in VNI 200, not 300")

    // Learning in VNI 300 itself goes on.
    sw.forward(interface: "vm3", frames: [S.ping(from: S.hostR, to: .broadcast)])
    XCTAssertEqual(sw.core.fdbRows(vni: 300, now: 1).map(\.port), ["vm3"])
  }

  /// BGP routes for VNI 200 installed while reloads take VNI 200 away and give its index
  /// to VNI 300 and back: VNI 300 never holds one of them.
  func testRemoteMACsInstalledDuringReloadsNeverLandInAnotherVNI() {
    let core = SwitchCore(config: S.config())
    let withGreen = S.config()
    let withoutGreen = Self.configReusingGreen()
    let vtep = IPAddress("10.0.0.7")!
    let done = Atomic<Bool>(false)
    let installer = DispatchGroup()
    DispatchQueue.global().async(group: installer) {
      var serial: UInt64 = 0
      while !done.load(ordering: .relaxed) {
        serial &+= 1
        let mac = MACAddress(rawValue: 0x02dd_0000_0000 | (serial & 0xffff))
        core.installRemoteMAC(vni: 200, mac: mac, vtep: vtep)
        core.applyRemoteMACs([.install(vni: 200, mac: mac, vtep: vtep)])
      }
    }
    var misplaced = 0
    for _ in 0..<Self.reloadRounds {
      core.reload(withoutGreen)
      for _ in 0..<8 { misplaced += core.fdbRows(vni: 300, now: 1).filter { $0.vtep != nil }.count }
      core.reload(withGreen)
    }
    done.store(true, ordering: .relaxed)
    installer.wait()
    XCTAssertEqual(misplaced, 0, "VNI 200's routes showed up in VNI 300")
    XCTAssertTrue(core.installRemoteMAC(vni: 200, mac: S.hostA, vtep: vtep))
    XCTAssertEqual(core.fdbRows(vni: 200, now: 1).first { $0.mac == S.hostA.description }?.vtep, "10.0.0.7")
  }
}
