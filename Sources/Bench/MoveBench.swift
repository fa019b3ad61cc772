import ControlShim
import Dataplane
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// `Bench control --mac-move`: MAC-move convergence between two vxswitch sites.
///
/// Two in-process sites, each an `OfflineSwitch` (SwitchCore + pipeline) with its own
/// `EVPNControlPlane`, peering over iBGP on 127.0.0.1 (B connects to A). For each of N
/// fresh MACs: a frame from the MAC enters site A's port vm1 (A learns it and
/// advertises it; B installs it behind VTEP A: "new MAC"), then a frame from the same
/// MAC enters site B's vm1 (B learns it over its control entry and advertises it with
/// MAC-mobility sequence 1; A's route loses, A withdraws it and points the MAC at
/// VTEP B: "move"). Each figure is the time from handing the frame to the site's
/// dataplane (which learns it and drains its learn queue at once, as the live
/// learner thread does every millisecond) until the other site's FDB entry points at
/// the new VTEP, read with the dataplane's own lookup.
struct MoveBench {
  let moves: Int

  static let vni: UInt32 = 100
  static let vtepA = IPAddress("10.0.0.1")!
  static let vtepB = IPAddress("10.0.0.2")!
  static let macBase: UInt64 = 0x0200_00AB_0000

  struct Report: Codable {
    var moves: Int
    /// Milliseconds: median, 99th percentile, maximum.
    var moveMedianMs: Double
    var moveP99Ms: Double
    var moveMaxMs: Double
    var newMacMedianMs: Double
    var newMacP99Ms: Double
    var newMacMaxMs: Double

    var text: String {
      [
        String(
          format: "Bench control --mac-move: %d MACs, two sites over one iBGP session (127.0.0.1)", moves),
        String(
          format: "  move A -> B (B learns, A's FDB points at B): median %.3f ms, p99 %.3f ms, max %.3f ms",
          moveMedianMs, moveP99Ms, moveMaxMs),
        String(
          format: "  new MAC at A (B's FDB points at A):          median %.3f ms, p99 %.3f ms, max %.3f ms",
          newMacMedianMs, newMacP99Ms, newMacMaxMs),
      ].joined(separator: "\n")
    }
  }

  final class Site {
    let offline: OfflineSwitch
    let controlPlane: EVPNControlPlane
    let domain: UInt16
    let vm1: Int

    init(
      name: String, vtep: IPAddress, other: IPAddress, routerID: IPAddress, listenPort: UInt16,
      peerPort: UInt16?
    )
      throws
    {
      var site = SiteConfig.Site(name: name, vtep: vtep, underlay: "eth1")
      site.underlayMAC = MACAddress("02:00:00:00:00:01")!
      site.fdbCapacity = 4096
      var config = SiteConfig(site: site)
      config.neighbors = [.init(ip: other, mac: MACAddress("02:00:00:00:00:02")!)]
      var domain = SiteConfig.BridgeDomain(vni: MoveBench.vni)
      domain.ports = [.init(interface: "vm1"), .init(interface: "vm2")]
      config.bridgeDomains = [domain]
      var bgp = SiteConfig.BGP(asn: 65000, routerID: routerID)
      bgp.listenPort = listenPort
      var peer = SiteConfig.BGP.Peer(address: IPAddress("127.0.0.1")!, asn: 65000)
      if let peerPort { peer.port = peerPort } else { peer.passive = true }
      bgp.peers = [peer]
      config.bgp = bgp
      offline = OfflineSwitch(config: config, output: { _ in .discard })
      var options = EVPNControlPlane.Options()
      if listenPort != 0 { options.listenAddress = "127.0.0.1" }
      options.connectRetryTime = 0.05
      guard let controlPlane = EVPNControlPlane(core: offline.core, options: options),
        let domainIndex = offline.core.state.domainIndex(vni: MoveBench.vni),
        let vm1 = offline.interfaceIndex("vm1")
      else { throw BenchError.failed("site \(name): no control plane") }
      self.controlPlane = controlPlane
      self.domain = domainIndex
      self.vm1 = vm1
    }

    /// A frame from `mac` arrives on vm1 (learnt and drained at once).
    func receive(from mac: UInt64, now: UInt32) {
      let frame = FrameBuilder.udpFrame(
        link: .init(destination: MACAddress("ff:ff:ff:ff:ff:ff")!, source: MACAddress(rawValue: mac)),
        source: IPAddress("192.168.1.1")!, destination: IPAddress("192.168.1.2")!, sourcePort: 1000,
        destinationPort: 2000, payload: Array(repeating: 0, count: 18))
      offline.forward(interface: "vm1", frames: [frame], now: now)
    }

    /// True when the FDB sends `mac` to remote VTEP `vtep`.
    func points(_ mac: UInt64, at vtep: IPAddress) -> Bool {
      let core = offline.core
      let entry = core.fdb.lookup(FDBKey(bridgeDomain: domain, mac: mac))
      guard entry.isPresent, entry.kind == .vtep, core.fdb.isCurrent(entry, bridgeDomain: domain) else {
        return false
      }
      let addresses = core.state.vtepAddresses
      return Int(entry.index) < addresses.count && addresses[Int(entry.index)] == vtep
    }
  }

  func run() throws -> Report {
    let port = try ControlBench.freePort()
    let a = try Site(
      name: "a", vtep: Self.vtepA, other: Self.vtepB, routerID: IPAddress("1.1.1.1")!, listenPort: port,
      peerPort: nil)
    let b = try Site(
      name: "b", vtep: Self.vtepB, other: Self.vtepA, routerID: IPAddress("2.2.2.2")!, listenPort: 0,
      peerPort: port)
    let established = Atomic<Int>(0)
    for site in [a, b] {
      site.controlPlane.speaker.addObserver { event in
        if case .established = event { established.add(1, ordering: .relaxed) }
      }
    }
    try blocking { try await a.controlPlane.start() }
    defer { blocking { await a.controlPlane.shutdown() } }
    try blocking { try await b.controlPlane.start() }
    defer { blocking { await b.controlPlane.shutdown() } }
    try waitUntil("session established", timeout: 30) { established.load(ordering: .relaxed) >= 2 }

    var moveTimes: [Double] = []
    var newTimes: [Double] = []
    for index in 0..<moves {
      let mac = Self.macBase | UInt64(index)
      let now = UInt32(1 + index)
      var start = monotonicNanos()
      a.receive(from: mac, now: now)
      try waitUntil("MAC \(index) at B", timeout: 10) { b.points(mac, at: Self.vtepA) }
      newTimes.append(Double(monotonicNanos() - start) / 1e6)
      // Quiet between rounds so that each figure is one convergence.
      usleep(2000)
      start = monotonicNanos()
      b.receive(from: mac, now: now)
      try waitUntil("MAC \(index) moved to B", timeout: 10) { a.points(mac, at: Self.vtepB) }
      moveTimes.append(Double(monotonicNanos() - start) / 1e6)
      usleep(2000)
    }
    let move = Self.summary(moveTimes)
    let new = Self.summary(newTimes)
    return Report(
      moves: moves, moveMedianMs: move.median, moveP99Ms: move.p99, moveMaxMs: move.max,
      newMacMedianMs: new.median, newMacP99Ms: new.p99, newMacMaxMs: new.max)
  }

  /// Median, 99th percentile (nearest rank) and maximum.
  static func summary(_ values: [Double]) -> (median: Double, p99: Double, max: Double) {
    guard !values.isEmpty else { return (0, 0, 0) }
    let sorted = values.sorted()
    let median =
      sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    let rank = Int((0.99 * Double(sorted.count)).rounded(.up))
    return (median, sorted[max(0, min(sorted.count - 1, rank - 1))], sorted.last!)
  }

  /// Polls `condition` every 20 µs (the figures' resolution) until it holds.
  private func waitUntil(_ what: String, timeout: Double, _ condition: () -> Bool) throws {
    let deadline = monotonicNanos() + UInt64(timeout * 1e9)
    while !condition() {
      if monotonicNanos() > deadline { throw BenchError.failed("\(what): not within \(timeout) s") }
      usleep(20)
    }
  }
}
