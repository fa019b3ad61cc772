import Dataplane
import XCTest

@testable import ControlShim

/// The sink between the speaker and the SwitchCore: batching, the compact route table
/// (one MAC-only route packed, MAC/IP and multi-route MACs in the side table) and the
/// peer/sequence annotation `show fdb` reads.
final class SwitchCoreRouteSinkTests: XCTestCase {
  static let vtepA = ip("10.0.0.2")
  static let vtepB = ip("10.0.0.3")
  static let m1 = mac("02:00:00:00:00:11")
  static let staticMAC = mac("02:00:00:00:aa:01")

  private func makeSink() -> SwitchCoreRouteSink {
    var site = SiteConfig.Site(name: "t", vtep: ip("10.0.0.1"), underlay: "eth1")
    site.fdbCapacity = 4096
    var config = SiteConfig(site: site)
    for vni: UInt32 in [100, 200] {
      var domain = SiteConfig.BridgeDomain(vni: vni)
      domain.ports = [.init(interface: "vm\(vni / 100)")]
      config.bridgeDomains.append(domain)
    }
    config.staticMACs = [.init(vni: 100, mac: Self.staticMAC, target: .port(.init(interface: "vm1")))]
    return SwitchCoreRouteSink(core: SwitchCore(config: config))
  }

  /// The VTEP the FDB sends `mac` to in `vni` (nil: no entry, or not a VTEP).
  private func fdbVTEP(_ sink: SwitchCoreRouteSink, _ vni: UInt32, _ mac: MACAddress) -> IPAddress? {
    let core = sink.core
    let entry = core.fdb.lookup(FDBKey(bridgeDomain: core.state.domainIndex(vni: vni)!, mac: mac.rawValue))
    guard entry.isPresent, entry.kind == .vtep else { return nil }
    return core.state.vtepAddresses[Int(entry.index)]
  }

  private func install(
    _ sink: SwitchCoreRouteSink, _ mac: MACAddress, ip: IPAddress? = nil, vtep: IPAddress,
    sequence: UInt32 = 0,
    peer: String = "p1", vni: UInt32 = 100
  ) {
    sink.installMAC(vni: vni, mac: mac, ip: ip, vtep: vtep, sequence: sequence, sticky: false, peer: peer)
  }

  func testBatchAppliesToTheFDBAtEndBatchInOrder() {
    let sink = makeSink()
    sink.beginBatch()
    for index in 0..<300 {
      install(sink, MACAddress(rawValue: 0x0200_0000_1000 | UInt64(index)), vtep: Self.vtepA)
    }
    install(sink, Self.m1, vtep: Self.vtepA)
    install(sink, Self.m1, vtep: Self.vtepB, sequence: 1, peer: "p2")
    sink.removeMAC(vni: 100, mac: MACAddress(rawValue: 0x0200_0000_1000), ip: nil)
    XCTAssertNil(fdbVTEP(sink, 100, Self.m1), "nothing reaches the FDB before endBatch")
    XCTAssertNil(sink.route(vni: 100, mac: Self.m1), "nor the table")
    sink.endBatch()
    XCTAssertEqual(sink.route(vni: 100, mac: Self.m1)?.peer, "p2")
    XCTAssertEqual(fdbVTEP(sink, 100, Self.m1), Self.vtepB)
    XCTAssertNil(fdbVTEP(sink, 100, MACAddress(rawValue: 0x0200_0000_1000)))
    XCTAssertEqual(fdbVTEP(sink, 100, MACAddress(rawValue: 0x0200_0000_1001)), Self.vtepA)
    XCTAssertEqual(sink.remoteMACCount, 300)
    XCTAssertEqual(sink.callCounts.installs, 302)
    XCTAssertEqual(sink.callCounts.removals, 1)
  }

  func testNestedBatchesApplyAtTheOutermostEnd() {
    let sink = makeSink()
    sink.beginBatch()
    sink.beginBatch()
    install(sink, Self.m1, vtep: Self.vtepA)
    sink.endBatch()
    XCTAssertNil(fdbVTEP(sink, 100, Self.m1))
    sink.endBatch()
    XCTAssertEqual(fdbVTEP(sink, 100, Self.m1), Self.vtepA)
    // Outside a batch, a call applies at once.
    install(sink, Self.m1, vtep: Self.vtepB, sequence: 1)
    XCTAssertEqual(fdbVTEP(sink, 100, Self.m1), Self.vtepB)
  }

  func testStaticMACIsNeverReplaced() {
    let sink = makeSink()
    sink.beginBatch()
    install(sink, Self.staticMAC, vtep: Self.vtepA)
    sink.endBatch()
    XCTAssertNil(fdbVTEP(sink, 100, Self.staticMAC))
    sink.removeMAC(vni: 100, mac: Self.staticMAC, ip: nil)
    let core = sink.core
    let entry = core.fdb.lookup(
      FDBKey(bridgeDomain: core.state.domainIndex(vni: 100)!, mac: Self.staticMAC.rawValue))
    XCTAssertEqual(entry.origin, .static)
  }

  func testMACIPAndMACOnlyRoutesOfOneMAC() {
    let sink = makeSink()
    let host = ip("192.168.1.10")
    install(sink, Self.m1, vtep: Self.vtepA, sequence: 3, peer: "p1")
    XCTAssertEqual(sink.route(vni: 100, mac: Self.m1)?.sequence, 3)
    // The MAC/IP route arrives last: it decides the VTEP and binds the IP.
    install(sink, Self.m1, ip: host, vtep: Self.vtepB, sequence: 4, peer: "p2")
    XCTAssertEqual(fdbVTEP(sink, 100, Self.m1), Self.vtepB)
    XCTAssertEqual(sink.core.arpBinding(vni: 100, ip: host), Self.m1)
    let row = sink.core.fdbRows(vni: 100, now: 1, annotator: sink).first { $0.mac == Self.m1.description }
    XCTAssertEqual(row?.peer, "p2")
    XCTAssertEqual(row?.sequence, 4)
    // Withdrawing it falls back to the MAC-only route and unbinds the IP.
    sink.removeMAC(vni: 100, mac: Self.m1, ip: host)
    XCTAssertEqual(fdbVTEP(sink, 100, Self.m1), Self.vtepA)
    XCTAssertNil(sink.core.arpBinding(vni: 100, ip: host))
    XCTAssertEqual(sink.route(vni: 100, mac: Self.m1)?.peer, "p1")
    XCTAssertEqual(sink.route(vni: 100, mac: Self.m1)?.sequence, 3)
    // Back to one MAC-only route; replacing it keeps one entry.
    install(sink, Self.m1, vtep: Self.vtepB, sequence: 5, peer: "p2")
    XCTAssertEqual(sink.route(vni: 100, mac: Self.m1)?.vtep, Self.vtepB)
    XCTAssertEqual(sink.remoteMACCount, 1)
    // A MAC/IP route over it, then the MAC-only route withdrawn: the MAC/IP one stays.
    install(sink, Self.m1, ip: host, vtep: Self.vtepA, sequence: 6)
    sink.removeMAC(vni: 100, mac: Self.m1, ip: nil)
    XCTAssertEqual(fdbVTEP(sink, 100, Self.m1), Self.vtepA)
    XCTAssertEqual(sink.route(vni: 100, mac: Self.m1)?.sequence, 6)
    sink.removeMAC(vni: 100, mac: Self.m1, ip: host)
    XCTAssertNil(fdbVTEP(sink, 100, Self.m1))
    XCTAssertNil(sink.route(vni: 100, mac: Self.m1))
    XCTAssertEqual(sink.remoteMACCount, 0)
  }

  func testVNIsAreKeptApartAndForgotten() {
    let sink = makeSink()
    install(sink, Self.m1, vtep: Self.vtepA, sequence: 1, vni: 100)
    install(sink, Self.m1, vtep: Self.vtepB, sequence: 2, vni: 200)
    XCTAssertEqual(sink.route(vni: 100, mac: Self.m1)?.vtep, Self.vtepA)
    XCTAssertEqual(sink.route(vni: 200, mac: Self.m1)?.vtep, Self.vtepB)
    XCTAssertNil(sink.route(vni: 300, mac: Self.m1))
    sink.forget(vnis: [200])
    XCTAssertNil(sink.route(vni: 200, mac: Self.m1))
    XCTAssertEqual(sink.route(vni: 100, mac: Self.m1)?.sequence, 1)
    XCTAssertEqual(sink.remoteMACCount, 1)
  }

  func testTableIsCompactForMACOnlyRoutes() {
    let sink = SwitchCoreRouteSink(core: makeSink().core, expectedRoutes: 10_000)
    sink.beginBatch()
    for index in 0..<10_000 {
      install(sink, MACAddress(rawValue: 0x0200_0010_0000 | UInt64(index)), vtep: Self.vtepA, sequence: 1)
    }
    sink.endBatch()
    XCTAssertEqual(sink.remoteMACCount, 10_000)
    XCTAssertLessThanOrEqual(Double(sink.tableBytes) / 10_000, 64)
  }
}
