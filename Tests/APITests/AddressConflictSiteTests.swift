import ControlShim
import Dataplane
import Foundation
import Management
import Synchronization
import XCTest

@testable import API

/// An address conflict between two sites over real BGP EVPN (in-process sites, speakers on
/// 127.0.12.1-2, the extension protocol over `LoopbackPeerNetwork`): a VM at A has IP x
/// (MAC m1) and A extends the network to B, which learns the binding from A's MAC/IP
/// route; then a VM at B takes x too (MAC m2). Both sites report the same conflict with
/// the same outcome, through the API, the metrics and the logs; ARP suppression answers
/// for neither binding; when B's VM leaves (its MAC ages out, its routes are withdrawn)
/// the conflict clears by itself at both and A's binding is answered for everywhere.
final class AddressConflictSiteTests: XCTestCase, @unchecked Sendable {
  static let subnet = "127.0.12"
  /// The contested address: IPv4 (ARP) or IPv6 (neighbour discovery).
  var address = IPAddress("192.168.50.5")!
  let m1 = MACAddress("02:aa:00:00:50:01")!
  let m2 = MACAddress("02:bb:00:00:50:02")!
  let asker = MACAddress("02:cc:00:00:50:00")!

  var peers = LoopbackPeerNetwork()
  var a: APITestSite!
  var b: APITestSite!
  /// The sites' structured log events (message and metadata), as `vxswitch run` logs them.
  final class LogBook: Sendable {
    let lines = Mutex<[(site: String, message: String, metadata: [String: String])]>([])
    func withLock<T>(_ body: (inout [(site: String, message: String, metadata: [String: String])]) -> T) -> T
    {
      lines.withLock { body(&$0) }
    }
  }
  let logs = LogBook()

  override func tearDown() async throws {
    for site in [a, b] { await site?.stop() }
  }

  private func makeSite(_ name: String, _ last: Int, vni: UInt32) throws -> APITestSite {
    let config = ExtensionTests.config(
      name, vtep: "\(Self.subnet).\(last)", networks: [("net1", vni, "vm1")], subnet: Self.subnet
    ).replacingOccurrences(of: "ports = [\"vm1\"]\n", with: "ports = [\"vm1\"]\narp_suppression = true\n")
    return try APITestSite(
      config: config, peers: peers, speaker: true,
      events: { [logs] message, metadata in logs.withLock { $0.append((name, message, metadata)) } })
  }

  /// The VM `mac` at `site` announces the contested IP (gratuitous ARP, or an
  /// unsolicited neighbour advertisement to all nodes).
  private func announce(_ mac: MACAddress, at site: APITestSite) {
    let frame =
      address.isIPv4
      ? FrameBuilder.arpRequestFrame(senderMAC: mac, senderIP: address, targetIP: address)
      : FrameBuilder.neighborAdvertisementFrame(
        senderMAC: mac, targetIP: address, destinationMAC: MACAddress("33:33:00:00:00:01")!,
        destinationIP: IPAddress("ff02::1")!, solicited: false)
    site.offline.forward(interface: "vm1", frames: [frame], now: 1)
    _ = site.offline.takeOutput("vm1") + site.offline.takeOutput("eth1")
  }

  /// An ARP request (or neighbour solicitation) for the contested IP from another VM at
  /// `site`; returns whether the site answered it itself (and with which MAC).
  private func ask(_ site: APITestSite, now: UInt32) -> MACAddress? {
    let before = site.offline.core.statisticsReport().arpSuppressed ?? 0
    // Another VM at each site (its own MAC and IP: the askers are no conflict).
    let last: UInt8 = site === a ? 9 : 10
    let mac = MACAddress(rawValue: asker.rawValue + UInt64(last))
    let request =
      address.isIPv4
      ? FrameBuilder.arpRequestFrame(
        senderMAC: mac, senderIP: IPAddress("192.168.50.\(last)")!, targetIP: address)
      : FrameBuilder.neighborSolicitationFrame(
        senderMAC: mac, senderIP: IPAddress("2001:db8:50::\(last)")!, targetIP: address)
    site.offline.forward(interface: "vm1", frames: [request], now: now)
    let replies = site.offline.takeOutput("vm1")
    _ = site.offline.takeOutput("eth1")
    // The MAC answered: the ARP sender hardware address, or the advertisement's target
    // link-layer address option.
    let macOffset = address.isIPv4 ? 22 : 80
    guard (site.offline.core.statisticsReport().arpSuppressed ?? 0) > before, let reply = replies.first,
      reply.count >= macOffset + 6
    else { return nil }
    return MACAddress(rawValue: reply[macOffset..<macOffset + 6].reduce(0) { $0 << 8 | UInt64($1) })
  }

  private func conflicts(_ site: APITestSite) throws -> [AddressConflict] {
    try site.client.get("/v1/conflicts", as: ConflictList.self).conflicts
  }

  /// What both sites must agree on (peer names differ: each calls its own claim local).
  private func outcome(_ conflict: AddressConflict) -> [String] {
    conflict.claims.map { "\($0.mac)@\($0.vtep)#\($0.sequence)\($0.winner ? " winner" : "")" } + [
      conflict.kind.rawValue, "\(conflict.vni)", conflict.ip ?? "-", conflict.rule.rawValue, conflict.outcome,
    ]
  }

  private func poll(_ what: String, timeout: Double = 20, _ condition: () throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while try !condition() {
      guard Date() < deadline else { return XCTFail("timed out: \(what)") }
      try await Task.sleep(for: .milliseconds(50))
    }
  }

  /// Both kinds, every outcome, encoded as the server does, match the document.
  func testConflictEncodingMatchesTheSchema() throws {
    let validator = SchemaValidator(document: try OpenAPIAgreementTests.loadDocument())
    let claims = [
      ConflictClaim(mac: "\(m1)", vtep: "10.0.0.1", sequence: 0, peer: "local", winner: true),
      ConflictClaim(mac: "\(m2)", vtep: "10.0.0.2", sequence: 0, peer: "site-b", winner: false),
    ]
    var list = ConflictList(conflicts: [
      AddressConflict(
        kind: .ip, vni: 100, ip: "\(address)", claims: claims, rule: .lowerVTEP,
        outcome: "arp_suppression_off",
        duration: 1.5)
    ])
    for outcome in ["local_withdrawn", "remote_withdraws", "not_involved"] {
      list.conflicts.append(
        AddressConflict(
          kind: .mac, vni: 100, mac: "\(m1)", claims: claims, rule: .lowerVTEP, outcome: outcome))
    }
    let encoded = try JSONValue.parse(APICoding.encoder.encode(list))
    XCTAssertNil(validator.validate(encoded, against: try validator.component("ConflictList")))
    XCTAssertEqual(
      try APICoding.decoder.decode(ConflictList.self, from: APICoding.encoder.encode(list)), list)
    list.conflicts[0].outcome = "flapping"
    XCTAssertNotNil(
      validator.validate(
        try JSONValue.parse(APICoding.encoder.encode(list)), against: try validator.component("ConflictList")),
      "the schema refuses an outcome it does not list")
  }

  /// What a site holds, for failure messages.
  private func dump(_ site: APITestSite) -> String {
    ["/v1/bgp", "/v1/fdb?vni=100", "/v1/arp", "/v1/conflicts", "/v1/bridge-domains"].map { path in
      "\(path): " + ((try? String(decoding: site.client.request(.GET, path).body, as: UTF8.self)) ?? "?")
    }.joined(separator: "\n")
  }

  func testTheSameIPAtTwoSitesIsOneConflictWithOneOutcomeAndClearsWhenOneSideLeaves() async throws {
    guard getuid() == 0 else { throw XCTSkip("needs root: TCP MD5 keys on loopback BGP sessions") }
    try await conflictScenario()
  }

  /// The same with an IPv6 address: bindings from neighbour advertisements, advertised as
  /// MAC/IP routes; solicitations answered locally before the conflict, for neither
  /// binding during it, with A's binding after.
  func testTheSameIPv6AddressAtTwoSitesIsOneConflictToo() async throws {
    guard getuid() == 0 else { throw XCTSkip("needs root: TCP MD5 keys on loopback BGP sessions") }
    address = IPAddress("2001:db8:50::5")!
    try await conflictScenario()
  }

  /// The same MAC learnt at two sites before they peer (a partition): once the session
  /// is up, the tie (same sequence number) is settled at once by the lower VTEP; B
  /// withdraws and reports it, A reports it until B's withdrawal arrives; B's host
  /// keeps sending, and B does not announce the MAC again with a higher sequence, so
  /// A keeps it (no flapping, no duplicate-MAC freeze); when B's MAC ages out the
  /// conflict ends and B forwards to A.
  func testTheSameMACAtTwoSitesIsSettledOnceAndDoesNotFlap() async throws {
    a = try makeSite("site-a", 1, vni: 100)
    b = try makeSite("site-b", 2, vni: 100)
    let shared = MACAddress("02:dd:00:00:50:01")!
    func send(from mac: MACAddress, at site: APITestSite, now: UInt32) {
      let frame = FrameBuilder.ethernet(
        FrameBuilder.EthernetHeaderFields(destination: .broadcast, source: mac), etherType: 0x88B5,
        payload: [UInt8](repeating: 0, count: 46))
      site.offline.forward(interface: "vm1", frames: [frame], now: now)
      _ = site.offline.takeOutput("eth1")
    }
    func entry(_ site: APITestSite, _ mac: MACAddress) throws -> FDBRow? {
      try site.client.get("/v1/fdb?mac=\(mac)", as: FDBList.self).entries.first
    }
    send(from: shared, at: a, now: 1)
    send(from: shared, at: b, now: 1)
    // The sites peer (as an extension's members do), exporting the network.
    for (site, other, name) in [(a!, 2, "site-b"), (b!, 1, "site-a")] {
      let me = site === a ? 1 : 2
      try await site.controlPlane!.addPeer(
        PeerConfiguration(
          name: name, address: "\(Self.subnet).\(other)", remoteAS: 64512, holdTime: 9, exportVNIs: [100],
          localAddress: "\(Self.subnet).\(me)"))
    }
    try await poll("B reports the MAC conflict it lost") {
      try conflicts(b).first?.outcome == "local_withdrawn"
    }
    let atB = try XCTUnwrap(conflicts(b).first)
    XCTAssertEqual(atB.kind, .mac)
    XCTAssertEqual(atB.mac, "\(shared)")
    XCTAssertEqual(atB.winner?.vtep, "\(Self.subnet).1", "equal sequences: the lower VTEP")
    XCTAssertEqual(atB.rule, .lowerVTEP)
    try await poll("A reported the tie it won, and its end once B withdrew") {
      logs.withLock { lines in
        lines.contains { $0.site == "site-a" && $0.message.hasPrefix("bgp: address conflict started: MAC") }
          && lines.contains {
            $0.site == "site-a" && $0.message.hasPrefix("bgp: address conflict cleared: MAC")
          }
      }
    }
    XCTAssertEqual(try conflicts(a), [])
    XCTAssertEqual(try entry(b, shared)?.vtep, "\(Self.subnet).1", "B forwards the MAC to A")

    // B's host keeps sending: B learns it locally again, but announces nothing new.
    for now: UInt32 in 2...7 { send(from: shared, at: b, now: now) }
    // A MAC learnt at B afterwards reaches A: B's UPDATEs since then have arrived.
    let marker = MACAddress("02:dd:00:00:50:02")!
    send(from: marker, at: b, now: 8)
    try await poll("B's later MAC reached A") { try entry(a, marker) != nil }
    XCTAssertEqual(try entry(a, shared)?.origin, "local", "A still holds the MAC: nothing flapped")
    for site in [a!, b!] {
      XCTAssertEqual(
        try site.client.get("/v1/bgp", as: SpeakerStatus.self, decoder: JSONDecoder()).frozenMACs, 0)
    }
    XCTAssertEqual(try conflicts(b).count, 1, "the conflict lasts while B holds the MAC")

    // B's host leaves: its MAC ages out at B, the conflict ends, B forwards to A again.
    send(from: MACAddress("02:dd:00:00:50:03")!, at: b, now: 400)
    try await poll("the conflict clears at B") { try conflicts(b).isEmpty }
    try await poll("B forwards the MAC to A again") {
      try entry(b, shared).map { [$0.origin, $0.vtep] } == ["control", "\(Self.subnet).1"]
    }
    XCTAssertEqual(try entry(a, shared)?.origin, "local")
  }

  private func conflictScenario() async throws {
    // net1 is on VNI 100 at A and 200 at B: the extension keeps A's 100 (B renumbers).
    a = try makeSite("site-a", 1, vni: 100)
    b = try makeSite("site-b", 2, vni: 200)
    // A's VM has had x since before the extension: A binds it locally and answers for it.
    announce(m1, at: a)
    XCTAssertEqual(a.offline.core.arpBinding(vni: 100, ip: address), m1)
    XCTAssertEqual(ask(a, now: 1), m1, "A answers for its own VM")
    XCTAssertEqual(try conflicts(a), [])

    // A extends net1 to B; the members' BGP EVPN session carries A's binding to B.
    let body = try JSONSerialization.data(withJSONObject: ["network": "net1", "sites": ["site-b"]])
    XCTAssertEqual(try a.client.request(.POST, "/v1/extensions", body: body).status, 202)
    let settled = await a.extensions!.settle()
    XCTAssertTrue(settled)
    try await poll("B holds A's binding from its MAC/IP route") {
      b.offline.core.arpBinding(vni: 100, ip: address) == m1
    }
    XCTAssertEqual(ask(b, now: 1), m1, "B answers with A's binding")

    // A VM at B takes x too (other MAC): B reports its claim, advertises it, and both
    // sites see the same pair of MAC/IP routes.
    announce(m2, at: b)
    try await poll("both sites report the conflict") {
      try !conflicts(a).isEmpty && !conflicts(b).isEmpty
    }
    let atA = try conflicts(a)
    let atB = try conflicts(b)
    XCTAssertEqual(atA.count, 1, "A:\n\(dump(a))\nB:\n\(dump(b))")
    XCTAssertEqual(atA.map(outcome), atB.map(outcome), "the same conflict, the same outcome")
    let conflict = try XCTUnwrap(atA.first)
    XCTAssertEqual(conflict.kind, .ip)
    XCTAssertEqual(conflict.ip, "\(address)")
    XCTAssertEqual(conflict.winner?.mac, "\(m1)", "equal sequences: the lower VTEP's binding")
    XCTAssertEqual(conflict.winner?.vtep, "\(Self.subnet).1")
    XCTAssertEqual(conflict.rule, .lowerVTEP)
    XCTAssertEqual(Set(conflict.claims.map(\.mac)), ["\(m1)", "\(m2)"])
    XCTAssertEqual(atA.first?.claims.first?.peer, "local")
    XCTAssertEqual(atB.first?.claims.first?.peer, "site-a")

    // ARP suppression answers for neither binding, at either site; the requests are
    // forwarded instead, and the entries say why.
    for site in [a!, b!] {
      XCTAssertTrue(site.offline.core.isARPConflicted(vni: 100, ip: address))
      XCTAssertNil(ask(site, now: 2), "\(site.offline.core.config.site.name) answered a conflicted IP")
      let row = try site.client.get("/v1/arp?vni=100", as: ARPList.self).entries.first {
        $0.ip == "\(address)"
      }
      XCTAssertEqual(row?.conflict, true)
    }
    // Nothing flaps: both MACs stay where they are in each FDB.
    let fdbA = try a.client.get("/v1/fdb?vni=100", as: FDBList.self).entries
    XCTAssertEqual(fdbA.first { $0.mac == "\(m1)" }?.origin, "local")
    XCTAssertEqual(fdbA.first { $0.mac == "\(m2)" }?.origin, "control")

    // Reported through the API (the document's schema), the metrics and the logs.
    let validator = SchemaValidator(document: try OpenAPIAgreementTests.loadDocument())
    let reply = try a.client.request(.GET, "/v1/conflicts?vni=100&kind=ip").body
    XCTAssertNil(
      validator.validate(try JSONValue.parse(reply), against: try validator.component("ConflictList")))
    XCTAssertEqual(try a.client.get("/v1/conflicts?kind=mac", as: ConflictList.self).conflicts, [])
    let metrics = String(decoding: try a.client.request(.GET, "/metrics").body, as: UTF8.self)
    XCTAssertTrue(metrics.contains("vxswitch_address_conflicts{kind=\"ip\"} 1"), metrics)
    XCTAssertTrue(metrics.contains("vxswitch_address_conflicts_total{kind=\"ip\"} 1"), metrics)
    for site in ["site-a", "site-b"] {
      let started = logs.withLock { $0 }.first {
        $0.site == site && $0.message.hasPrefix("bgp: address conflict started")
      }
      XCTAssertEqual(started?.metadata["ip"], "\(address)", site)
      XCTAssertEqual(started?.metadata["winner_mac"], "\(m1)", site)
      XCTAssertEqual(started?.metadata["outcome"], "arp_suppression_off", site)
      XCTAssertEqual(started?.metadata["vni"], "100", site)
    }

    // B's VM leaves: its MAC ages out (aging 300 s), its routes are withdrawn, and the
    // conflict clears by itself at both sites; A's binding is answered for at both.
    b.offline.forward(
      interface: "vm1",
      frames: [
        FrameBuilder.arpRequestFrame(
          senderMAC: MACAddress(rawValue: asker.rawValue + 10), senderIP: IPAddress("192.168.50.10")!,
          targetIP: IPAddress("192.168.50.8")!)
      ],
      now: 400)
    _ = b.offline.takeOutput("vm1") + b.offline.takeOutput("eth1")
    try await poll("the conflict clears at both sites") { try conflicts(a).isEmpty && conflicts(b).isEmpty }
    XCTAssertEqual(ask(a, now: 3), m1)
    XCTAssertEqual(ask(b, now: 401), m1, "B answers with A's binding now")
    XCTAssertFalse(a.offline.core.isARPConflicted(vni: 100, ip: address))
    let metricsAfter = String(decoding: try a.client.request(.GET, "/metrics").body, as: UTF8.self)
    XCTAssertTrue(metricsAfter.contains("vxswitch_address_conflicts{kind=\"ip\"} 0"), metricsAfter)
    XCTAssertTrue(metricsAfter.contains("vxswitch_address_conflicts_total{kind=\"ip\"} 1"), metricsAfter)
    try await poll("a cleared line in the logs of both sites") {
      logs.withLock { lines in
        ["site-a", "site-b"].allSatisfy { site in
          lines.contains { $0.site == site && $0.message.hasPrefix("bgp: address conflict cleared") }
        }
      }
    }
  }
}
