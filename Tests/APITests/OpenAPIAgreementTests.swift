import AsyncHTTPClient
import ControlShim
import Dataplane
import Foundation
import NIOCore
import NIOHTTP1
import XCTest

@testable import API
@testable import Management

/// `docs/openapi.json` against the server: the document lists exactly the routes of
/// `APIRoute`, and every answer the server gives (each route, each status it can produce)
/// validates against the schema the document gives for that route and status. Schemas
/// forbid undocumented keys, so a key added to a row type without the document fails here.
final class OpenAPIAgreementTests: XCTestCase, @unchecked Sendable {
  static let documentURL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("docs/openapi.json")

  /// The test site's configuration with ARP suppression in VNI 100 (so that the ARP table
  /// fills from traffic).
  static let config = APITestSite.baseConfig.replacingOccurrences(
    of: "flood = [\"10.0.0.2\"]", with: "flood = [\"10.0.0.2\"]\narp_suppression = true")

  static func loadDocument() throws -> [String: Any] {
    let data = try Data(contentsOf: documentURL)
    return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any], "not a JSON object")
  }

  // MARK: Routes

  func testDocumentListsExactlyTheRoutesOfAPIRoute() throws {
    let document = try Self.loadDocument()
    XCTAssertEqual(document["openapi"] as? String, "3.0.3")
    let paths = try XCTUnwrap(document["paths"] as? [String: Any])
    let methods: Set = ["get", "put", "post", "delete", "patch", "head", "options", "trace"]
    var documented = Set<String>()
    for (path, item) in paths {
      for key in (item as? [String: Any] ?? [:]).keys where methods.contains(key) {
        documented.insert("\(key.uppercased()) \(path)")
      }
    }
    let served = Set(APIRoute.allCases.map { "\($0.method.rawValue) \($0.path)" })
    XCTAssertEqual(served.count, APIRoute.allCases.count, "two routes share a method and path")
    for missing in served.subtracting(documented).sorted() {
      XCTFail("route \(missing) is served but not in docs/openapi.json")
    }
    for extra in documented.subtracting(served).sorted() {
      XCTFail("docs/openapi.json documents \(extra), which APIRoute does not serve")
    }
    // Every operation has an operationId (unique), a summary and a 401 (TCP listeners).
    var operationIDs = Set<String>()
    for route in APIRoute.allCases {
      let operation = try XCTUnwrap(Self.operation(document, route), "\(route)")
      let id = try XCTUnwrap(operation["operationId"] as? String, "\(route): no operationId")
      XCTAssertTrue(operationIDs.insert(id).inserted, "operationId \(id) twice")
      XCTAssertNotNil(operation["summary"] as? String, "\(route): no summary")
      XCTAssertNotNil((operation["responses"] as? [String: Any])?["401"], "\(route): no 401")
      // Path parameters are declared, and only those of the path.
      let declared = Set(
        (operation["parameters"] as? [[String: Any]] ?? []).filter { $0["in"] as? String == "path" }
          .compactMap { $0["name"] as? String })
      let inPath = Set(
        route.path.split(separator: "/").filter { $0.hasPrefix("{") }.map {
          String($0.dropFirst().dropLast())
        })
      XCTAssertEqual(declared, inPath, "\(route): path parameters")
    }
    let schemes = (document["components"] as? [String: Any])?["securitySchemes"] as? [String: Any]
    let bearer = schemes?["bearerAuth"] as? [String: Any]
    XCTAssertEqual(bearer?["type"] as? String, "http")
    XCTAssertEqual(bearer?["scheme"] as? String, "bearer")
  }

  static func operation(_ document: [String: Any], _ route: APIRoute) -> [String: Any]? {
    ((document["paths"] as? [String: Any])?[route.path] as? [String: Any])?[
      route.method.rawValue.lowercased()]
      as? [String: Any]
  }

  // MARK: The validator

  func testValidatorRejectsMissingExtraWronglyTypedAndOutOfEnumValues() throws {
    let validator = SchemaValidator(document: try Self.loadDocument())
    let list = try validator.component("FDBList")
    let valid = """
      {"entries": [{"mac": "02:aa:00:00:00:01", "vni": 100, "port": "vm1", "action": "forward",
      "origin": "local", "age_seconds": 3}], "next_cursor": "17"}
      """
    XCTAssertNil(validator.validate(try JSONValue.parse(valid), against: list))

    func mismatch(_ text: String, _ schema: [String: Any]) throws -> SchemaValidator.Mismatch? {
      validator.validate(try JSONValue.parse(text), against: schema)
    }
    let missing = try mismatch(
      #"{"entries": [{"mac": "02:aa:00:00:00:01", "vni": 100, "action": "forward"}]}"#, list)
    XCTAssertEqual(missing?.path, "$.entries[0]")
    XCTAssertTrue(missing?.message.contains("origin") == true, "\(String(describing: missing))")

    let extra = try mismatch(
      #"{"entries": [{"mac": "m", "vni": 1, "action": "drop", "origin": "static", "colour": "red"}]}"#, list)
    XCTAssertEqual(extra?.path, "$.entries[0].colour")

    let wrongType = try mismatch(
      #"{"entries": [{"mac": "m", "vni": "100", "action": "drop", "origin": "static"}]}"#, list)
    XCTAssertEqual(wrongType?.path, "$.entries[0].vni")
    let fraction = try mismatch(
      #"{"entries": [{"mac": "m", "vni": 1.5, "action": "drop", "origin": "static"}]}"#, list)
    XCTAssertEqual(fraction?.path, "$.entries[0].vni", "a fraction is no integer")
    let boolean = try mismatch(
      #"{"entries": [{"mac": "m", "vni": true, "action": "drop", "origin": "static"}]}"#, list)
    XCTAssertEqual(boolean?.path, "$.entries[0].vni", "a boolean is no integer")
    let notArray = try mismatch(#"{"entries": {}}"#, list)
    XCTAssertEqual(notArray?.path, "$.entries")

    let badEnum = try mismatch(
      #"{"entries": [{"mac": "m", "vni": 1, "action": "drop", "origin": "learned"}]}"#, list)
    XCTAssertEqual(badEnum?.path, "$.entries[0].origin")
    XCTAssertTrue(badEnum?.message.contains("learned") == true)

    let tooLarge = try mismatch(
      #"{"entries": [{"mac": "m", "vni": 16777216, "action": "drop", "origin": "static"}]}"#, list)
    XCTAssertEqual(tooLarge?.path, "$.entries[0].vni")

    let null = try mismatch(#"{"entries": [], "next_cursor": null}"#, list)
    XCTAssertEqual(null?.path, "$.next_cursor", "omitted, never null")

    // A map (additionalProperties with a schema).
    let statistics = try validator.component("Statistics")
    let counters = """
      {"ports": [], "encapsulated": 0, "decapsulated": 0, "flood_copies": 0, "learned": 0,
      "moves": 0, "aged": 0, "fdb_entries": 0, "drops": DROPS}
      """
    XCTAssertNil(
      try mismatch(counters.replacingOccurrences(of: "DROPS", with: #"{"unknown_vni": 2}"#), statistics))
    let badDrop = try mismatch(
      counters.replacingOccurrences(of: "DROPS", with: #"{"unknown_vni": "2"}"#), statistics)
    XCTAssertEqual(badDrop?.path, "$.drops.unknown_vni")

    // oneOf: exactly one of port and vtep.
    let request = try validator.component("StaticMACRequest")
    XCTAssertNil(try mismatch(#"{"vni": 1, "mac": "m", "port": "vm1"}"#, request))
    XCTAssertNotNil(try mismatch(#"{"vni": 1, "mac": "m", "port": "vm1", "vtep": "10.0.0.2"}"#, request))
    XCTAssertNotNil(try mismatch(#"{"vni": 1, "mac": "m"}"#, request))

    // A keyword the validator does not know is reported, not silently ignored.
    XCTAssertNotNil(validator.validate(.string("x"), against: ["type": "string", "pattern": "^y$"]))
  }

  // MARK: Every route, every status

  func testEveryAnswerMatchesTheDocument() async throws {
    let site = try APITestSite(config: Self.config, tcp: true)
    do {
      try await exerciseEveryRoute(site)
    } catch {
      XCTFail("\(error)")
    }
    await site.stop()
  }

  private func exerciseEveryRoute(_ site: APITestSite) async throws {
    let api = try DocumentedAPI(site: site)
    try sendTraffic(site)

    // Reads, unfiltered and filtered.
    let site200 = try await api.call(.site, expect: 200)
    XCTAssertEqual(site200?["bridge_domains"], .integer(2))
    let fdb = try await api.call(.fdb, expect: 200)
    let origins = Set(fdb?["entries"]?.array?.compactMap { $0["origin"]?.string } ?? [])
    XCTAssertEqual(origins, ["static", "local", "decap", "control"], "traffic filled every origin")
    let page = try await api.call(.fdb, "/v1/fdb?limit=1", expect: 200)
    let cursor = try XCTUnwrap(page?["next_cursor"]?.string, "a first page of one has a next page")
    try await api.call(.fdb, "/v1/fdb?limit=1&cursor=\(cursor)", expect: 200)
    try await api.call(.fdb, "/v1/fdb?vni=100&origin=local", expect: 200)
    let one = try await api.call(.fdb, "/v1/fdb?mac=02:aa:00:00:00:01", expect: 200)
    XCTAssertEqual(one?["entries"]?.array?.count, 1)
    try await api.call(.fdb, "/v1/fdb?vni=4000", expect: 200)
    for bad in ["vni=x", "vni=16777216", "mac=nope", "origin=learned", "limit=0", "limit=10001", "cursor=-1"]
    {
      try await api.call(.fdb, "/v1/fdb?\(bad)", expect: 400)
    }
    let arp = try await api.call(.arp, expect: 200)
    XCTAssertEqual(Set(arp?["entries"]?.array?.compactMap { $0["origin"]?.string } ?? []), ["local", "evpn"])
    try await api.call(.arp, "/v1/arp?vni=200", expect: 200)
    try await api.call(.arp, "/v1/arp?vni=-1", expect: 400)
    try await api.call(.bridgeDomains, expect: 200)
    try await api.call(.ports, expect: 200)
    let statistics = try await api.call(.statistics, expect: 200)
    XCTAssertNotNil(statistics?["drops"]?["unknown_vni"], "a drop was counted")

    // BGP is not configured here.
    try await api.call(.bgp, expect: 503)
    try await api.call(.duplicateMACs, expect: 503)
    try await api.call(.clearDuplicateMACs, expect: 503)
    try await api.call(.clearDuplicateMACs, "/v1/duplicate-macs?vni=100&mac=02:aa:00:00:00:01", expect: 503)
    try await api.call(.clearDuplicateMACs, "/v1/duplicate-macs?vni=x", expect: 400)
    try await api.call(.clearDuplicateMACs, "/v1/duplicate-macs?mac=x", expect: 400)
    // No speaker, no conflicts (AddressConflictSiteTests validates a listing with one).
    let conflicts = try await api.call(.conflicts, expect: 200)
    XCTAssertEqual(conflicts?["conflicts"], .array([]))
    try await api.call(.conflicts, "/v1/conflicts?vni=100&kind=ip", expect: 200)
    try await api.call(.conflicts, "/v1/conflicts?vni=x", expect: 400)
    try await api.call(.conflicts, "/v1/conflicts?kind=duplicate", expect: 400)

    // Static MACs.
    try await api.call(.staticMACs, expect: 200)
    try await api.call(.staticMACs, "/v1/static-macs?vni=100", expect: 200)
    try await api.call(.staticMACs, "/v1/static-macs?vni=abc", expect: 400)
    let portMAC = #"{"vni": 100, "mac": "02:00:00:00:bb:01", "port": "vm1"}"#
    let added = try await api.call(.addStaticMAC, body: portMAC, expect: 201)
    XCTAssertEqual(added?["origin"], .string("api"))
    try await api.call(.addStaticMAC, body: portMAC, expect: 200)
    try await api.call(
      .addStaticMAC, body: #"{"vni": 200, "mac": "02:00:00:00:bb:02", "vtep": "10.0.0.3"}"#, expect: 201)
    for bad in [
      #"{"vni": 100, "mac": "02:00:00:00:bb"}"#,  // neither port nor vtep (and a bad MAC)
      #"{"vni": 100, "mac": "not-a-mac", "port": "vm1"}"#,
      #"{"vni": 100, "mac": "01:00:5e:00:00:01", "port": "vm1"}"#,  // multicast
      #"{"vni": 100, "mac": "02:00:00:00:bb:03", "port": "vm1", "vtep": "10.0.0.3"}"#,
      #"{"vni": 100, "mac": "02:00:00:00:bb:03"}"#,
      #"{"vni": 100, "mac": "02:00:00:00:bb:03", "vtep": "10.0.0.1"}"#,  // our own VTEP
      #"{"vni": 100, "mac": "02:00:00:00:bb:03", "vtep": "fd00::2"}"#,  // other address family
      #"{"vni": 100, "mac": "02:00:00:00:bb:03", "port": "trunk0.5000"}"#,
      #"{"vni": "100", "mac": "02:00:00:00:bb:03", "port": "vm1"}"#,
      #"{"mac": "02:00:00:00:bb:03", "port": "vm1"}"#,
      #"{"vni": 100, "mac""#, "",
    ] {
      try await api.call(.addStaticMAC, body: bad, expect: 400)
    }
    try await api.call(
      .addStaticMAC, body: #"{"vni": 300, "mac": "02:00:00:00:bb:03", "port": "vm1"}"#, expect: 404)
    try await api.call(
      .addStaticMAC, body: #"{"vni": 100, "mac": "02:00:00:00:bb:03", "port": "vm3"}"#, expect: 409)
    try await api.call(
      .addStaticMAC, body: #"{"vni": 100, "mac": "02:00:00:00:aa:01", "vtep": "10.0.0.2"}"#, expect: 409)
    try await api.call(
      .addStaticMAC, body: #"{"vni": 100, "mac": "02:00:00:00:bb:01", "port": "vm2"}"#, expect: 409)
    let huge =
      #"{"vni": 100, "mac": "02:00:00:00:bb:04", "port": "vm1", "pad": ""#
      + String(repeating: "x", count: 70_000)
      + #""}"#
    try await api.call(.addStaticMAC, body: huge, expect: 413)
    try await api.call(.removeStaticMAC, "/v1/static-macs/100/02:00:00:00:aa:01", expect: 409)
    try await api.call(.removeStaticMAC, "/v1/static-macs/100/02:00:00:00:cc:01", expect: 404)
    try await api.call(.removeStaticMAC, "/v1/static-macs/300/02:00:00:00:bb:01", expect: 404)
    try await api.call(.removeStaticMAC, "/v1/static-macs/100/nope", expect: 400)
    try await api.call(.removeStaticMAC, "/v1/static-macs/x/02:00:00:00:bb:01", expect: 400)
    try await api.call(.removeStaticMAC, "/v1/static-macs/16777216/02:00:00:00:bb:01", expect: 400)
    try await api.call(.removeStaticMAC, "/v1/static-macs/200/02:00:00:00:bb:02", expect: 204)
    let macs = try await api.call(.staticMACs, expect: 200)
    XCTAssertEqual(
      Set(macs?["static_macs"]?.array?.compactMap { $0["origin"]?.string } ?? []), ["config", "api"])

    // Flood lists.
    let addFlood = #"{"vni": 200, "vtep": "10.0.0.3"}"#
    let flood = try await api.call(.addFloodEntry, body: addFlood, expect: 201)
    XCTAssertEqual(flood?["origin"], .string("api"))
    try await api.call(.addFloodEntry, body: addFlood, expect: 200)
    let configured = try await api.call(
      .addFloodEntry, body: #"{"vni": 100, "vtep": "10.0.0.2"}"#, expect: 200)
    XCTAssertEqual(configured?["origin"], .string("config"), "a member of the file's flood list says so")
    try await api.call(.addFloodEntry, body: #"{"vni": 100, "vtep": "10.0.0.4"}"#, expect: 201)
    for bad in [
      #"{"vni": 100, "vtep": "nope"}"#, #"{"vni": 100, "vtep": "10.0.0.1"}"#,
      #"{"vni": 100, "vtep": "fd00::2"}"#,
      #"{"vni": 100}"#, "[]",
    ] {
      try await api.call(.addFloodEntry, body: bad, expect: 400)
    }
    try await api.call(.addFloodEntry, body: #"{"vni": 300, "vtep": "10.0.0.3"}"#, expect: 404)
    try await api.call(
      .addFloodEntry, body: #"{"vni": 100, "vtep": ""# + String(repeating: "1", count: 70_000) + #""}"#,
      expect: 413)
    try await api.call(.removeFloodEntry, "/v1/flood/100/10.0.0.2", expect: 409)
    try await api.call(.removeFloodEntry, "/v1/flood/100/10.0.0.9", expect: 404)
    try await api.call(.removeFloodEntry, "/v1/flood/100/nope", expect: 400)
    try await api.call(.removeFloodEntry, "/v1/flood/x/10.0.0.4", expect: 400)
    try await api.call(.removeFloodEntry, "/v1/flood/100/10.0.0.4", expect: 204)
    let members = try await api.call(.flood, expect: 200)
    XCTAssertEqual(
      Set(members?["flood"]?.array?.compactMap { $0["origin"]?.string } ?? []), ["config", "api", "evpn"])
    try await api.call(.flood, "/v1/flood?vni=200", expect: 200)
    try await api.call(.flood, "/v1/flood?vni=", expect: 400)

    // Neighbours: configured (10.0.0.2) and unresolved (10.0.0.3, 10.0.0.5).
    let neighbors = try await api.call(.neighbors, expect: 200)
    XCTAssertEqual(
      Set(neighbors?["neighbors"]?.array?.compactMap { $0["resolution"]?.string } ?? []),
      ["configured", "unresolved"])

    // Reloads: a broken file, one that needs a restart, then good ones.
    try site.rewriteConfig(Self.config + "\n[[bridge_domain]]\nvni = 100\nports = [\"vm2\"]\nbogus = 1\n")
    let broken = try await api.call(.reload, expect: 422)
    XCTAssertFalse(broken?["error"]?["details"]?.array?.isEmpty ?? true, "422 lists the errors")
    try site.rewriteConfig(
      Self.config.replacingOccurrences(of: "ports = [\"vm3\"]", with: "ports = [\"vm3\", \"vm4\"]"))
    let restart = try await api.call(.reload, expect: 409)
    XCTAssertEqual(restart?["error"]?["code"], .string("restart_required"))
    try site.rewriteConfig(
      Self.config.replacingOccurrences(of: "ports = [\"vm3\"]", with: "ports = [\"vm3\"]\nlearning = false"))
    let reloaded = try await api.call(.reload, expect: 200)
    XCTAssertEqual(reloaded?["bridge_domains_changed"], .array([.integer(200)]))
    let again = try await api.call(.reload, expect: 200)
    XCTAssertEqual(again?["unchanged"], .bool(true))
    try await api.call(.bridgeDomains, expect: 200)

    // TCP: a wrong or missing token is 401 on every route; the right one is served.
    for route in APIRoute.allCases {
      try await api.call(
        route, api.sampleURI(route), body: route.method == .post ? "{}" : nil,
        transport: .tcp(token: "wrong-token-0123456789"), expect: 401)
    }
    try await api.call(.site, transport: .tcp(token: nil), expect: 401)
    try await api.call(.site, transport: .tcp(token: site.token), expect: 200)
    try await api.call(.fdb, "/v1/fdb?vni=100", transport: .tcp(token: site.token), expect: 200)
    try await api.call(.metrics, transport: .tcp(token: site.token), expect: 200)

    try await exerciseNetworksAndExtensions(api)

    // Every status the document gives was seen, except those this site cannot produce.
    let unreachable: Set = [
      "GET /v1/bgp 200", "GET /v1/duplicate-macs 200", "DELETE /v1/duplicate-macs 200",  // no BGP here
      "POST /v1/reload 503",  // a site without a configuration file (built in memory)
    ]
    for status in api.documentedStatuses().subtracting(api.exercised).subtracting(unreachable).sorted() {
      XCTFail("documented but never exercised: \(status)")
    }
  }

  /// Networks on this site; extensions (503 here: no [peering]); then two sites over a
  /// loopback site channel for every extension status.
  private func exerciseNetworksAndExtensions(_ api: DocumentedAPI) async throws {
    try await api.call(.networks, expect: 200)
    try await api.call(.createNetwork, body: #"{"name":"web"}"#, expect: 201)
    try await api.call(.createNetwork, body: #"{"name":"web"}"#, expect: 409)
    try await api.call(.createNetwork, body: #"{"name":"bad name"}"#, expect: 400)
    try await api.call(.createNetwork, body: String(repeating: "x", count: 70_000), expect: 413)
    try await api.call(.deleteNetwork, "/v1/networks/web", expect: 204)
    try await api.call(.deleteNetwork, "/v1/networks/web", expect: 404)
    let extensionBody = #"{"network":"net1","sites":["site-b"]}"#
    for route in [
      APIRoute.extensions, .createExtension, .extensionStatus, .deleteExtension, .addExtensionMembers,
      .removeExtensionMember,
    ] {
      let body =
        route == .createExtension ? extensionBody : route == .addExtensionMembers ? #"{"sites":["x"]}"# : nil
      try await api.call(route, api.sampleURI(route), body: body, expect: 503)
    }

    let peers = LoopbackPeerNetwork()
    let a = try APITestSite(
      config: ExtensionTests.config("site-a", vtep: "10.0.0.1", networks: [("net1", 100, "vm1")]),
      peers: peers)
    let b = try APITestSite(
      config: ExtensionTests.config("site-b", vtep: "10.0.0.2", networks: [("net1", 200, "vm1")]),
      peers: peers)
    let home = api.site
    api.site = a
    defer { api.site = home }
    let created = try await api.call(.createExtension, body: extensionBody, expect: 202)
    let id = try XCTUnwrap(created?["id"]?.string)
    _ = await a.extensions!.settle()
    try await api.call(.extensions, expect: 200)
    try await api.call(.extensionStatus, "/v1/extensions/\(id)", expect: 200)
    try await api.call(.extensionStatus, "/v1/extensions/site-a.none", expect: 404)
    try await api.call(.createExtension, body: #"{"network":"net1","sites":[]}"#, expect: 400)
    try await api.call(.createExtension, body: #"{"network":"nope","sites":["site-b"]}"#, expect: 404)
    try await api.call(.createExtension, body: extensionBody, expect: 409)
    try await api.call(.createExtension, body: String(repeating: "x", count: 70_000), expect: 413)
    let members = "/v1/extensions/\(id)/members"
    try await api.call(.addExtensionMembers, members, body: #"{"sites":["site-a"]}"#, expect: 400)
    try await api.call(
      .addExtensionMembers, "/v1/extensions/site-a.none/members", body: #"{"sites":["site-c"]}"#, expect: 404)
    try await api.call(
      .addExtensionMembers, members, body: String(repeating: "x", count: 70_000), expect: 413)
    try await api.call(.addExtensionMembers, members, body: #"{"sites":["site-c"]}"#, expect: 202)
    try await api.call(.removeExtensionMember, members + "/site-a", expect: 400)
    try await api.call(.removeExtensionMember, members + "/site-x", expect: 404)
    try await api.call(.removeExtensionMember, members + "/site-c", expect: 202)
    try await api.call(.deleteNetwork, "/v1/networks/net1", expect: 409)
    api.site = b
    try await api.call(.extensionStatus, "/v1/extensions/\(id)", expect: 200)
    try await api.call(.deleteExtension, "/v1/extensions/\(id)", expect: 403)
    try await api.call(.addExtensionMembers, members, body: #"{"sites":["site-c"]}"#, expect: 403)
    try await api.call(.removeExtensionMember, members + "/site-a", expect: 403)
    api.site = a
    try await api.call(.deleteExtension, "/v1/extensions/site-a.none", expect: 404)
    try await api.call(.deleteExtension, "/v1/extensions/\(id)", expect: 202)
    _ = await a.extensions!.settle()
    await a.stop()
    await b.stop()
  }

  /// Traffic that fills every table: local, decap, static and control FDB entries; local
  /// and EVPN ARP bindings; a drop; an EVPN flood member.
  private func sendTraffic(_ site: APITestSite) throws {
    let hostA = MACAddress("02:aa:00:00:00:01")!
    let hostB = MACAddress("02:aa:00:00:00:02")!
    let hostR = MACAddress("02:cc:00:00:00:09")!
    let ipA = IPAddress("192.168.1.1")!
    let ipB = IPAddress("192.168.1.2")!
    func ping(_ source: MACAddress, _ destination: MACAddress) -> [UInt8] {
      FrameBuilder.icmpEchoFrame(
        link: .init(destination: destination, source: source), source: ipA, destination: ipB, kind: .request,
        identifier: 7, sequenceNumber: 1, payload: Array(repeating: 0x5A, count: 18))
    }
    func vxlan(_ inner: [UInt8], vni: UInt32) -> [UInt8] {
      FrameBuilder.vxlanFrame(
        inner: inner, vni: vni,
        underlay: .init(
          link: .init(
            destination: MACAddress("02:00:00:00:00:01")!, source: MACAddress("02:00:00:00:00:02")!),
          source: IPAddress("10.0.0.2")!, destination: IPAddress("10.0.0.1")!, sourcePort: 50000,
          ipv4: .init(dontFragment: true)))
    }
    let offline = site.offline
    offline.forward(
      interface: "vm1",
      frames: [FrameBuilder.arpRequestFrame(senderMAC: hostA, senderIP: ipA, targetIP: ipB)], now: 5)
    offline.forward(interface: "vm2", frames: [ping(hostB, hostA)], now: 6)
    offline.forward(interface: "eth1", frames: [vxlan(ping(hostR, hostA), vni: 100)], now: 7)
    offline.forward(interface: "eth1", frames: [vxlan(ping(hostR, hostA), vni: 999)], now: 7)
    let remote = MACAddress("02:dd:00:00:00:01")!
    XCTAssertTrue(offline.core.installRemoteMAC(vni: 200, mac: remote, vtep: IPAddress("10.0.0.2")!))
    XCTAssertTrue(offline.core.installARP(vni: 100, ip: IPAddress("192.168.1.30")!, mac: remote))
    offline.core.addFloodMember(vni: 200, vtep: IPAddress("10.0.0.5")!)
  }

  // MARK: BGP shapes (no speaker here)

  func testBGPStatusEncodingMatchesTheSchemas() throws {
    let validator = SchemaValidator(document: try Self.loadDocument())
    let json = """
      {"asn": 65001, "router_id": "10.0.0.1", "listening_port": 179, "local_mac_routes": 2,
       "remote_mac_routes": 3, "frozen_macs": 2,
       "peers": [
        {"name": "spine1", "address": "10.0.0.9", "port": 179, "remote_as": 65000, "remote_router_id": "10.0.0.9",
         "is_internal": false, "state": "Established", "uptime": 12.5, "negotiated_hold_time": 90,
         "negotiated_families": ["l2vpn-evpn"], "four_octet_as": true, "route_refresh": true,
         "peer_graceful_restart": true, "peer_restart_time": 120, "peer_restarted": true,
         "route_target_constraint": false, "routes_received": 5, "routes_accepted": 4,
         "routes_ignored": 1, "routes_stale": 0, "routes_advertised": 2, "established_transitions": 1, "md5": false},
        {"name": "spine2", "address": "fd00::9", "port": 179, "remote_as": 65001, "is_internal": true,
         "state": "Active", "negotiated_families": [], "four_octet_as": false, "route_refresh": false,
         "peer_graceful_restart": false, "route_target_constraint": false, "routes_received": 0,
         "routes_accepted": 3, "routes_ignored": 0, "routes_stale": 3, "routes_llgr_stale": 3,
         "stale_phase": "long_lived", "peer_long_lived_stale_time": 86400, "routes_advertised": 0,
         "established_transitions": 0, "last_error": "connection refused", "md5": true}],
       "duplicate_macs": [
        {"vni": 100, "mac": "02:aa:00:00:00:01", "moves": 5, "frozen_for": 3.25, "release_in": 176.75},
        {"vni": 200, "mac": "02:aa:00:00:00:02", "moves": 6, "frozen_for": 10}],
       "graceful_restart": {"restarted": true, "restart_state": true, "forwarding_state_preserved": true,
        "local_state_restored": true, "selection_deferral": true, "restart_time": 120}}
      """
    // The BGP types spell their keys out (CodingKeys): a plain decoder reads them.
    let status = try JSONDecoder().decode(SpeakerStatus.self, from: Data(json.utf8))
    XCTAssertEqual(status.peers.count, 2)
    XCTAssertEqual(status.duplicateMACs.last?.releaseIn, nil)
    let encoded = try JSONValue.parse(APICoding.encoder.encode(status))
    XCTAssertNil(validator.validate(encoded, against: try validator.component("SpeakerStatus")))
    XCTAssertEqual(encoded, try JSONValue.parse(json), "encoding keeps every key")

    var passive = status
    passive.listeningPort = nil
    passive.peers[0].state = .openConfirm
    XCTAssertNil(
      validator.validate(
        try JSONValue.parse(APICoding.encoder.encode(passive)),
        against: try validator.component("SpeakerStatus")))

    let list = DuplicateMACList(duplicateMacs: status.duplicateMACs)
    XCTAssertNil(
      validator.validate(
        try JSONValue.parse(APICoding.encoder.encode(list)),
        against: try validator.component("DuplicateMACList")))
    let released = ReleasedMACList(cleared: [ReleasedMAC(vni: 100, mac: "02:aa:00:00:00:01")])
    XCTAssertNil(
      validator.validate(
        try JSONValue.parse(APICoding.encoder.encode(released)),
        against: try validator.component("ReleasedMACList")))

    // A state outside RFC 4271's is refused by the schema.
    var bad = try JSONValue.parse(APICoding.encoder.encode(status))
    if case .object(var top) = bad, case .array(var peers) = top["peers"], case .object(var peer) = peers[0] {
      peer["state"] = .string("Up")
      peers[0] = .object(peer)
      top["peers"] = .array(peers)
      bad = .object(top)
    }
    XCTAssertEqual(
      validator.validate(bad, against: try validator.component("SpeakerStatus"))?.path, "$.peers[0].state")
  }

  /// Row types whose every optional key the site above cannot show (live ports), encoded
  /// as the server would.
  func testLivePortRowsMatchTheSchema() throws {
    let validator = SchemaValidator(document: try Self.loadDocument())
    let ring = RingStatistics(
      receivedFrames: 1, receivedBlocks: 2, truncatedDrops: 3, kernelDrops: 4, checksumsCompleted: 5,
      transmitKicks: 6, transmitBusy: 7, transmitErrors: 8)
    let port = PortRow(
      role: "access", name: "vm1", members: ["vm1"], operState: "up", mtu: 1500, rxFrames: 1, rxBytes: 2,
      txFrames: 3, txBytes: 4, ring: ring)
    let neighbor = NeighborRow(
      vtep: "10.0.0.3", nextHop: "10.0.0.254", mac: "02:00:00:00:00:fe", resolution: .kernel,
      nudState: ["reachable", "permanent"])
    XCTAssertNil(
      validator.validate(
        try JSONValue.parse(APICoding.encoder.encode(PortList(ports: [port]))),
        against: try validator.component("PortList")))
    XCTAssertNil(
      validator.validate(
        try JSONValue.parse(APICoding.encoder.encode(NeighborList(neighbors: [neighbor]))),
        against: try validator.component("NeighborList")))
    // Every NUD state name the service can give is in the schema's enum.
    let nud = NeighborRow(
      vtep: "10.0.0.3", nextHop: nil, mac: nil, resolution: .unresolved, nudState: NUDState.names(0xFF))
    XCTAssertNil(
      validator.validate(
        try JSONValue.parse(APICoding.encoder.encode(nud)), against: try validator.component("Neighbor")))
  }

  // MARK: Metrics

  func testMetricsIsPrometheusTextWithEveryCatalogueName() async throws {
    let site = try APITestSite(config: Self.config)
    do {
      let api = try DocumentedAPI(site: site)
      try sendTraffic(site)
      let reply = try await api.raw(.GET, "/metrics", transport: .unix)
      XCTAssertEqual(reply.status, 200)
      XCTAssertTrue(
        reply.contentType?.hasPrefix("text/plain") == true, "\(reply.contentType ?? "no content type")")
      let text = String(decoding: reply.body, as: UTF8.self)
      let lines = Set(text.split(separator: "\n").map(String.init))
      // BGP metrics need [bgp]; ring metrics need live AF_PACKET ports: neither is here.
      let conditional = MetricsExporter.catalogue.map(\.name).filter {
        $0.hasPrefix("vxswitch_bgp_") || $0.hasPrefix("vxswitch_ring_")
      }
      for (name, type, _) in MetricsExporter.catalogue {
        let line = "# TYPE \(name) \(type)"
        if conditional.contains(name) && !text.contains("# TYPE \(name) ") { continue }
        XCTAssertTrue(lines.contains(line), "/metrics has no `\(line)`")
      }
      XCTAssertTrue(text.contains("vxswitch_drops_total{reason=\"unknown_vni\"} 1"), text)
    } catch {
      XCTFail("\(error)")
    }
    await site.stop()
  }
}

// MARK: - Calling the API and checking answers against the document

/// Calls the test site over its Unix socket or TCP, checks every answer against the
/// document (status documented for the route, body valid for that status's schema,
/// content type) and records which (method, path, status) were seen.
final class DocumentedAPI: @unchecked Sendable {  // used by one test at a time
  enum Transport {
    case unix
    /// TCP with `Authorization: Bearer token` (nil: no header).
    case tcp(token: String?)
  }

  struct Reply {
    var status: Int
    var contentType: String?
    var headers: HTTPHeaders
    var body: Data
  }

  /// The site answering; tests switch it to exercise routes another site serves.
  var site: APITestSite
  let document: [String: Any]
  let validator: SchemaValidator
  private(set) var exercised = Set<String>()

  init(site: APITestSite) throws {
    self.site = site
    document = try OpenAPIAgreementTests.loadDocument()
    validator = SchemaValidator(document: document)
  }

  /// A concrete URI for a route (path parameters filled in).
  func sampleURI(_ route: APIRoute) -> String {
    route.path.replacingOccurrences(of: "{vni}", with: "100").replacingOccurrences(
      of: "{mac}", with: "02:00:00:00:bb:09"
    )
    .replacingOccurrences(of: "{vtep}", with: "10.0.0.9").replacingOccurrences(of: "{name}", with: "web")
    .replacingOccurrences(of: "{id}", with: "site-a.0").replacingOccurrences(of: "{site}", with: "site-b")
  }

  /// Every "METHOD path status" the document gives.
  func documentedStatuses() -> Set<String> {
    var result = Set<String>()
    for route in APIRoute.allCases {
      let responses = OpenAPIAgreementTests.operation(document, route)?["responses"] as? [String: Any] ?? [:]
      for status in responses.keys { result.insert("\(route.method.rawValue) \(route.path) \(status)") }
    }
    return result
  }

  /// Sends `route` (to `uri`, default its path) and checks the answer against the document;
  /// returns the JSON body, if any.
  @discardableResult
  func call(
    _ route: APIRoute, _ uri: String? = nil, body: String? = nil, transport: Transport = .unix, expect: Int,
    file: StaticString = #filePath, line: UInt = #line
  ) async throws -> JSONValue? {
    let method = HTTPMethod(rawValue: route.method.rawValue)
    let uri = uri ?? route.path
    let reply = try await raw(method, uri, body: body, transport: transport)
    let what = "\(method.rawValue) \(uri)"
    let text = String(decoding: reply.body.prefix(500), as: UTF8.self)
    XCTAssertEqual(reply.status, expect, "\(what): \(text)", file: file, line: line)
    exercised.insert("\(route.method.rawValue) \(route.path) \(reply.status)")
    let responses = OpenAPIAgreementTests.operation(document, route)?["responses"] as? [String: Any]
    guard var response = responses?["\(reply.status)"] as? [String: Any] else {
      XCTFail("\(what): status \(reply.status) is not documented for the route", file: file, line: line)
      return nil
    }
    response = validator.resolve(response)
    let content = response["content"] as? [String: Any] ?? [:]
    if content.isEmpty {
      XCTAssertTrue(
        reply.body.isEmpty, "\(what): \(reply.status) has no documented body: \(text)", file: file, line: line
      )
      return nil
    }
    for name in (response["headers"] as? [String: Any] ?? [:]).keys {
      XCTAssertNotNil(reply.headers.first(name: name), "\(what): no \(name) header", file: file, line: line)
    }
    if content["text/plain"] != nil {
      XCTAssertTrue(
        reply.contentType?.hasPrefix("text/plain") == true, "\(what): content type", file: file, line: line)
      return nil
    }
    let media = try XCTUnwrap(
      content["application/json"] as? [String: Any], "\(what): media type", file: file, line: line)
    XCTAssertEqual(reply.contentType, "application/json", "\(what): content type", file: file, line: line)
    let schema = try XCTUnwrap(
      media["schema"] as? [String: Any], "\(what): no schema", file: file, line: line)
    let value: JSONValue
    do {
      value = try JSONValue.parse(reply.body)
    } catch {
      XCTFail("\(what): not JSON: \(text)", file: file, line: line)
      return nil
    }
    if let mismatch = validator.validate(value, against: schema) {
      XCTFail("\(what) \(reply.status): \(mismatch) in \(text)", file: file, line: line)
    }
    return value
  }

  func raw(_ method: HTTPMethod, _ uri: String, body: String? = nil, transport: Transport) async throws
    -> Reply
  {
    var request: HTTPClientRequest
    switch transport {
    case .unix:
      let url = try XCTUnwrap(URL(httpURLWithSocketPath: site.socketPath, uri: uri))
      request = HTTPClientRequest(url: url.absoluteString)
    case .tcp(let token):
      request = HTTPClientRequest(url: "http://127.0.0.1:\(try XCTUnwrap(site.tcpPort))\(uri)")
      if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    }
    request.method = method
    if let body {
      request.headers.add(name: "Content-Type", value: "application/json")
      request.body = .bytes(ByteBuffer(string: body))
    }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let buffer = try await response.body.collect(upTo: 1 << 24)
    return Reply(
      status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"),
      headers: response.headers, body: Data(buffer.readableBytesView))
  }
}

// MARK: - JSON values and a small JSON Schema validator

/// A JSON value with its exact type: integers, fractions and booleans stay distinct
/// (JSONSerialization's NSNumbers blur them on Linux).
enum JSONValue: Decodable, Equatable, CustomStringConvertible {
  case null
  case bool(Bool)
  case integer(Int64)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  init(from decoder: Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Int64.self) {
      self = .integer(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([JSONValue].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSONValue].self))
    }
  }

  static func parse(_ data: Data) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: data) }
  static func parse(_ text: String) throws -> JSONValue { try parse(Data(text.utf8)) }

  subscript(key: String) -> JSONValue? {
    if case .object(let object) = self { return object[key] }
    return nil
  }
  var array: [JSONValue]? {
    if case .array(let array) = self { return array }
    return nil
  }
  var string: String? {
    if case .string(let string) = self { return string }
    return nil
  }

  var typeName: String {
    switch self {
    case .null: return "null"
    case .bool: return "boolean"
    case .integer: return "integer"
    case .number: return "number"
    case .string: return "string"
    case .array: return "array"
    case .object: return "object"
    }
  }

  var description: String {
    switch self {
    case .null: return "null"
    case .bool(let value): return "\(value)"
    case .integer(let value): return "\(value)"
    case .number(let value): return "\(value)"
    case .string(let value): return "\"\(value)\""
    case .array(let values): return "[\(values.map(\.description).joined(separator: ", "))]"
    case .object(let object):
      return "{" + object.keys.sorted().map { "\"\($0)\": \(object[$0]!)" }.joined(separator: ", ") + "}"
    }
  }
}

/// The subset of JSON Schema (OpenAPI 3.0 dialect) the document uses: `$ref` (any JSON
/// pointer in the document), `type`, `properties`, `required`, `additionalProperties`
/// (false or a schema), `items`, `enum`, `nullable`, `minimum`/`maximum`, `oneOf`,
/// `allOf`. Annotations (`description`, `format`, `example`, `default`, `title`) are
/// ignored; any other keyword is reported as a mismatch rather than silently skipped.
struct SchemaValidator {
  struct Mismatch: CustomStringConvertible, Equatable {
    /// Where: `$`, `$.entries[0].origin`.
    var path: String
    var message: String
    var description: String { "\(path): \(message)" }
  }

  let document: [String: Any]

  static let keywords: Set = [
    "$ref", "type", "properties", "required", "additionalProperties", "items", "enum", "nullable", "minimum",
    "maximum", "oneOf", "allOf",
  ]
  static let annotations: Set = ["description", "format", "example", "default", "title"]

  func component(_ name: String) throws -> [String: Any] {
    let schemas = (document["components"] as? [String: Any])?["schemas"] as? [String: Any]
    return try XCTUnwrap(schemas?[name] as? [String: Any], "no schema \(name) in components")
  }

  /// `object` with its `$ref` followed (repeatedly); unresolvable references give an
  /// empty schema and are reported by `validate`.
  func resolve(_ object: [String: Any]) -> [String: Any] {
    var current = object
    for _ in 0..<16 {
      guard let reference = current["$ref"] as? String else { return current }
      guard let target = pointer(reference) else { return ["$unresolved": reference] }
      current = target
    }
    return ["$unresolved": "reference loop"]
  }

  private func pointer(_ reference: String) -> [String: Any]? {
    guard reference.hasPrefix("#/") else { return nil }
    var node: Any = document
    for part in reference.dropFirst(2).split(separator: "/") {
      let key = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
      guard let next = (node as? [String: Any])?[key] else { return nil }
      node = next
    }
    return node as? [String: Any]
  }

  /// The first mismatch of `value` against `schema`, or nil when it is valid.
  func validate(_ value: JSONValue, against schema: [String: Any], path: String = "$") -> Mismatch? {
    let schema = resolve(schema)
    if let unresolved = schema["$unresolved"] {
      return Mismatch(path: path, message: "unresolvable $ref \(unresolved)")
    }
    for key in schema.keys.sorted()
    where !Self.keywords.contains(key) && !Self.annotations.contains(key) && !key.hasPrefix("x-") {
      return Mismatch(path: path, message: "the validator does not support the keyword \(key)")
    }
    if value == .null {
      if schema["nullable"] as? Bool == true || schema["type"] == nil { return nil }
      return Mismatch(path: path, message: "null where \(schema["type"]!) is expected (not nullable)")
    }
    if let type = schema["type"] as? String {
      let matches: Bool
      switch (type, value) {
      case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool),
        ("integer", .integer),
        ("number", .integer), ("number", .number):
        matches = true
      default:
        matches = false
      }
      if !matches { return Mismatch(path: path, message: "expected \(type), got \(value.typeName) \(value)") }
    }
    if let allowed = schema["enum"] as? [Any] {
      guard allowed.contains(where: { Self.equal($0, value) }) else {
        return Mismatch(path: path, message: "\(value) is not one of \(allowed)")
      }
    }
    if let bound = Self.number(schema["minimum"]), let number = Self.number(value), number < bound {
      return Mismatch(path: path, message: "\(value) is below the minimum \(bound)")
    }
    if let bound = Self.number(schema["maximum"]), let number = Self.number(value), number > bound {
      return Mismatch(path: path, message: "\(value) is above the maximum \(bound)")
    }
    if case .object(let object) = value {
      let properties = schema["properties"] as? [String: Any] ?? [:]
      for key in schema["required"] as? [String] ?? [] where object[key] == nil {
        return Mismatch(path: path, message: "missing required key \"\(key)\"")
      }
      for key in object.keys.sorted() {
        let member = object[key]!
        let memberPath = "\(path).\(key)"
        if let property = properties[key] as? [String: Any] {
          if let mismatch = validate(member, against: property, path: memberPath) { return mismatch }
        } else if let additional = schema["additionalProperties"] as? [String: Any] {
          if let mismatch = validate(member, against: additional, path: memberPath) { return mismatch }
        } else if let additional = schema["additionalProperties"], (additional as? Bool) == false {
          return Mismatch(path: memberPath, message: "undocumented key")
        }
      }
    }
    if case .array(let elements) = value, let items = schema["items"] as? [String: Any] {
      for (index, element) in elements.enumerated() {
        if let mismatch = validate(element, against: items, path: "\(path)[\(index)]") { return mismatch }
      }
    }
    for part in schema["allOf"] as? [[String: Any]] ?? [] {
      if let mismatch = validate(value, against: part, path: path) { return mismatch }
    }
    if let choices = schema["oneOf"] as? [[String: Any]] {
      let matching = choices.filter { validate(value, against: $0, path: path) == nil }.count
      if matching != 1 {
        return Mismatch(
          path: path, message: "matches \(matching) of the \(choices.count) oneOf schemas, not exactly one")
      }
    }
    return nil
  }

  static func number(_ any: Any?) -> Double? {
    if any is Bool { return nil }
    if let number = any as? NSNumber { return number.doubleValue }
    return nil
  }

  static func number(_ value: JSONValue) -> Double? {
    switch value {
    case .integer(let integer): return Double(integer)
    case .number(let number): return number
    default: return nil
    }
  }

  /// Whether an `enum` member (from JSONSerialization) equals `value`.
  static func equal(_ member: Any, _ value: JSONValue) -> Bool {
    switch value {
    case .string(let string): return (member as? String) == string
    case .integer, .number: return number(member).map { $0 == number(value) } ?? false
    case .bool(let bool): return !(member is String) && (member as? Bool) == bool
    case .null: return member is NSNull
    case .array, .object: return false
    }
  }
}
