import Synchronization
import XCTest

@testable import Dataplane

/// ARP suppression, byte-exact: with `arp_suppression` on, an ARP request for an IP bound
/// in the bridge domain's ARP table is answered out of the ingress member, and nothing is
/// flooded; anything else is forwarded as before.
final class ARPSuppressionTests: XCTestCase {
  typealias S = TestSite

  static let requesterIP = IPAddress("192.168.1.1")!
  static let boundIP = IPAddress("192.168.1.20")!
  static let boundMAC = MACAddress("02:bb:00:00:00:20")!

  private func makeSwitch(suppression: Bool = true) -> OfflineSwitch {
    var config = S.config()
    config.bridgeDomains[0].arpSuppression = suppression
    return OfflineSwitch(config: config)
  }

  private func request(for target: IPAddress = boundIP, vlan: UInt16? = nil) -> [UInt8] {
    FrameBuilder.arpRequestFrame(
      senderMAC: S.hostA, senderIP: Self.requesterIP, targetIP: target, vlan: vlan.map { .init(vlanID: $0) })
  }

  private func expectedReply(vlan: UInt16? = nil) -> [UInt8] {
    FrameBuilder.arpReplyFrame(
      senderMAC: Self.boundMAC, senderIP: Self.boundIP, targetMAC: S.hostA, targetIP: Self.requesterIP,
      vlan: vlan.map { .init(vlanID: $0) })
  }

  /// Asserts the request was flooded as without suppression (vm1 ingress, VNI 100).
  private func assertFlooded(
    _ sw: OfflineSwitch, _ frame: [UInt8], file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(sw.takeOutput("vm1"), [], file: file, line: line)
    XCTAssertEqual(sw.takeOutput("vm2"), [frame], file: file, line: line)
    XCTAssertEqual(sw.takeOutput("trunk0"), [S.tagged(frame, vlan: 10)], file: file, line: line)
    XCTAssertEqual(sw.takeOutput("eth1").count, 2, file: file, line: line)
  }

  func testRequestForABoundIPIsAnsweredLocallyAndNotFlooded() {
    let sw = makeSwitch()
    XCTAssertTrue(sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC))
    sw.forward(interface: "vm1", frames: [request()])
    XCTAssertEqual(sw.takeOutput("vm1"), [expectedReply()])
    XCTAssertEqual(sw.takeOutput("vm2"), [])
    XCTAssertEqual(sw.takeOutput("trunk0"), [])
    XCTAssertEqual(sw.takeOutput("vm3"), [])
    XCTAssertEqual(sw.takeOutput("eth1"), [], "no VTEP gets the request")
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 1)
    XCTAssertEqual(sw.core.statistics[Counter.floodCopies], 0)
    XCTAssertEqual(sw.core.statisticsReport().arpSuppressed, 1)
    XCTAssertEqual(sw.totalDrops(), 0)
    // The requester was still learned.
    XCTAssertEqual(sw.core.learnStatistics.learned, 1)
  }

  func testPaddedRequestGetsTheSameReply() {
    let sw = makeSwitch()
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    let padded = FrameBuilder.arpRequestFrame(
      senderMAC: S.hostA, senderIP: Self.requesterIP, targetIP: Self.boundIP, padToMinimum: true)
    XCTAssertEqual(padded.count, 60)
    sw.forward(interface: "vm1", frames: [padded])
    XCTAssertEqual(sw.takeOutput("vm1"), [expectedReply()], "replies are 42 bytes, unpadded")
  }

  func testTaggedMemberGetsATaggedReply() {
    let sw = makeSwitch()
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    sw.forward(interface: "trunk0", frames: [request(vlan: 10)])
    XCTAssertEqual(sw.takeOutput("trunk0"), [expectedReply(vlan: 10)])
    XCTAssertEqual(sw.takeOutput("vm1"), [])
    XCTAssertEqual(sw.takeOutput("vm2"), [])
    XCTAssertEqual(sw.takeOutput("eth1"), [])
  }

  func testUnknownIPFloods() {
    let sw = makeSwitch()
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    let frame = request(for: IPAddress("192.168.1.99")!)
    sw.forward(interface: "vm1", frames: [frame])
    assertFlooded(sw, frame)
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 0)
  }

  func testSuppressionOffFloods() {
    let sw = makeSwitch(suppression: false)
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    let frame = request()
    sw.forward(interface: "vm1", frames: [frame])
    assertFlooded(sw, frame)
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 0)
  }

  func testBindingInAnotherBridgeDomainIsNotUsed() {
    let sw = makeSwitch()
    sw.core.installARP(vni: 200, ip: Self.boundIP, mac: Self.boundMAC)
    let frame = request()
    sw.forward(interface: "vm1", frames: [frame])
    assertFlooded(sw, frame)
  }

  func testRemovingTheBindingFloodsAgain() {
    let sw = makeSwitch()
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    sw.forward(interface: "vm1", frames: [request()])
    XCTAssertEqual(sw.takeOutput("vm1"), [expectedReply()])
    // Removing for another MAC (an older route) leaves the binding.
    sw.core.removeARP(vni: 100, ip: Self.boundIP, mac: MACAddress("02:bb:00:00:00:99")!)
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: Self.boundIP), Self.boundMAC)
    sw.core.removeARP(vni: 100, ip: Self.boundIP)
    XCTAssertNil(sw.core.arpBinding(vni: 100, ip: Self.boundIP))
    let frame = request()
    sw.forward(interface: "vm1", frames: [frame])
    assertFlooded(sw, frame)
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 1)
  }

  func testGratuitousARPProbesAndRepliesAreNotSuppressed() {
    let sw = makeSwitch()
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    let gratuitous = FrameBuilder.arpRequestFrame(
      senderMAC: S.hostA, senderIP: Self.boundIP, targetIP: Self.boundIP)
    let probe = FrameBuilder.arpRequestFrame(
      senderMAC: S.hostA, senderIP: IPAddress("0.0.0.0")!, targetIP: Self.boundIP)
    let broadcastReply = FrameBuilder.arpReplyFrame(
      senderMAC: S.hostA, senderIP: Self.requesterIP, targetMAC: .broadcast, targetIP: Self.boundIP)
    for frame in [gratuitous, probe, broadcastReply] {
      sw.forward(interface: "vm1", frames: [frame])
      assertFlooded(sw, frame)
    }
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 0)
  }

  func testReloadTurnsSuppressionOnAndRemovingTheDomainForgetsItsBindings() {
    let sw = makeSwitch(suppression: false)
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    var config = S.config()
    config.bridgeDomains[0].arpSuppression = true
    sw.core.reload(config)
    sw.forward(interface: "vm1", frames: [request()])
    XCTAssertEqual(sw.takeOutput("vm1"), [expectedReply()])
    config.bridgeDomains.removeFirst()
    sw.core.reload(config)
    XCTAssertEqual(sw.core.arp.count, 0)
  }

  // MARK: Bindings learnt from local ARP packets

  func testBindingLearntFromALocalARPPacketAnswersLaterRequests() {
    let sw = makeSwitch()
    // vm2's host asks for someone: its own (IP, MAC) is learnt.
    let fromB = FrameBuilder.arpRequestFrame(
      senderMAC: S.hostB, senderIP: Self.boundIP, targetIP: IPAddress("192.168.1.77")!)
    sw.forward(interface: "vm2", frames: [fromB])
    _ = ["vm1", "trunk0", "eth1"].map(sw.takeOutput)
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: Self.boundIP), S.hostB)
    sw.forward(interface: "vm1", frames: [request()])
    XCTAssertEqual(
      sw.takeOutput("vm1"),
      [
        FrameBuilder.arpReplyFrame(
          senderMAC: S.hostB, senderIP: Self.boundIP, targetMAC: S.hostA, targetIP: Self.requesterIP)
      ])
    XCTAssertEqual(sw.takeOutput("vm2"), [])
    XCTAssertEqual(sw.takeOutput("eth1"), [])
  }

  func testLearntBindingNeverReplacesAControlPlaneOneAndLeavesWithItsMAC() {
    let sw = makeSwitch()
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    // A local host claiming the IP (gratuitous ARP) does not displace the EVPN binding.
    let claim = FrameBuilder.arpRequestFrame(
      senderMAC: S.hostB, senderIP: Self.boundIP, targetIP: Self.boundIP)
    sw.forward(interface: "vm2", frames: [claim])
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: Self.boundIP), Self.boundMAC)
    // Another IP is learnt, and aged out with hostB's FDB entry (aging 300 s).
    let other = IPAddress("192.168.1.21")!
    sw.forward(
      interface: "vm2",
      frames: [FrameBuilder.arpRequestFrame(senderMAC: S.hostB, senderIP: other, targetIP: other)], now: 10)
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: other), S.hostB)
    // A spoofed sender hardware address (not the frame's source) is not learnt.
    var spoofed = FrameBuilder.arpRequestFrame(
      senderMAC: S.hostR, senderIP: IPAddress("192.168.1.22")!, targetIP: Self.requesterIP)
    spoofed[6..<12] = S.hostB.octets[...]
    sw.forward(interface: "vm2", frames: [spoofed], now: 10)
    XCTAssertNil(sw.core.arpBinding(vni: 100, ip: IPAddress("192.168.1.22")!))
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)], now: 400)
    XCTAssertNil(sw.core.arpBinding(vni: 100, ip: other), "went with hostB's FDB entry")
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: Self.boundIP), Self.boundMAC, "control binding stays")
  }

  // MARK: Address conflicts

  /// While the control plane marks an IP as conflicted, a request for it is flooded (not
  /// answered), neither claim re-binds it, and a local host claiming it is not learnt;
  /// when the conflict clears, the binding left is answered for again.
  func testAConflictedIPIsNotAnsweredNorReboundUntilTheConflictClears() {
    let sw = makeSwitch()
    let events = Mutex<[SwitchCore.LocalARPEvent]>([])
    sw.core.observeLocalARP { event in events.withLock { $0.append(event) } }
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    // A local host claims the IP of the EVPN binding: reported once (a conflict), not stored.
    let claim = FrameBuilder.arpRequestFrame(
      senderMAC: S.hostB, senderIP: Self.boundIP, targetIP: Self.boundIP)
    sw.forward(interface: "vm2", frames: [claim])
    XCTAssertEqual(events.withLock { $0 }, [.bound(vni: 100, ip: Self.boundIP, mac: S.hostB)])
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: Self.boundIP), Self.boundMAC)
    _ = sw.takeOutput("vm1") + sw.takeOutput("trunk0") + sw.takeOutput("eth1")

    sw.core.setARPConflict(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    XCTAssertTrue(sw.core.isARPConflicted(vni: 100, ip: Self.boundIP))
    let frame = request()
    sw.forward(interface: "vm1", frames: [frame])
    assertFlooded(sw, frame)
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 0, "answered for neither binding")
    // Neither claim re-binds it meanwhile; the local claim is not queued again.
    XCTAssertFalse(sw.core.installARP(vni: 100, ip: Self.boundIP, mac: S.hostR))
    sw.core.removeARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    sw.forward(interface: "vm2", frames: [claim])
    _ = sw.takeOutput("vm1") + sw.takeOutput("trunk0") + sw.takeOutput("eth1")
    XCTAssertEqual(
      events.withLock { $0 }.filter { $0 == .bound(vni: 100, ip: Self.boundIP, mac: S.hostB) }.count, 1)
    XCTAssertTrue(sw.core.isARPConflicted(vni: 100, ip: Self.boundIP))
    XCTAssertEqual(sw.core.arpRows(now: 1).first { $0.ip == "\(Self.boundIP)" }?.conflict, true)

    // The remote claim went: the local binding is left, and answered for again.
    sw.core.clearARPConflict(vni: 100, ip: Self.boundIP, mac: S.hostB, control: false)
    XCTAssertFalse(sw.core.isARPConflicted(vni: 100, ip: Self.boundIP))
    XCTAssertEqual(sw.core.arpRows(now: 1).first { $0.ip == "\(Self.boundIP)" }?.origin, "local")
    sw.forward(interface: "vm1", frames: [request()])
    XCTAssertEqual(
      sw.takeOutput("vm1"),
      [
        FrameBuilder.arpReplyFrame(
          senderMAC: S.hostB, senderIP: Self.boundIP, targetMAC: S.hostA, targetIP: Self.requesterIP)
      ])
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 1)
    // A conflict over an IP with no binding at all carries the given MAC; clearing
    // with nothing left removes it.
    // hostB ages out (aging 300 s): its binding goes, and so does a claim it only made
    // (reported, not stored: over the EVPN binding of another MAC).
    let claimed = IPAddress("192.168.1.50")!
    sw.core.installARP(vni: 100, ip: claimed, mac: S.hostR)
    sw.forward(
      interface: "vm2",
      frames: [FrameBuilder.arpRequestFrame(senderMAC: S.hostB, senderIP: claimed, targetIP: claimed)], now: 2
    )
    XCTAssertEqual(events.withLock { $0 }.last, .bound(vni: 100, ip: claimed, mac: S.hostB))
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: claimed), S.hostR, "not stored")
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)], now: 400)
    let afterAging = events.withLock { $0 }
    XCTAssertTrue(afterAging.contains(.unbound(vni: 100, ip: Self.boundIP, mac: S.hostB)))
    XCTAssertTrue(afterAging.contains(.unbound(vni: 100, ip: claimed, mac: S.hostB)), "\(afterAging)")
    let other = IPAddress("192.168.1.40")!
    sw.core.setARPConflict(vni: 100, ip: other, mac: S.hostR)
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: other), S.hostR)
    sw.core.clearARPConflict(vni: 100, ip: other, mac: nil, control: true)
    XCTAssertNil(sw.core.arpBinding(vni: 100, ip: other))
  }

  // MARK: IPv6 neighbour discovery

  /// Solicitations and advertisements bind IPv6 addresses as ARP binds IPv4 ones; a
  /// solicitation for a bound address is answered with a byte-exact solicited
  /// advertisement (checksum included) and not flooded; duplicate address detection,
  /// link-local addresses and conflicted addresses are not answered.
  func testNeighbourDiscoveryIsLearntAndAnsweredLikeARP() {
    let sw = makeSwitch()
    let events = Mutex<[SwitchCore.LocalARPEvent]>([])
    sw.core.observeLocalARP { event in events.withLock { $0.append(event) } }
    let requester = IPAddress("2001:db8::1")!
    let bound = IPAddress("2001:db8::20")!
    let other = IPAddress("2001:db8::30")!
    // hostB resolves someone: its own address is learnt from the solicitation.
    sw.forward(
      interface: "vm2",
      frames: [
        FrameBuilder.neighborSolicitationFrame(senderMAC: S.hostB, senderIP: bound, targetIP: requester)
      ])
    // hostR announces another address (unsolicited advertisement to all nodes).
    sw.forward(
      interface: "vm2",
      frames: [
        FrameBuilder.neighborAdvertisementFrame(
          senderMAC: S.hostR, targetIP: other, destinationMAC: MACAddress("33:33:00:00:00:01")!,
          destinationIP: IPAddress("ff02::1")!, solicited: false)
      ])
    // Link-local addresses and duplicate address detection are not learnt.
    sw.forward(
      interface: "vm2",
      frames: [
        FrameBuilder.neighborSolicitationFrame(
          senderMAC: S.hostB, senderIP: IPAddress("fe80::2")!, targetIP: IPAddress("fe80::1")!),
        FrameBuilder.neighborSolicitationFrame(
          senderMAC: S.hostR, senderIP: IPAddress("::")!, targetIP: IPAddress("2001:db8::40")!),
      ])
    XCTAssertEqual(
      events.withLock { $0 },
      [.bound(vni: 100, ip: bound, mac: S.hostB), .bound(vni: 100, ip: other, mac: S.hostR)])
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: bound), S.hostB)
    XCTAssertEqual(sw.core.arpRows(vni: 100, now: 1).map(\.ip), ["\(bound)", "\(other)"])
    for port in ["vm1", "vm2", "trunk0", "eth1"] { _ = sw.takeOutput(port) }

    // hostA solicits hostB's address: answered for it, nothing flooded.
    let solicitation = FrameBuilder.neighborSolicitationFrame(
      senderMAC: S.hostA, senderIP: requester, targetIP: bound)
    sw.forward(interface: "vm1", frames: [solicitation])
    XCTAssertEqual(
      sw.takeOutput("vm1"),
      [
        FrameBuilder.neighborAdvertisementFrame(
          senderMAC: S.hostB, targetIP: bound, destinationMAC: S.hostA, destinationIP: requester,
          solicited: true)
      ])
    XCTAssertEqual(sw.takeOutput("vm2"), [])
    XCTAssertEqual(sw.takeOutput("eth1"), [])
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 1)
    // Duplicate address detection for a bound address is forwarded (its owner answers).
    let probe = FrameBuilder.neighborSolicitationFrame(
      senderMAC: S.hostA, senderIP: IPAddress("::")!, targetIP: bound)
    sw.forward(interface: "vm1", frames: [probe])
    assertFlooded(sw, probe)
    // In conflict: forwarded, not answered; answered again once cleared.
    sw.core.setARPConflict(vni: 100, ip: bound, mac: S.hostB)
    sw.forward(interface: "vm1", frames: [solicitation])
    assertFlooded(sw, solicitation)
    XCTAssertEqual(sw.core.arpRows(vni: 100, now: 1).first { $0.ip == "\(bound)" }?.conflict, true)
    sw.core.clearARPConflict(vni: 100, ip: bound, mac: S.hostB, control: false)
    sw.forward(interface: "vm1", frames: [solicitation])
    XCTAssertEqual(sw.takeOutput("vm1").count, 1)
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 2)
    // An EVPN binding of an IPv6 address is answered for too.
    let remote = IPAddress("2001:db8::99")!
    XCTAssertTrue(sw.core.installARP(vni: 100, ip: remote, mac: Self.boundMAC))
    sw.forward(
      interface: "vm1",
      frames: [
        FrameBuilder.neighborSolicitationFrame(senderMAC: S.hostA, senderIP: requester, targetIP: remote)
      ])
    XCTAssertEqual(
      sw.takeOutput("vm1"),
      [
        FrameBuilder.neighborAdvertisementFrame(
          senderMAC: Self.boundMAC, targetIP: remote, destinationMAC: S.hostA, destinationIP: requester,
          solicited: true)
      ])
    // hostB ages out (aging 300 s) with its IPv6 binding.
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)], now: 400)
    XCTAssertNil(sw.core.arpBinding(vni: 100, ip: bound))
    XCTAssertTrue(events.withLock { $0 }.contains(.unbound(vni: 100, ip: bound, mac: S.hostB)))
  }

  /// Two IPv6 addresses whose keys fold alike (the second's low half chosen so that the
  /// mix's first step, high x constant ^ low, is equal): the first keeps the key, the second
  /// is refused, counted, reported and forwarded rather than answered with the first's MAC
  /// (which the packet path did before IPv6 values carried check bits of their address).
  func testIPv6AddressesThatFoldAlikeAreNotBothSuppressedAndTheCollisionIsReported() {
    let sw = makeSwitch()
    let requester = IPAddress("2001:db8::1")!
    let first = IPAddress.v6(0x2001_0db8_0000_0000, 0x20)
    let otherHigh: UInt64 = 0x2001_0db8_0000_0001
    let foldingAlike = IPAddress.v6(
      otherHigh, 0x2001_0db8_0000_0000 &* 0x9E37_79B9_7F4A_7C15 ^ 0x20 ^ otherHigh &* 0x9E37_79B9_7F4A_7C15)
    XCTAssertEqual(ARPTable.key(domain: 1, ip: first), ARPTable.key(domain: 1, ip: foldingAlike))
    XCTAssertNotEqual(ARPTable.check(first), ARPTable.check(foldingAlike))
    XCTAssertTrue(sw.core.installARP(vni: 100, ip: first, mac: Self.boundMAC))
    XCTAssertEqual(sw.core.statisticsReport().arpBindingCollisions, 0)
    XCTAssertFalse(sw.core.installARP(vni: 100, ip: foldingAlike, mac: S.hostB))
    XCTAssertEqual(sw.core.statisticsReport().arpBindingCollisions, 1)
    XCTAssertEqual(sw.core.arpBinding(vni: 100, ip: first), Self.boundMAC)
    XCTAssertNil(sw.core.arpBinding(vni: 100, ip: foldingAlike))

    let solicitation = FrameBuilder.neighborSolicitationFrame(
      senderMAC: S.hostA, senderIP: requester, targetIP: foldingAlike)
    sw.forward(interface: "vm1", frames: [solicitation])
    assertFlooded(sw, solicitation)
    XCTAssertEqual(sw.core.statistics[Counter.arpSuppressed], 0)
  }

  // MARK: Events for the control plane

  func testLocalBindingEventsReportNewChangedReplacedAndAgedBindings() {
    let sw = makeSwitch()
    let events = Mutex<[SwitchCore.LocalARPEvent]>([])
    sw.core.observeLocalARP { event in events.withLock { $0.append(event) } }
    let other = IPAddress("192.168.1.21")!
    func announce(_ mac: MACAddress, _ ip: IPAddress, on port: String, now: UInt32) {
      sw.forward(
        interface: port, frames: [FrameBuilder.arpRequestFrame(senderMAC: mac, senderIP: ip, targetIP: ip)],
        now: now)
    }
    announce(S.hostB, Self.boundIP, on: "vm2", now: 1)
    announce(S.hostB, Self.boundIP, on: "vm2", now: 2)
    XCTAssertEqual(
      events.withLock { $0 }, [.bound(vni: 100, ip: Self.boundIP, mac: S.hostB)], "a refresh is no event")
    // The IP is re-bound to another local MAC: the old binding goes first.
    announce(S.hostA, Self.boundIP, on: "vm1", now: 3)
    announce(S.hostB, other, on: "vm2", now: 3)
    XCTAssertEqual(
      events.withLock { $0 }.suffix(3),
      [
        .unbound(vni: 100, ip: Self.boundIP, mac: S.hostB), .bound(vni: 100, ip: Self.boundIP, mac: S.hostA),
        .bound(vni: 100, ip: other, mac: S.hostB),
      ])
    // An EVPN binding replaces the local one.
    sw.core.installARP(vni: 100, ip: Self.boundIP, mac: Self.boundMAC)
    XCTAssertEqual(events.withLock { $0 }.last, .unbound(vni: 100, ip: Self.boundIP, mac: S.hostA))
    // hostB ages out (aging 300 s) with its binding.
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)], now: 350)
    XCTAssertEqual(events.withLock { $0 }.last, .unbound(vni: 100, ip: other, mac: S.hostB))
    XCTAssertEqual(events.withLock { $0 }.count, 6)
  }
}
