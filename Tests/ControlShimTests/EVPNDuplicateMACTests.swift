import API
import Dataplane
import Foundation
import Management
import Synchronization
import XCTest

@testable import ControlShim

/// Duplicate-MAC freeze end to end (RFC 7432 section 15.1): a `SwitchCore` with its
/// `EVPNControlPlane`, iBGP to another of our speakers on loopback that plays the remote
/// VTEP. The MAC moves between a local port and the remote VTEP until it is frozen; the
/// freeze is logged, shown by `show-bgp`, `show-fdb` and `show-arp`, keeps the MAC from
/// being advertised, and `clear-dup-mac` on the control commands releases it.
final class EVPNDuplicateMACTests: XCTestCase {
  private var remote: EVPNSpeaker?
  private var controlPlane: EVPNControlPlane?

  override func tearDown() async throws {
    if let controlPlane { await controlPlane.shutdown() }
    if let remote { await remote.shutdown() }
  }

  static let host = mac("02:aa:00:00:00:01")
  static let hostIP = ip("10.1.1.5")

  func testFrozenMACIsLoggedShownWithdrawnAndClearedThroughTheManagementService() async throws {
    let ourPort = freeTCPPort()
    let remotePort = freeTCPPort()
    var remoteConfiguration = SpeakerConfiguration(
      asn: 65000, routerID: 0x0909_0909, vtep: ip("10.0.0.9"), listenAddress: "127.0.0.1",
      listenPort: remotePort, vnis: [VNIConfiguration(vni: 100)],
      peers: [PeerConfiguration(name: "switch", address: "127.0.0.1", port: ourPort, remoteAS: 65000)])
    remoteConfiguration.holdTime = 9
    remoteConfiguration.connectRetryTime = 0.05
    remoteConfiguration.connectRetryMaximum = 0.5
    remoteConfiguration.duplicateMACMaxMoves = 100
    let sink = RecordingSink()
    let remote = EVPNSpeaker(configuration: remoteConfiguration, sink: sink)
    sink.observe(remote)
    self.remote = remote
    try await remote.start()

    var site = SiteConfig.Site(name: "dup", vtep: ip("10.0.0.1"), underlay: "eth1")
    site.underlayMAC = mac("02:00:00:00:00:01")
    site.fdbCapacity = 1 << 12
    var config = SiteConfig(site: site)
    config.neighbors = [.init(ip: ip("10.0.0.9"), mac: mac("02:00:00:00:99:99"))]
    var domain = SiteConfig.BridgeDomain(vni: 100)
    domain.ports = [.init(interface: "vm1"), .init(interface: "vm2")]
    domain.arpSuppression = true
    config.bridgeDomains = [domain]
    var bgp = SiteConfig.BGP(asn: 65000, routerID: ip("1.1.1.1"))
    bgp.listenPort = ourPort
    bgp.dupMACMaxMoves = 2
    var peer = SiteConfig.BGP.Peer(address: ip("127.0.0.1"), asn: 65000)
    peer.port = remotePort
    peer.holdTime = 9
    bgp.peers = [peer]
    config.bgp = bgp
    let offline = OfflineSwitch(config: config)
    let logs = Mutex<[String]>([])
    var options = EVPNControlPlane.Options()
    options.listenAddress = "127.0.0.1"
    options.connectRetryTime = 0.05
    options.log = { line in logs.withLock { $0.append(line) } }
    let controlPlane = try XCTUnwrap(EVPNControlPlane(core: offline.core, options: options))
    self.controlPlane = controlPlane
    try await controlPlane.start()
    XCTAssertTrue(sink.wait { $0.established("switch") >= 1 })
    let service = SiteService(core: offline.core, controlPlane: controlPlane, clock: { 10 })

    // The host shows up on vm1 with its IP: MAC and MAC/IP routes reach the remote.
    let arp = FrameBuilder.arpRequestFrame(
      senderMAC: Self.host, senderIP: Self.hostIP, targetIP: ip("10.1.1.99"))
    offline.forward(interface: "vm1", frames: [arp], now: 1)
    XCTAssertTrue(sink.wait { $0.installed(100, Self.host, Self.hostIP)?.peer == "switch" })
    XCTAssertEqual(sink.snapshot.installed(100, Self.host)?.sequence, 0)
    // Move 1: the remote VTEP claims it (sequence 1); we lose and withdraw both routes.
    remote.advertiseMAC(vni: 100, mac: Self.host)
    XCTAssertTrue(
      sink.wait { $0.installed(100, Self.host) == nil && $0.installed(100, Self.host, Self.hostIP) == nil })
    try await eventually { offline.core.fdbRows(vni: 100, now: 2).first?.vtep == "10.0.0.9" }
    // Move 2: back on vm1. Frozen here: not advertised, logged, shown.
    offline.forward(interface: "vm1", frames: [arp], now: 3)
    try await eventually { !controlPlane.speaker.duplicateMACs.isEmpty }
    await controlPlane.speaker.sync()
    await remote.sync()
    XCTAssertNil(sink.snapshot.installed(100, Self.host), "a frozen MAC was advertised")
    XCTAssertNil(sink.snapshot.installed(100, Self.host, Self.hostIP))
    let line = try XCTUnwrap(
      logs.withLock { $0 }.first { $0.contains("duplicate MAC") }, "\(logs.withLock { $0 })")
    XCTAssertTrue(line.contains("02:aa:00:00:00:01 in VNI 100: 2 moves within 180 s; frozen until"), line)
    XCTAssertTrue(line.contains("vxswitch clear dup-mac --vni 100 --mac 02:aa:00:00:00:01"), line)

    let status = try await service.bgp()
    let bgpReply = try APICoding.encoder.encode(status)
    XCTAssertEqual(status.frozenMACs, 1)
    XCTAssertEqual(status.duplicateMACs.map(\.mac), ["02:aa:00:00:00:01"])
    XCTAssertEqual(status.duplicateMACs.first?.moves, 2)
    XCTAssertTrue(String(decoding: bgpReply, as: UTF8.self).contains("\"duplicate_macs\":[{"))
    let fdb = ["entries": service.allFDB()]
    let row = try XCTUnwrap(fdb["entries"]?.first { $0.mac == "02:aa:00:00:00:01" })
    XCTAssertEqual(row.origin, "local")
    XCTAssertEqual(row.duplicate, true)
    let arpRows = ["entries": service.arp()]
    XCTAssertEqual(arpRows["entries"]?.first?.duplicate, true)

    // A release that matches nothing releases nothing.
    XCTAssertEqual(try service.clearDuplicateMACs(vni: 200), [])

    // The operator clears it: advertised again (MAC and MAC/IP, sequence 2), logged.
    let cleared = try service.clearDuplicateMACs(vni: 100, mac: MACAddress("02:AA:00:00:00:01"))
    XCTAssertEqual(cleared, [ReleasedMAC(vni: 100, mac: "02:aa:00:00:00:01")])
    XCTAssertTrue(
      sink.wait {
        $0.installed(100, Self.host)?.sequence == 2
          && $0.installed(100, Self.host, Self.hostIP)?.sequence == 2
      }, "\(sink.snapshot.macs)")
    XCTAssertTrue(
      logs.withLock { $0 }.contains("bgp: duplicate MAC 02:aa:00:00:00:01 in VNI 100 released (cleared)"))
    let after = ["entries": service.allFDB()]
    XCTAssertNil(after["entries"]?.first { $0.mac == "02:aa:00:00:00:01" }?.duplicate)
  }

  private func eventually(
    timeout: Double = 15, file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool
  ) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
      if Date() > deadline {
        XCTFail("timed out", file: file, line: line)
        throw CancellationError()
      }
      try await Task.sleep(nanoseconds: 20_000_000)
    }
  }
}
