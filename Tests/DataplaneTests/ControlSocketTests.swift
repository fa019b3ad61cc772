import Foundation
import XCTest

@testable import Dataplane

final class ControlSocketTests: XCTestCase {
  typealias S = TestSite

  func testShowCommandsOverTheSocketAndBadRequests() throws {
    let sw = OfflineSwitch(config: S.config())
    sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)], now: 5)
    sw.forward(interface: "eth1", frames: [S.vxlan(S.ping(from: S.hostR, to: S.hostA))], now: 7)
    let commands = ControlCommands(core: sw.core, clock: { 10 })
    commands.register("show-bgp") { _ in ControlCommands.encode(["sessions": [String]()]) }
    let path = NSTemporaryDirectory() + "vxs-\(getpid())-\(UInt16.random(in: 0...9999)).sock"
    let server = ControlServer(path: path, handler: commands.handle)
    try server.start()
    defer { server.stop() }

    let fdb =
      try JSONSerialization.jsonObject(
        with: ControlClient.request(.init(command: "show-fdb"), socket: path)) as! [String: Any]
    let entries = fdb["entries"] as! [[String: Any]]
    XCTAssertEqual(entries.count, 2)
    let local = entries.first { $0["mac"] as? String == S.hostA.description }!
    XCTAssertEqual(local["port"] as? String, "vm1")
    XCTAssertEqual(local["origin"] as? String, "local")
    XCTAssertEqual(local["age_seconds"] as? Int, 5)
    let remote = entries.first { $0["mac"] as? String == S.hostR.description }!
    XCTAssertEqual(remote["vtep"] as? String, "10.0.0.2")
    XCTAssertEqual(remote["origin"] as? String, "decap")
    XCTAssertEqual(remote["vni"] as? Int, 100)

    let filtered =
      try JSONSerialization.jsonObject(
        with: ControlClient.request(.init(command: "show-fdb", vni: 200), socket: path)) as! [String: Any]
    XCTAssertEqual((filtered["entries"] as! [Any]).count, 0)

    let bd = try JSONDecoder.snake.decode(
      [String: [BridgeDomainRow]].self, from: ControlClient.request(.init(command: "show-bd"), socket: path))
    XCTAssertEqual(bd["bridge_domains"]?.map(\.vni), [100, 200])
    XCTAssertEqual(bd["bridge_domains"]?.first?.ports, ["vm1", "vm2", "trunk0.10"])
    XCTAssertEqual(bd["bridge_domains"]?.first?.flood, ["10.0.0.2", "10.0.0.3"])
    XCTAssertEqual(bd["bridge_domains"]?.first?.macs, 2)

    let stats = try JSONDecoder.snake.decode(
      StatisticsReport.self, from: ControlClient.request(.init(command: "show-stats"), socket: path))
    XCTAssertEqual(stats.decapsulated, 1)
    XCTAssertEqual(stats.ports.first { $0.name == "vm1" }?.rxFrames, 1)

    let unknown =
      try JSONSerialization.jsonObject(
        with: ControlClient.request(.init(command: "reboot"), socket: path)) as! [String: Any]
    XCTAssertTrue((unknown["error"] as? String)?.contains("unknown command 'reboot'") ?? false)

    // Garbage on the socket gets an error reply and the server keeps serving.
    let fd = try ControlClient.connect(path)
    XCTAssertTrue(ControlClient.writeAll(fd, Data("\u{1}not json\n".utf8)))
    guard case .success(let reply)? = ControlClient.readLine(fd, limit: 1 << 20) else {
      return XCTFail("no reply")
    }
    close(fd)
    XCTAssertTrue(String(decoding: reply, as: UTF8.self).contains("malformed request"))
    XCTAssertNoThrow(try ControlClient.request(.init(command: "show-bgp"), socket: path))

    // A second server on the same path is refused while the first one answers.
    XCTAssertThrowsError(try ControlServer(path: path, handler: commands.handle).start())
  }
}

extension JSONDecoder {
  static var snake: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return decoder
  }
}
