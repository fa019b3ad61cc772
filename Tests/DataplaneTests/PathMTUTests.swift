import XCTest

@testable import Dataplane

/// A frame too big for the underlay is answered like the Linux vxlan device answers it:
/// ICMP Fragmentation Needed (IPv4 with DF) or ICMPv6 Packet Too Big back to the sender,
/// from the destination it tried to reach, with the usable MTU (underlay MTU less 50 or
/// 70 bytes); byte-exact against frames built independently.
final class PathMTUTests: XCTestCase {
  typealias S = TestSite
  let vmA = IPAddress("192.168.1.1")!
  let vmR = IPAddress("192.168.1.9")!
  let vmA6 = IPAddress("fd10::1")!
  let vmR6 = IPAddress("fd10::9")!

  /// vm1 (hostA) talks to hostR behind 10.0.0.2 over a 1400-byte underlay.
  func makeSwitch(ipv6Underlay: Bool = false) -> OfflineSwitch {
    let sw = OfflineSwitch(config: S.config(ipv6: ipv6Underlay, mtu: 1400))
    XCTAssertTrue(
      sw.core.installRemoteMAC(vni: 100, mac: S.hostR, vtep: ipv6Underlay ? S.remote6 : S.remoteA))
    return sw
  }

  func bigTCP(size: Int, dontFragment: Bool = true, ipv6: Bool = false, vlan: UInt16? = nil) -> [UInt8] {
    FrameBuilder.tcpFrame(
      link: .init(destination: S.hostR, source: S.hostA, vlan: vlan.map { .init(vlanID: $0) }),
      source: ipv6 ? vmA6 : vmA, destination: ipv6 ? vmR6 : vmR, sourcePort: 40000, destinationPort: 5201,
      sequenceNumber: 1, flags: [.ack], payload: [UInt8](repeating: 0x42, count: size),
      ipv4: .init(identification: 3, timeToLive: 61, dontFragment: dontFragment), ipv6: .init(hopLimit: 60))
  }

  func expectedFragmentationNeeded(for frame: [UInt8], mtu: UInt16, vlan: UInt16? = nil) -> [UInt8] {
    let tagLength = vlan == nil ? 0 : 4
    let quoted = Array(frame[(14 + tagLength)...].prefix(548))
    var icmp: [UInt8] = [3, 4, 0, 0, 0, 0, UInt8(mtu >> 8), UInt8(mtu & 0xFF)] + quoted
    let checksum = InternetChecksum.checksum(icmp)
    icmp[2] = UInt8(checksum >> 8)
    icmp[3] = UInt8(checksum & 0xFF)
    let packet = FrameBuilder.ipv4Packet(
      source: vmR, destination: vmA, protocolNumber: 1, payload: icmp,
      fields: .init(identification: 0, timeToLive: 61, dontFragment: true))
    return FrameBuilder.ethernet(
      .init(destination: S.hostA, source: S.hostR, vlan: vlan.map { .init(vlanID: $0) }), etherType: 0x0800,
      payload: packet)
  }

  func testIPv4WithDFGetsFragmentationNeededWithTheUsableMTU() {
    let sw = makeSwitch()
    let frame = bigTCP(size: 1400)
    sw.forward(interface: "vm1", frames: [frame])
    XCTAssertEqual(sw.takeOutput("eth1"), [], "nothing too big leaves")
    XCTAssertEqual(sw.takeOutput("vm1"), [expectedFragmentationNeeded(for: frame, mtu: 1350)])
    XCTAssertEqual(sw.core.statistics[Counter.drop(.mtuExceeded)], 1)
    XCTAssertEqual(sw.core.statistics[Counter.pathMTUReplies], 1)
    XCTAssertEqual(sw.core.statisticsReport().pathMTUReplies, 1)
    // A frame that fits goes out as before.
    sw.forward(interface: "vm1", frames: [bigTCP(size: 1350 - 40)])
    XCTAssertEqual(sw.takeOutput("eth1").count, 1)
    XCTAssertEqual(sw.takeOutput("vm1"), [])
  }

  func testTaggedMemberGetsATaggedReply() {
    let sw = makeSwitch()
    let frame = bigTCP(size: 1500, vlan: 10)
    sw.forward(interface: "trunk0", frames: [frame])
    XCTAssertEqual(sw.takeOutput("trunk0"), [expectedFragmentationNeeded(for: frame, mtu: 1350, vlan: 10)])
  }

  func testIPv6GetsPacketTooBigOverAnIPv6Underlay() {
    let sw = makeSwitch(ipv6Underlay: true)
    let frame = bigTCP(size: 1400, ipv6: true)
    sw.forward(interface: "vm1", frames: [frame])
    let quoted = Array(frame[14...].prefix(1232))
    var icmp: [UInt8] = [2, 0, 0, 0, 0, 0, 0x05, 0x32] + quoted  // MTU 1400 - 70 = 1330
    let checksum = InternetChecksum.checksum(
      icmp,
      initial: InternetChecksum.pseudoHeaderSum(
        source: vmR6, destination: vmA6, protocolNumber: 58, upperLayerLength: icmp.count))
    icmp[2] = UInt8(checksum >> 8)
    icmp[3] = UInt8(checksum & 0xFF)
    let expected = FrameBuilder.ethernet(
      .init(destination: S.hostA, source: S.hostR), etherType: 0x86DD,
      payload: FrameBuilder.ipv6Packet(
        source: vmR6, destination: vmA6, nextHeader: 58, payload: icmp, fields: .init(hopLimit: 60)))
    XCTAssertEqual(sw.takeOutput("vm1"), [expected])
    XCTAssertEqual(sw.core.statistics[Counter.pathMTUReplies], 1)
  }

  func testNoReplyWithoutDFOrToICMPErrorsOrBeyondTheBudget() {
    let sw = makeSwitch()
    sw.forward(interface: "vm1", frames: [bigTCP(size: 1400, dontFragment: false)])
    XCTAssertEqual(sw.takeOutput("vm1"), [], "IPv4 without DF: dropped, not answered")
    XCTAssertEqual(sw.core.statistics[Counter.drop(.mtuExceeded)], 1)
    XCTAssertEqual(sw.core.statistics[Counter.pathMTUReplies], 0)

    let budget = Pipeline.pathMTUReplyBudget
    sw.forward(interface: "vm1", frames: Array(repeating: bigTCP(size: 1400), count: budget + 5))
    XCTAssertEqual(sw.takeOutput("vm1").count, budget)
    XCTAssertEqual(sw.core.statistics[Counter.pathMTUReplies], UInt64(budget))
    XCTAssertEqual(sw.core.statistics[Counter.pathMTURateLimited], 5)
    XCTAssertEqual(sw.core.statistics[Counter.drop(.mtuExceeded)], UInt64(budget + 6))
  }
}
