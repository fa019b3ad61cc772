import CPacket
import Foundation
import XCTest

@testable import Dataplane

/// A LiveSwitch in a namespace, interoperating with the Linux kernel's vxlan device:
///
///   [vm] vm0 192.168.80.1 ── acc0 [sw: vxswitch, VTEP 10.80.0.1 on und0] und0 ── und1 [kern]
///   [kern] und1 10.80.0.2, vx100 (VNI 100, remote 10.80.0.1) in br0 192.168.80.2
final class LiveSwitchTests: XCTestCase {
  var lab: NetnsLab!
  var sw = ""
  var vm = ""
  var kern = ""

  override func setUpWithError() throws {
    lab = try NetnsLab.make(self)
    sw = try lab.namespace("sw")
    vm = try lab.namespace("vm")
    kern = try lab.namespace("kern")
    try lab.sh(
      sw,
      """
      ip link add acc0 type veth peer name vm0 netns \(vm) && \
      ip link add und0 type veth peer name und1 netns \(kern) && \
      ip addr add 10.80.0.1/24 dev und0 && ip link set acc0 up && ip link set und0 up
      """)
    try lab.sh(
      vm,
      "ip addr add 192.168.80.1/24 dev vm0 && ip link set vm0 up && (ethtool -K vm0 tso off gso off >/dev/null 2>&1 || true)"
    )
    try lab.sh(
      kern,
      """
      ip addr add 10.80.0.2/24 dev und1 && ip link set und1 up && \
      ip link add vx100 type vxlan id 100 local 10.80.0.2 remote 10.80.0.1 dstport 4789 dev und1 && \
      ip link add br0 type bridge && ip link set vx100 master br0 && \
      ip addr add 192.168.80.2/24 dev br0 && ip link set vx100 up && ip link set br0 up
      """)
  }

  override func tearDown() {
    lab?.destroy()
    lab = nil
  }

  static func config(workers: Int = 1, io: PortIO = .afPacket, offloadTaps: Bool = true) -> SiteConfig {
    var config = SiteConfig(site: .init(name: "e2e", vtep: IPAddress("10.80.0.1")!, underlay: "und0"))
    config.site.workers = workers
    config.interfaces = ["und0", "acc0"].map {
      SiteConfig.InterfaceSettings(name: $0, io: io, offloadTap: offloadTaps)
    }
    var domain = SiteConfig.BridgeDomain(vni: 100)
    domain.ports = [SiteConfig.PortMember(interface: "acc0")]
    domain.flood = [IPAddress("10.80.0.2")!]
    config.bridgeDomains = [domain]
    return config
  }

  /// `expected`: the port types the underlay and the access interface get (both `io`
  /// when nil).
  @discardableResult
  func pingThroughSwitch(
    workers: Int, io: PortIO = .afPacket, expected: (underlay: PortIO, access: PortIO)? = nil,
    offloadTaps: Bool = true, options: LiveSwitch.Options = LiveSwitch.Options(),
    whileRunning: (LiveSwitch) throws -> Void = { _ in }
  ) throws -> LiveSwitch {
    let expected = expected ?? (io, io)
    let core = SwitchCore(config: Self.config(workers: workers, io: io, offloadTaps: offloadTaps))
    let live = LiveSwitch(core: core, options: options)
    try NetworkNamespace.run(sw) { try live.start() }
    defer { live.stop() }
    XCTAssertTrue(live.isRunning)
    XCTAssertEqual(live.portTypes, [expected.underlay, expected.access], "\(live.warnings)")
    // On AF_PACKET the underlay's datagrams end at tc ingress (`UnderlayStackBypass`).
    XCTAssertEqual(live.bypassesStackForVXLAN, expected.underlay == .afPacket, "\(live.warnings)")
    // Counted from here: the kernel's side may have flooded before the switch was up.
    let udpBefore = try Self.udpStatistics(lab, sw)

    let pinged = eventually(timeout: 15, interval: 0.2) {
      (try? lab.sh(vm, "ping -c 1 -W 1 192.168.80.2 >/dev/null")) != nil
    }
    XCTAssertTrue(
      pinged,
      "ping through vxswitch to the kernel vxlan side; stats: \(live.portStatistics) \(core.statisticsReport())"
    )
    // ARP learned both ways, across the tunnel.
    let vmMAC = try lab.mac(vm, "vm0")
    let bridgeMAC = try lab.mac(kern, "br0")
    XCTAssertTrue(try lab.sh(vm, "ip neigh show 192.168.80.2 dev vm0").contains(bridgeMAC.description))
    XCTAssertTrue(try lab.sh(kern, "ip neigh show 192.168.80.1 dev br0").contains(vmMAC.description))
    // The kernel vxlan learned the VM's MAC behind our VTEP.
    XCTAssertTrue(try lab.sh(kern, "bridge fdb show dev vx100").contains("\(vmMAC) dst 10.80.0.1"))
    // And the switch's resolver found the kernel VTEP's MAC.
    XCTAssertEqual(live.resolver?.entry(for: IPAddress("10.80.0.2")!)?.mac, try lab.mac(kern, "und1"))
    XCTAssertEqual(
      try lab.sh(vm, "ping -c 5 -i 0.05 -W 1 192.168.80.2 | grep -o '[0-9]* received'").trimmingCharacters(
        in: .whitespacesAndNewlines), "5 received")
    // Every datagram from the kernel's VTEP reached the switch and none the host's UDP
    // (where the port holder would have discarded it, counted in InErrors).
    XCTAssertEqual(try Self.udpStatistics(lab, sw), udpBefore)
    try whileRunning(live)
    live.stop()
    live.stop()  // idempotent
    XCTAssertFalse(live.isRunning)
    XCTAssertFalse(live.bypassesStackForVXLAN)
    return live
  }

  /// The namespace's UDP counters that a datagram reaching the host's UDP moves.
  static func udpStatistics(_ lab: NetnsLab, _ ns: String) throws -> [String: Int] {
    let lines = try lab.sh(ns, "grep '^Udp:' /proc/net/snmp").split(separator: "\n").map {
      $0.split(separator: " ").dropFirst().map(String.init)
    }
    guard lines.count == 2 else { return [:] }
    let values = Dictionary(zip(lines[0], lines[1].map { Int($0) ?? -1 }), uniquingKeysWith: { a, _ in a })
    return values.filter { ["InDatagrams", "InErrors", "NoPorts"].contains($0.key) }
  }

  func testPingKernelVXLANThroughSwitch() throws { try pingThroughSwitch(workers: 1) }

  func testPingWithTwoFanoutWorkers() throws { try pingThroughSwitch(workers: 2) }

  /// `offload_tap`: on (the default), the underlay's tunnel tap and the access port's VM
  /// tap are made beside their interfaces while the switch runs (or a warning says why
  /// not) and removed when it stops; off on both interfaces, neither is made, and frames
  /// pass all the same.
  func testOffloadTapsFollowTheConfiguration() throws {
    for taps in [true, false] {
      try pingThroughSwitch(workers: 1, offloadTaps: taps) { live in
        let links = try lab.sh(sw, "ip -o link show")
        for (prefix, interface) in [("vxstnl", "und0"), ("vxsvm", "acc0")] {
          let name =
            "\(prefix)\(try lab.sh(sw, "cat /sys/class/net/\(interface)/ifindex").trimmingCharacters(in: .whitespacesAndNewlines))"
          let refused = live.warnings.contains { $0.contains(name) }
          XCTAssertEqual(links.contains(" \(name):"), taps && !refused, "\(name): \(live.warnings) \(links)")
          let index = try XCTUnwrap(live.core.interfaces.firstIndex(of: interface))
          XCTAssertEqual(live.offloadTap(interface: index), taps && !refused ? name : nil)
          if !taps { XCTAssertFalse(refused, "\(live.warnings)") }
        }
      }
      let after = try lab.sh(sw, "ip -o link show")
      XCTAssertFalse(after.contains("vxstnl") || after.contains("vxsvm"), "taps left behind: \(after)")
    }
  }

  /// The same through AF_XDP ports on both interfaces; stopping removes the XDP programs.
  /// One worker's AF_XDP ports share a UMEM: the pings leave both ways from the chunk they
  /// were received in (encapsulated in its headroom, decapsulated by sending from the inner
  /// frame), and the kernel's side gets them intact (the pings pass); with
  /// `xdpSendsInPlace` off every frame is copied.
  func testPingThroughAFXDPPorts() throws {
    let live = try pingThroughSwitch(workers: 1, io: .afXDP) { live in
      let sent = live.portStatistics[0].map(\.sentInPlace)
      XCTAssertTrue(sent.allSatisfy { $0 >= 5 }, "frames sent in place (underlay, access): \(sent)")
    }
    XCTAssertEqual(live.warnings, [])
    try assertNoXDPProgramLeft()
  }

  func testAFXDPPortsCopyWhenNotSendingInPlace() throws {
    var options = LiveSwitch.Options()
    options.xdpSendsInPlace = false
    let live = try pingThroughSwitch(workers: 1, io: .afXDP, options: options) { live in
      XCTAssertEqual(live.portStatistics[0].map(\.sentInPlace), [0, 0])
    }
    XCTAssertEqual(live.warnings, [])
  }

  /// Two workers on veths, which have one queue each: both workers' sockets share the
  /// queue's UMEM and the steering program spreads the flows over them. Sixteen flows
  /// from the kernel's side (one per source address, so sixteen UDP source ports from
  /// its vxlan device) reach the VM, and both workers' underlay sockets receive some.
  func testTwoAFXDPWorkersShareASingleQueue() throws {
    try lab.sh(kern, (10..<26).map { "ip addr add 192.168.80.\($0)/24 dev br0" }.joined(separator: " && "))
    let live = try pingThroughSwitch(workers: 2, io: .afXDP) { live in
      for host in 10..<26 {
        XCTAssertNoThrow(
          try self.lab.sh(self.kern, "ping -c 2 -i 0.05 -W 2 -I 192.168.80.\(host) 192.168.80.1 >/dev/null"),
          "flow from 192.168.80.\(host)")
      }
      let underlayFrames = live.portStatistics.map { $0[0].receivedFrames }
      XCTAssertEqual(underlayFrames.count, 2)
      XCTAssertTrue(underlayFrames.allSatisfy { $0 > 0 }, "received per worker: \(underlayFrames)")
      // Workers sharing a queue share its UMEM, not one across interfaces: copies.
      XCTAssertEqual(live.portStatistics.joined().map(\.sentInPlace).reduce(0, +), 0)
    }
    XCTAssertEqual(live.warnings, [])
    try assertNoXDPProgramLeft()
  }

  /// An underlay with four receive queues and one worker: the worker takes a socket on
  /// every queue (a frame can only go to a socket of the queue it arrived on), so the
  /// kernel's sixteen flows, spread over the queues by its transmit hash, all reach the VM.
  func testOneAFXDPWorkerTakesEveryQueueOfTheDevice() throws {
    try lab.sh(sw, "ip link del und0")
    try lab.sh(
      sw,
      """
      ip link add und0 numtxqueues 4 numrxqueues 4 type veth peer name und1 numtxqueues 4 numrxqueues 4 \
        netns \(kern) && ip addr add 10.80.0.1/24 dev und0 && ip link set und0 up
      """)
    try lab.sh(
      kern,
      """
      (ip link del vx100 2>/dev/null || true) && \
      ip addr add 10.80.0.2/24 dev und1 && ip link set und1 up && \
      ip link add vx100 type vxlan id 100 local 10.80.0.2 remote 10.80.0.1 dstport 4789 dev und1 && \
      ip link set vx100 master br0 && ip link set vx100 up && \
      \((10..<26).map { "ip addr add 192.168.80.\($0)/24 dev br0" }.joined(separator: " && "))
      """)
    XCTAssertEqual(try NetworkNamespace.run(sw) { cp_interface_rx_queues("und0") }, 4)
    let live = try pingThroughSwitch(workers: 1, io: .afXDP) { live in
      for host in 10..<26 {
        XCTAssertNoThrow(
          try self.lab.sh(self.kern, "ping -c 2 -i 0.05 -W 2 -I 192.168.80.\(host) 192.168.80.1 >/dev/null"),
          "flow from 192.168.80.\(host)")
      }
      // The worker's UMEM has a context per queue (five): replies leave in place too.
      let sent = live.portStatistics[0].map(\.sentInPlace)
      XCTAssertTrue(sent.allSatisfy { $0 >= 32 }, "frames sent in place (underlay, access): \(sent)")
    }
    XCTAssertEqual(live.warnings, [])
    try assertNoXDPProgramLeft()
  }

  /// A veth takes no XDP program while its peer's MTU is over a page: that interface gets
  /// AF_PACKET instead, the switch says why, and the other keeps AF_XDP.
  func testAFXDPFallsBackToAFPacketWithTheReason() throws {
    try lab.sh(kern, "ip link set und1 mtu 9000")
    let live = try pingThroughSwitch(workers: 2, io: .afXDP, expected: (.afPacket, .afXDP))
    XCTAssertEqual(
      live.warnings.filter { $0.contains("und0: AF_XDP unavailable, using AF_PACKET") }.count, 1,
      "\(live.warnings)")
    XCTAssertTrue(live.warnings.contains { $0.contains("peer's MTU") }, "\(live.warnings)")
    try assertNoXDPProgramLeft()
  }

  func assertNoXDPProgramLeft() throws {
    try NetworkNamespace.run(sw) {
      for name in ["und0", "acc0"] {
        XCTAssertEqual(XDPAttachment.attachedProgramID(interface: name), 0, "\(name) keeps an XDP program")
      }
    }
  }

  func testStartErrorsAreTyped() throws {
    try NetworkNamespace.run(sw) {
      var config = Self.config()
      config.bridgeDomains[0].ports = [SiteConfig.PortMember(interface: "eth9")]
      XCTAssertThrowsError(try LiveSwitch(core: SwitchCore(config: config)).start()) { error in
        XCTAssertEqual(error as? AFPacketError, .noSuchInterface("eth9"))
      }
      var onUnderlay = Self.config()
      onUnderlay.bridgeDomains[0].ports = [SiteConfig.PortMember(interface: "und0")]
      XCTAssertThrowsError(try LiveSwitch(core: SwitchCore(config: onUnderlay)).start()) { error in
        XCTAssertEqual(error as? AFPacketError, .interfaceClaimedTwice("und0"))
      }
      let first = LiveSwitch(core: SwitchCore(config: Self.config()))
      try first.start()
      defer { first.stop() }
      var other = Self.config()
      other.site.udpPort = 4790
      XCTAssertThrowsError(try LiveSwitch(core: SwitchCore(config: other)).start()) { error in
        guard case .interfaceClaimedTwice? = error as? AFPacketError else { return XCTFail("\(error)") }
      }
    }
  }
}
