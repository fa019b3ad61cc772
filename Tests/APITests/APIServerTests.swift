import API
import Dataplane
import Foundation
import Management
import NIOHTTP1
import SystemCommand
import XCTest

/// The HTTP API end to end over its Unix socket and TCP listener: runtime changes reach
/// the FDB and flood lists and survive reloads, bad input is refused with the right status
/// and changes nothing, TCP needs the bearer token.
final class APIServerTests: XCTestCase, @unchecked Sendable {
  func testStaticMACsAddedAtRunTimeReachTheFDBAndSurviveReloadsUntilRemoved() async throws {
    let site = try APITestSite()
    let body = #"{"vni":100,"mac":"02:00:00:00:bb:01","port":"vm1"}"#
    let created = try site.client.request(.POST, "/v1/static-macs", body: Data(body.utf8))
    XCTAssertEqual(created.status, 201)
    XCTAssertEqual(try site.client.request(.POST, "/v1/static-macs", body: Data(body.utf8)).status, 200)
    let rows = try site.client.get("/v1/static-macs?vni=100", as: StaticMACList.self).staticMacs
    XCTAssertEqual(
      rows.map { [$0.mac, $0.port ?? $0.vtep ?? "", $0.origin.rawValue] },
      [["02:00:00:00:aa:01", "10.0.0.2", "config"], ["02:00:00:00:bb:01", "vm1", "api"]])
    let entry = try XCTUnwrap(
      try site.client.get("/v1/fdb?mac=02:00:00:00:bb:01", as: FDBList.self).entries.first)
    XCTAssertEqual([entry.origin, entry.port], ["static", "vm1"])

    // A reload keeps it (and reports nothing changed: the overlay is re-applied).
    let reload = try site.client.get("/v1/reload", as: ReloadResult.self, method: .POST)
    XCTAssertTrue(
      reload.unchanged,
      "\(reload) \(site.offline.core.config.staticMACs) \(site.offline.core.config.bridgeDomains.map(\.flood))"
    )
    XCTAssertEqual(try site.client.get("/v1/fdb?vni=100&origin=static", as: FDBList.self).entries.count, 2)

    // Removed: gone from the FDB; removing again is 404; a config entry cannot be removed.
    XCTAssertEqual(try site.client.request(.DELETE, "/v1/static-macs/100/02:00:00:00:bb:01").status, 204)
    XCTAssertTrue(try site.client.get("/v1/fdb?mac=02:00:00:00:bb:01", as: FDBList.self).entries.isEmpty)
    XCTAssertEqual(site.failure(.DELETE, "/v1/static-macs/100/02:00:00:00:bb:01")?.status, 404)
    let config = try XCTUnwrap(site.failure(.DELETE, "/v1/static-macs/100/02:00:00:00:aa:01"))
    XCTAssertEqual([config.status], [409])
    XCTAssertTrue(config.message.contains("configuration file"), config.message)
    await site.stop()
  }

  func testBadRequestsAreRefusedWithTheirStatusAndChangeNothing() async throws {
    let site = try APITestSite()
    let before = try site.client.request(.GET, "/v1/fdb").body
    let cases: [(String, Int, String)] = [
      (#"{"vni":100,"mac":"nonsense","port":"vm1"}"#, 400, "invalid_request"),
      (#"{"vni":100,"mac":"01:00:5e:00:00:01","port":"vm1"}"#, 400, "invalid_request"),
      (#"{"vni":100,"mac":"02:00:00:00:bb:02","port":"vm1","vtep":"10.0.0.2"}"#, 400, "invalid_request"),
      (#"{"vni":100,"mac":"02:00:00:00:bb:02"}"#, 400, "invalid_request"),
      (#"{"vni":999,"mac":"02:00:00:00:bb:02","port":"vm1"}"#, 404, "not_found"),
      (#"{"vni":100,"mac":"02:00:00:00:bb:02","port":"vm3"}"#, 409, "conflict"),
      (#"{"vni":100,"mac":"02:00:00:00:bb:02","vtep":"10.0.0.1"}"#, 400, "invalid_request"),
      (#"{"vni":100,"mac":"02:00:00:00:aa:01","vtep":"10.0.0.3"}"#, 409, "conflict"),
      (#"{"vni":"x"}"#, 400, "invalid_request"),
      ("not json", 400, "invalid_request"),
    ]
    for (body, status, code) in cases {
      let failure = try XCTUnwrap(site.failure(.POST, "/v1/static-macs", body: body), body)
      XCTAssertEqual(failure.status, status, body)
      XCTAssertEqual(failure.code, code, body)
      XCTAssertFalse(failure.message.isEmpty, body)
    }
    for path in [
      "/v1/fdb?vni=abc", "/v1/fdb?mac=zz", "/v1/fdb?origin=bgp", "/v1/fdb?limit=0", "/v1/arp?vni=-1",
    ] {
      XCTAssertEqual(site.failure(.GET, path)?.status, 400, path)
    }
    XCTAssertEqual(site.failure(.GET, "/v1/no-such-thing")?.status, 404)
    XCTAssertEqual(site.failure(.GET, "/v1/bgp")?.code, "unavailable")
    XCTAssertEqual(site.failure(.DELETE, "/v1/duplicate-macs")?.status, 503)
    let huge = String(repeating: "x", count: 200_000)
    XCTAssertEqual(site.failure(.POST, "/v1/flood", body: huge)?.status, 413)
    XCTAssertEqual(try site.client.request(.GET, "/v1/fdb").body, before, "a refused request changed the FDB")
    XCTAssertEqual(try site.client.get("/v1/static-macs", as: StaticMACList.self).staticMacs.count, 1)
    await site.stop()
  }

  func testFloodEntriesAddedAtRunTimeJoinTheFloodListWithTheirOrigin() async throws {
    let site = try APITestSite()
    let body = Data(#"{"vni":100,"vtep":"10.0.0.3"}"#.utf8)
    XCTAssertEqual(try site.client.request(.POST, "/v1/flood", body: body).status, 201)
    XCTAssertEqual(try site.client.request(.POST, "/v1/flood", body: body).status, 200)
    let flood = try site.client.get("/v1/flood?vni=100", as: FloodList.self).flood
    XCTAssertEqual(flood.map { "\($0.vtep) \($0.origin.rawValue)" }, ["10.0.0.2 config", "10.0.0.3 api"])
    let domain = try XCTUnwrap(
      try site.client.get("/v1/bridge-domains", as: BridgeDomainList.self).bridgeDomains.first {
        $0.vni == 100
      })
    XCTAssertEqual(domain.flood.sorted(), ["10.0.0.2", "10.0.0.3"])
    XCTAssertEqual(site.failure(.DELETE, "/v1/flood/100/10.0.0.2")?.status, 409)
    XCTAssertEqual(try site.client.request(.DELETE, "/v1/flood/100/10.0.0.3").status, 204)
    XCTAssertEqual(site.failure(.DELETE, "/v1/flood/100/10.0.0.3")?.status, 404)
    let after = try site.client.get("/v1/bridge-domains", as: BridgeDomainList.self).bridgeDomains
    XCTAssertEqual(after.first { $0.vni == 100 }?.flood, ["10.0.0.2"])
    await site.stop()
  }

  func testReloadAppliesTheFileOrReportsEveryErrorWithItsLineAndKeepsRunning() async throws {
    let site = try APITestSite()
    try site.client.request(.POST, "/v1/flood", body: Data(#"{"vni":200,"vtep":"10.0.0.4"}"#.utf8))
    // A broken file: 422 with every FILE:LINE, nothing applied.
    try site.rewriteConfig(
      APITestSite.baseConfig + "\n[[bridge_domain]]\nvni = 300\nports = [\"vm9\"]\nbogus = 1\n")
    let broken = try XCTUnwrap(site.failure(.POST, "/v1/reload"))
    XCTAssertEqual(broken.status, 422)
    XCTAssertEqual(broken.code, "invalid_configuration")
    XCTAssertTrue(
      broken.details.contains { $0.hasPrefix(site.configPath + ":") && $0.contains("bogus") }, "\(broken)")
    // New interfaces need a restart: 409, nothing applied.
    try site.rewriteConfig(APITestSite.baseConfig + "\n[[bridge_domain]]\nvni = 300\nports = [\"vm9\"]\n")
    XCTAssertEqual(site.failure(.POST, "/v1/reload")?.code, "restart_required")
    XCTAssertEqual(
      try site.client.get("/v1/bridge-domains", as: BridgeDomainList.self).bridgeDomains.map(\.vni),
      [100, 200])
    // A good change: VNI 200 removed, VNI 300 added on vm3; the API's flood entry of VNI
    // 200 goes with its VNI.
    try site.rewriteConfig(
      APITestSite.baseConfig.replacingOccurrences(
        of: "vni = 200\nports = [\"vm3\"]", with: "vni = 300\nports = [\"vm3\"]"))
    let result = try site.client.get("/v1/reload", as: ReloadResult.self, method: .POST)
    XCTAssertEqual(result.bridgeDomainsAdded, [300])
    XCTAssertEqual(result.bridgeDomainsRemoved, [200])
    XCTAssertFalse(result.unchanged)
    XCTAssertEqual(
      try site.client.get("/v1/bridge-domains", as: BridgeDomainList.self).bridgeDomains.map(\.vni),
      [100, 300])
    XCTAssertTrue(try site.client.get("/v1/flood?vni=200", as: FloodList.self).flood.isEmpty)
    await site.stop()
  }

  func testTCPListenerHoldsEachClientToItsRateBeforeCheckingTheToken() async throws {
    // A clock that stands still: the burst (2 x 1) is all a client gets.
    let limiter = RequestRateLimiter(rate: 1, burst: 2, clock: { 100 })
    let site = try APITestSite(tcp: true, tcpRateLimiter: limiter)
    let client = site.tcpClient(token: site.token)
    XCTAssertEqual(try client.get("/v1/site", as: SiteSummary.self).name, "api-test")
    XCTAssertEqual(
      site.failure(.GET, "/v1/site", client: site.tcpClient(token: "wrong-token-0123456789"))?.status, 401,
      "a wrong token takes a token from the bucket too")
    let refused = site.failure(.GET, "/v1/site", client: client)
    XCTAssertEqual(refused?.status, 429)
    XCTAssertEqual(refused?.code, "rate_limited")
    // Token guessing is limited before the token is looked at.
    XCTAssertEqual(
      site.failure(.GET, "/v1/site", client: site.tcpClient(token: "wrong-token-0123456789"))?.status, 429)
    let headers = try SystemCommand.run([
      "curl", "-s", "-D", "-", "-o", "/dev/null", "-H", "Authorization: Bearer \(site.token)",
      "http://127.0.0.1:\(site.tcpPort!)/v1/site",
    ]).outputText.lowercased()
    XCTAssertTrue(headers.contains(" 429"), headers)
    XCTAssertTrue(headers.contains("retry-after: 1"), headers)
    // The control socket is not limited (file permissions guard it).
    for _ in 0..<5 { XCTAssertEqual(try site.client.get("/v1/site", as: SiteSummary.self).name, "api-test") }
    let metrics = String(decoding: try site.client.request(.GET, "/metrics").body, as: UTF8.self)
    XCTAssertTrue(
      metrics.contains("vxswitch_control_requests_rate_limited_total{listener=\"api\"} 3"), metrics)
    XCTAssertEqual(limiter.refused, 3)
    await site.stop()
  }

  func testTCPListenerNeedsTheBearerToken() async throws {
    let site = try APITestSite(tcp: true)
    XCTAssertEqual(
      site.failure(.GET, "/v1/site", client: site.tcpClient(token: "wrong-token-0123456789"))?.status, 401)
    XCTAssertEqual(site.failure(.GET, "/v1/site", client: site.tcpClient(token: ""))?.status, 401)
    let summary = try site.tcpClient(token: site.token).get("/v1/site", as: SiteSummary.self)
    XCTAssertEqual(summary.name, "api-test")
    // The Unix socket needs none; its file is mode 0660.
    XCTAssertEqual(try site.client.get("/v1/site", as: SiteSummary.self).vtep, "10.0.0.1")
    let mode = try XCTUnwrap(
      FileManager.default.attributesOfItem(atPath: site.socketPath)[.posixPermissions] as? Int)
    XCTAssertEqual(mode & 0o777, 0o660)
    await site.stop()
  }

  func testTokenFileMustBeReadableAndNotWorldReadable() throws {
    let path = NSTemporaryDirectory() + "vxswitch-token-\(UUID().uuidString.prefix(8))"
    defer { unlink(path) }
    try "0123456789abcdef0123\n".write(toFile: path, atomically: true, encoding: .utf8)
    chmod(path, 0o644)
    XCTAssertThrowsError(try APITokenFile.read(path)) {
      XCTAssertTrue("\($0)".contains("accessible by others"))
    }
    chmod(path, 0o600)
    XCTAssertEqual(try APITokenFile.read(path), Array("0123456789abcdef0123".utf8))
    try "short".write(toFile: path, atomically: true, encoding: .utf8)
    chmod(path, 0o600)
    XCTAssertThrowsError(try APITokenFile.read(path))
    XCTAssertThrowsError(try APITokenFile.read(path + ".missing"))
  }

  func testASecondServerOnALiveSocketIsRefused() async throws {
    let site = try APITestSite()
    let router = APIRouter(service: site.service, metrics: MetricsExporter(service: site.service))
    XCTAssertThrowsError(
      try APIServer.unixSocket(path: site.socketPath, router: router, logger: .init(label: "second"))
    ) { XCTAssertTrue("\($0)".contains("in use"), "\($0)") }
    await site.stop()
    XCTAssertFalse(FileManager.default.fileExists(atPath: site.socketPath), "socket file left behind")
  }

  func testFDBListingsArePagedWithACursor() async throws {
    var config = APITestSite.baseConfig
    for index in 0..<40 {
      config +=
        "\n[[static_mac]]\nvni = 200\nmac = \"02:00:00:01:00:\(String(format: "%02x", index))\"\nport = \"vm3\"\n"
    }
    let site = try APITestSite(config: config)
    var seen: [String] = []
    var cursor: String? = "0"
    var pages = 0
    while let next = cursor {
      let page = try site.client.get("/v1/fdb?vni=200&limit=7&cursor=\(next)", as: FDBList.self)
      XCTAssertLessThanOrEqual(page.entries.count, 9)
      seen += page.entries.map(\.mac)
      cursor = page.nextCursor
      pages += 1
    }
    XCTAssertGreaterThan(pages, 3)
    XCTAssertEqual(seen.count, 40)
    XCTAssertEqual(Set(seen).count, 40)
    await site.stop()
  }
}

extension APIClient {
  /// A request with another method decoded as `T`.
  func get<T: Decodable>(_ path: String, as type: T.Type, method: HTTPMethod) throws -> T {
    try APICoding.decoder.decode(type, from: request(method, path).body)
  }
}
