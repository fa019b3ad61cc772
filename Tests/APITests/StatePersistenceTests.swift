import API
import Dataplane
import Foundation
import Management
import XCTest

/// The runtime state survives a restart: sites are stopped and started again from their
/// files (configuration and state file, as `vxswitch run` does), over an in-process site
/// channel. Networks, static MACs and flood entries added through the API come back; the
/// owner's extension record comes back with every member's state and resumes its work (a
/// member that was unreachable before the restart joins after it); a member's binding and
/// record come back. A state file that cannot be used stops start-up and is left as it is.
final class StatePersistenceTests: XCTestCase, @unchecked Sendable {
  var peers = LoopbackPeerNetwork()
  var sites: [APITestSite] = []

  override func tearDown() async throws {
    for site in sites { await site.stop() }
    sites = []
  }

  private func configA() -> String {
    ExtensionTests.config("site-a", vtep: "10.0.0.1", networks: [("net1", 100, "vm1")])
  }
  private func configB() -> String {
    ExtensionTests.config(
      "site-b", vtep: "10.0.0.2", networks: [("net1", 200, "vm1"), ("other", 100, "vm2")])
  }
  private func configC() -> String {
    ExtensionTests.config("site-c", vtep: "10.0.0.3", networks: [("local", 300, "vm1")])
  }

  private func start(_ config: String, restartingIn directory: String? = nil) throws -> APITestSite {
    let site = try APITestSite(config: config, peers: peers, restartingIn: directory)
    sites.append(site)
    return site
  }

  /// Stops `site` as a daemon stops (its files stay) and starts it again from them.
  private func restart(_ site: APITestSite, _ config: String) async throws -> APITestSite {
    await site.stop(keepingFiles: true)
    sites.removeAll { $0 === site }
    return try start(config, restartingIn: site.directory)
  }

  private func status(_ id: ExtensionID, at site: APITestSite) throws -> ExtensionStatus {
    try site.client.get("/v1/extensions/\(id)", as: ExtensionStatus.self)
  }

  private func network(_ name: String, at site: APITestSite) throws -> NetworkRow? {
    try site.client.get("/v1/networks", as: NetworkList.self).networks.first { $0.name == name }
  }

  func testNetworksAndExtensionsSurviveARestartAndTheOwnerResumesRetrying() async throws {
    var a = try start(configA())
    var b = try start(configB())
    let c = try start(configC())
    peers.setReachable("site-c", false)

    // Runtime state at A besides the extension: a network, a static MAC, a flood entry.
    XCTAssertEqual(
      try a.client.request(.POST, "/v1/networks", body: Data(#"{"name":"web"}"#.utf8)).status, 201)
    let web = try XCTUnwrap(try network("web", at: a))
    try a.client.request(
      .POST, "/v1/static-macs",
      body: Data(#"{"vni":\#(web.vni),"mac":"02:00:00:00:bb:01","vtep":"10.0.0.2"}"#.utf8))
    try a.client.request(.POST, "/v1/flood", body: Data(#"{"vni":\#(web.vni),"vtep":"10.0.0.3"}"#.utf8))

    let body = try JSONSerialization.data(withJSONObject: ["network": "net1", "sites": ["site-b", "site-c"]])
    let id = try APICoding.decoder.decode(
      ExtensionStatus.self, from: a.client.request(.POST, "/v1/extensions", body: body).body
    ).id
    // B joins; C stays pending (unreachable).
    let deadline = Date().addingTimeInterval(20)
    var before = try status(id, at: a)
    while before.members.map(\.state) != [.joined, .joined, .pending]
      || before.members.last?.reason?.contains("unreachable") != true
    {
      guard Date() < deadline else { return XCTFail("B never joined while C was unreachable: \(before)") }
      try await Task.sleep(for: .milliseconds(50))
      before = try status(id, at: a)
    }
    let vni = try XCTUnwrap(before.vni)
    XCTAssertEqual(try network("net1", at: b)?.vni, vni)
    let attributes = try FileManager.default.attributesOfItem(atPath: a.stateFile)
    XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600, "it holds TCP MD5 keys")

    // Both sites restart; what they held is back.
    a = try await restart(a, configA())
    b = try await restart(b, configB())
    let restoredWeb = try XCTUnwrap(try network("web", at: a), "the API network was forgotten")
    XCTAssertEqual(restoredWeb.vni, web.vni)
    XCTAssertEqual(restoredWeb.origin, .api)
    XCTAssertEqual(
      try a.client.get("/v1/static-macs?vni=\(web.vni)", as: StaticMACList.self).staticMacs.map(\.mac),
      ["02:00:00:00:bb:01"])
    XCTAssertEqual(
      try a.client.get("/v1/flood?vni=\(web.vni)", as: FloodList.self).flood.map(\.vtep), ["10.0.0.3"])
    let after = try status(id, at: a)
    XCTAssertEqual(after.vni, before.vni)
    XCTAssertEqual(after.routeTarget, before.routeTarget)
    XCTAssertEqual(after.role, "owner")
    XCTAssertEqual(after.members.map(\.site), ["site-a", "site-b", "site-c"])
    XCTAssertEqual(after.members.prefix(2).map(\.state), [.joined, .joined], "\(after)")
    XCTAssertNotEqual(after.members.last?.state, .joined, "\(after)")
    XCTAssertEqual(try network("net1", at: a)?.vni, vni, "the owner's binding is back")
    XCTAssertEqual(try network("net1", at: a)?.extended, true)
    XCTAssertEqual(try network("net1", at: b)?.vni, vni, "the member's binding is back")
    let memberView = try status(id, at: b)
    XCTAssertEqual([memberView.role, memberView.owner], ["member", "site-a"])
    XCTAssertEqual(
      try b.client.get("/v1/flood?vni=\(vni)", as: FloodList.self).flood.map(\.vtep), ["10.0.0.1"])

    // The owner resumed retrying: C joins once it answers, and B hears of it.
    peers.setReachable("site-c", true)
    let settled = await a.extensions!.settle()
    XCTAssertTrue(settled)
    XCTAssertEqual(try status(id, at: a).members.map(\.state), [.joined, .joined, .joined])
    XCTAssertEqual(try network("net1", at: c)?.vni, vni)
    XCTAssertEqual(
      Set(try b.client.get("/v1/flood?vni=\(vni)", as: FloodList.self).flood.map(\.vtep)),
      ["10.0.0.1", "10.0.0.3"])

    // Deleting the extension is remembered too: after another restart A and B hold nothing of it.
    try a.client.request(.DELETE, "/v1/extensions/\(id)")
    let deleted = await a.extensions!.settle()
    XCTAssertTrue(deleted)
    a = try await restart(a, configA())
    b = try await restart(b, configB())
    XCTAssertTrue(try a.client.get("/v1/extensions", as: ExtensionList.self).extensions.isEmpty)
    XCTAssertTrue(try b.client.get("/v1/extensions", as: ExtensionList.self).extensions.isEmpty)
    XCTAssertEqual(try network("net1", at: a)?.vni, 100)
    XCTAssertEqual(try network("net1", at: b)?.vni, 200)
    XCTAssertNotNil(try network("web", at: a))
  }

  func testAStateFileThatCannotBeUsedStopsStartUpAndIsLeftAsItIs() async throws {
    let site = try start(APITestSite.baseConfig)
    try site.client.request(.POST, "/v1/networks", body: Data(#"{"name":"web","ports":[]}"#.utf8))
    let directory = site.directory
    let file = site.stateFile
    let valid = try String(contentsOfFile: file, encoding: .utf8)
    await site.stop(keepingFiles: true)
    sites = []
    defer { try? FileManager.default.removeItem(atPath: directory) }

    let cases: [(String, String)] = [
      ("{ \"version\": 1, \"site\": ", "not a vxswitch state file"),
      (valid.replacingOccurrences(of: "\"api-test\"", with: "\"site-z\""), "holds the state of site site-z"),
      (valid.replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 7"), "format version 7"),
      (valid.replacingOccurrences(of: "\"web\"", with: "\"bad name\""), "not a network name: bad name"),
    ]
    for (text, expected) in cases {
      XCTAssertNotEqual(text, valid, "the case did not change the file: \(expected)")
      try text.write(toFile: file, atomically: true, encoding: .utf8)
      XCTAssertThrowsError(try APITestSite(restartingIn: directory), expected) { error in
        let message = "\(error)"
        XCTAssertTrue(message.hasPrefix(file + ": "), message)
        XCTAssertTrue(message.contains(expected), message)
        XCTAssertTrue(message.contains("move it away"), message)
      }
      XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), text, "the file was overwritten")
    }
    // Moved away: the site starts without the runtime state.
    try FileManager.default.moveItem(atPath: file, toPath: file + ".broken")
    let fresh = try start(APITestSite.baseConfig, restartingIn: directory)
    XCTAssertNil(try network("web", at: fresh))
  }

  /// A state file that cannot be written is logged and counted; the change still applies.
  func testAFailedWriteDoesNotStopTheSite() throws {
    let store = try StateStore(path: "/proc/vxswitch-no-such-dir/site.state.json", site: "api-test")
    let offline = OfflineSwitch(config: try SiteConfig.parse(text: APITestSite.baseConfig, file: "site.toml"))
    let service = SiteService(core: offline.core, clock: { 10 }, state: store)
    XCTAssertNoThrow(try service.createNetwork(name: "web", vni: nil, ports: []))
    XCTAssertNotNil(service.networks().first { $0.name == "web" })
    XCTAssertEqual(store.failedWrites, 1)
  }
}
