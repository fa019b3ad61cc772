import CPacket
import Foundation
import XCTest

@testable import Dataplane

/// NextHopResolver against a real kernel neighbour table in a namespace.
final class LiveSwitchResolverTests: XCTestCase {
  var lab: NetnsLab!
  var sw = ""
  var peer = ""

  override func setUpWithError() throws {
    lab = try NetnsLab.make(self)
    sw = try lab.namespace("sw")
    peer = try lab.namespace("peer")
    try lab.sh(
      sw,
      "ip link add p0 type veth peer name p1 netns \(peer) && ip addr add 10.79.0.1/24 dev p0 && ip link set p0 up"
    )
    try lab.sh(peer, "ip addr add 10.79.0.2/24 dev p1 && ip link set p1 up")
    try lab.sh(
      sw,
      "ip route add 10.99.0.0/24 via 10.79.0.3 && ip neigh replace 10.79.0.3 dev p0 lladdr 02:33:33:33:33:33 nud permanent"
    )
  }

  override func tearDown() {
    lab?.destroy()
    lab = nil
  }

  static func config(flood: [String], neighbors: [SiteConfig.Neighbor] = []) -> SiteConfig {
    var config = SiteConfig(site: .init(name: "t", vtep: IPAddress("10.79.0.1")!, underlay: "p0"))
    var domain = SiteConfig.BridgeDomain(vni: 10)
    domain.flood = flood.map { IPAddress($0)! }
    config.bridgeDomains = [domain]
    config.neighbors = neighbors
    return config
  }

  /// The destination MAC of the precomputed outer header the pipeline uses for `vtep`.
  static func headerMAC(_ core: SwitchCore, _ vtep: IPAddress) -> MACAddress? {
    let state = core.state
    guard let index = state.vtepAddresses.firstIndex(of: vtep), state.isResolved(vtep: index) else {
      return nil
    }
    let header = UnsafeRawPointer(state.vtepHeaders + index * ForwardingState.headerSlot)
    return MACAddress(rawValue: header.be64(0) >> 16)
  }

  func testResolvesOnLinkAndViaGatewayAndFollowsChanges() throws {
    let core = SwitchCore(config: Self.config(flood: ["10.79.0.2", "10.99.0.5"]))
    let peerMAC = try lab.mac(peer, "p1")
    let ownMAC = try lab.mac(sw, "p0")
    let resolver = try NetworkNamespace.run(sw) { try NextHopResolver(core: core) }
    defer { resolver.close() }
    resolver.refresh()
    func pump() {
      var descriptor = pollfd(fd: resolver.eventFD, events: Int16(POLLIN), revents: 0)
      _ = poll(&descriptor, 1, 10)
      resolver.handleEvents()
      resolver.tick()
    }
    // On-link VTEP: the resolver made the kernel ARP for it (nobody pinged).
    XCTAssertTrue(
      eventually {
        pump(); return Self.headerMAC(core, IPAddress("10.79.0.2")!) == peerMAC
      })
    XCTAssertEqual(resolver.entry(for: IPAddress("10.79.0.2")!)?.nextHop, IPAddress("10.79.0.2")!)
    // Behind a gateway: the gateway's MAC.
    XCTAssertTrue(
      eventually {
        pump(); return Self.headerMAC(core, IPAddress("10.99.0.5")!) == MACAddress("02:33:33:33:33:33")
      })
    XCTAssertEqual(resolver.entry(for: IPAddress("10.99.0.5")!)?.nextHop, IPAddress("10.79.0.3")!)
    // The underlay's own MAC was read from the interface.
    XCTAssertEqual(resolver.underlayMAC, ownMAC)
    XCTAssertEqual(core.state.vtepAddresses.isEmpty, false)

    // A neighbour change is followed from the notification.
    try lab.sh(sw, "ip neigh replace 10.79.0.2 dev p0 lladdr 02:44:44:44:44:44")
    XCTAssertTrue(
      eventually {
        pump(); return Self.headerMAC(core, IPAddress("10.79.0.2")!) == MACAddress("02:44:44:44:44:44")
      })
    // So is a route change: the gateway moves.
    try lab.sh(
      sw,
      "ip neigh replace 10.79.0.4 dev p0 lladdr 02:55:55:55:55:55 nud permanent && ip route replace 10.99.0.0/24 via 10.79.0.4"
    )
    XCTAssertTrue(
      eventually {
        pump(); return Self.headerMAC(core, IPAddress("10.99.0.5")!) == MACAddress("02:55:55:55:55:55")
      })
    // And the link MTU clamps the switch's.
    try lab.sh(sw, "ip link set p0 mtu 1400")
    XCTAssertTrue(
      eventually {
        pump(); return core.config.site.mtu == 1400
      })
  }

  func testStaticNeighborTakesPrecedence() throws {
    let staticMAC = MACAddress("02:66:66:66:66:66")!
    let core = SwitchCore(
      config: Self.config(
        flood: ["10.79.0.2"], neighbors: [.init(ip: IPAddress("10.79.0.2")!, mac: staticMAC)]))
    try lab.sh(sw, "ping -c1 -W1 10.79.0.2 >/dev/null")
    let resolver = try NetworkNamespace.run(sw) { try NextHopResolver(core: core) }
    defer { resolver.close() }
    resolver.refresh()
    resolver.handleEvents()
    XCTAssertEqual(Self.headerMAC(core, IPAddress("10.79.0.2")!), staticMAC)
    XCTAssertEqual(resolver.entry(for: IPAddress("10.79.0.2")!)?.isStatic, true)
  }
}
