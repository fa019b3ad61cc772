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
}
