import Foundation
import Synchronization
import XCTest

@testable import Dataplane

/// A port flooded with frames from random source MACs, as fast as one core sends them,
/// against the switch's learn limit: the FDB stays within the limit, the MACs learnt
/// before the flood stay, and known unicast between a VM and a kernel vxlan site is
/// forwarded throughout.
///
///   [vm]  vm0 192.168.81.1 ── acc0 ┐
///   [att] att0 (the flood)  ── acc1 ┴ [sw: vxswitch, VTEP 10.81.0.1] und0 ── und1 [kern]
///   [kern] und1 10.81.0.2, vx100 (VNI 100) in br0 192.168.81.2
final class LearnLimitFloodTests: XCTestCase {
  static let learnLimit = 128
  static let floodSeconds = 3.0
  /// The flood's one destination: a MAC the switch knows behind the attacker's own port,
  /// so every flood frame is filtered after learning and the test measures the learn
  /// path, not the bandwidth of flooding unknown unicast.
  static let floodDestination = MACAddress("02:00:00:ee:ee:01")!

  var lab: NetnsLab!
  var sw = ""
  var vm = ""
  var attacker = ""
  var kern = ""

  override func setUpWithError() throws {
    lab = try NetnsLab.make(self)
    sw = try lab.namespace("sw")
    vm = try lab.namespace("vm")
    attacker = try lab.namespace("att")
    kern = try lab.namespace("kern")
    try lab.sh(
      sw,
      """
      ip link add acc0 type veth peer name vm0 netns \(vm) && \
      ip link add acc1 type veth peer name att0 netns \(attacker) && \
      ip link add und0 type veth peer name und1 netns \(kern) && \
      ip addr add 10.81.0.1/24 dev und0 && ip link set acc0 up && ip link set acc1 up && ip link set und0 up
      """)
    try lab.sh(vm, "ip addr add 192.168.81.1/24 dev vm0 && ip link set vm0 up")
    try lab.sh(attacker, "ip link set att0 up")
    try lab.sh(
      kern,
      """
      ip addr add 10.81.0.2/24 dev und1 && ip link set und1 up && \
      ip link add vx100 type vxlan id 100 local 10.81.0.2 remote 10.81.0.1 dstport 4789 dev und1 && \
      ip link add br0 type bridge && ip link set vx100 master br0 && \
      ip addr add 192.168.81.2/24 dev br0 && ip link set vx100 up && ip link set br0 up
      """)
  }

  override func tearDown() {
    lab?.destroy()
    lab = nil
  }

  func testRandomSourceFloodStaysWithinTheLearnLimitAndKnownUnicastGoesOn() throws {
    var config = SiteConfig(site: .init(name: "flood", vtep: IPAddress("10.81.0.1")!, underlay: "und0"))
    config.site.learnLimit = Self.learnLimit
    var domain = SiteConfig.BridgeDomain(vni: 100)
    domain.ports = [SiteConfig.PortMember(interface: "acc0"), SiteConfig.PortMember(interface: "acc1")]
    domain.flood = [IPAddress("10.81.0.2")!]
    config.bridgeDomains = [domain]
    let core = SwitchCore(config: config)
    let live = LiveSwitch(core: core)
    try NetworkNamespace.run(sw) { try live.start() }
    defer { live.stop() }

    let reached = eventually(timeout: 15, interval: 0.2) {
      (try? lab.sh(vm, "ping -c 1 -W 1 192.168.81.2 >/dev/null")) != nil
    }
    XCTAssertTrue(reached, "ping through vxswitch before the flood; \(core.statistics)")
    let sender = try NetworkNamespace.run(attacker) { try RawSender(interface: "att0") }
    // The flood's destination, learnt behind the attacker's port before the flood.
    sender.send(Self.frame(source: Self.floodDestination, destination: .broadcast))
    let domainIndex = try XCTUnwrap(core.state.domainIndex(vni: 100))
    let vmMAC = try lab.mac(vm, "vm0")
    let bridgeMAC = try lab.mac(kern, "br0")
    let known = [vmMAC, bridgeMAC, Self.floodDestination]
    XCTAssertTrue(
      eventually(timeout: 5) { known.allSatisfy { self.isLearnt($0, core: core, domain: domainIndex) } },
      "MACs learnt before the flood")

    let floodDone = DispatchSemaphore(value: 0)
    let sent = Mutex<Flood.Outcome?>(nil)
    Thread.detachNewThread {
      let outcome = Flood.run(sender, seconds: Self.floodSeconds, destination: Self.floodDestination)
      sent.withLock { $0 = outcome }
      floodDone.signal()
    }
    // Known unicast both ways across the tunnel while the flood runs (3 s at 20 pings/s).
    let ping = try lab.sh(vm, "ping -c 50 -i 0.05 -W 2 192.168.81.2 | grep -o '[0-9]* received' || true")
    floodDone.wait()
    let outcome = try XCTUnwrap(sent.withLock { $0 })
    let received = Int(ping.split(separator: " ").first ?? "") ?? 0
    let rate = Double(outcome.frames) / outcome.seconds
    print("flood: \(outcome.frames) frames in \(outcome.seconds) s (\(Int(rate)) frames/s)")
    print("pings answered during the flood: \(received)/50")
    XCTAssertEqual(received, 50, "every ping answered during the flood; \(core.learnStatistics)")

    // The flood really was one: many more new sources than the limit, seen by the switch.
    XCTAssertGreaterThan(outcome.frames, 50 * Self.learnLimit)
    let accessReceived = live.portStatistics.flatMap { $0 }.reduce(UInt64(0)) { $0 + $1.receivedFrames }
    XCTAssertGreaterThan(accessReceived, UInt64(10 * Self.learnLimit))

    _ = core.drainLearnQueues()
    let learnt = core.fdb.counts().byOrigin
    let learntCount = (learnt[.local] ?? 0) + (learnt[.decap] ?? 0)
    XCTAssertLessThanOrEqual(learntCount, Self.learnLimit, "learnt MACs within the limit: \(learnt)")
    XCTAssertGreaterThanOrEqual(learntCount, Self.learnLimit - 1, "the flood filled the allowance: \(learnt)")
    let statistics = core.learnStatistics
    XCTAssertGreaterThan(statistics.limitDrops, 0, "sources refused at the limit are counted")
    XCTAssertEqual(statistics.tableFull, 0)
    for mac in known {
      XCTAssertTrue(isLearnt(mac, core: core, domain: domainIndex), "\(mac) kept through the flood")
    }
    // And after it: still forwarded, not flooded.
    XCTAssertEqual(
      try lab.sh(vm, "ping -c 5 -i 0.05 -W 1 192.168.81.2 | grep -o '[0-9]* received'").trimmingCharacters(
        in: .whitespacesAndNewlines), "5 received")
  }

  func isLearnt(_ mac: MACAddress, core: SwitchCore, domain: UInt16) -> Bool {
    let entry = core.fdb.lookup(FDBKey(bridgeDomain: domain, mac: mac.rawValue))
    return entry.isPresent && core.fdb.isCurrent(entry, bridgeDomain: domain)
  }

  /// A 64-byte IPv4/UDP frame.
  static func frame(source: MACAddress, destination: MACAddress) -> [UInt8] {
    let payload = [UInt8](repeating: 0x5A, count: 18)
    return Frames.ethernet(
      destination: destination, source: source, etherType: 0x0800,
      payload: Frames.ipv4UDP(
        source: IPAddress("192.168.81.66")!, destination: IPAddress("192.168.81.67")!, sourcePort: 9,
        destinationPort: 9, payload: payload))
  }
}

/// A flood from one `RawSender`: frames from random locally administered unicast sources,
/// each source new with overwhelming likelihood; a refused send (the veth's queue full) is
/// counted, not retried.
enum Flood {
  struct Outcome: Sendable {
    var frames: Int
    var errors: Int
    var seconds: Double
  }

  static func run(_ sender: RawSender, seconds: Double, destination: MACAddress) -> Outcome {
    var frame = LearnLimitFloodTests.frame(source: destination, destination: destination)
    var random = SplitMix64(seed: 0x5EED_F100D)
    var frames = 0
    var errors = 0
    let start = Date()
    let deadline = start.addingTimeInterval(seconds)
    while Date() < deadline {
      for _ in 0..<256 {
        let bits = random.next()
        frame[6] = UInt8(truncatingIfNeeded: bits) & 0xFC | 0x02
        for byte in 1..<6 { frame[6 + byte] = UInt8(truncatingIfNeeded: bits &>> (8 * UInt64(byte))) }
        if sender.trySend(frame) { frames += 1 } else { errors += 1 }
      }
    }
    return Outcome(frames: frames, errors: errors, seconds: Date().timeIntervalSince(start))
  }
}
