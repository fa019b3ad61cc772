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

extension ControlSocketTests {
  /// `show-arp`: local bindings (learnt from ARP, aged with their MAC) and EVPN ones
  /// (peer from the control plane), filtered by VNI, in a stable JSON shape.
  func testShowARPOverTheSocket() throws {
    var config = S.config()
    config.bridgeDomains[0].arpSuppression = true
    let sw = OfflineSwitch(config: config)
    let localIP = IPAddress("192.168.1.10")!
    let remoteIP = IPAddress("192.168.1.20")!
    let remoteMAC = MACAddress("02:bb:00:00:00:20")!
    sw.forward(
      interface: "vm1",
      frames: [FrameBuilder.arpRequestFrame(senderMAC: S.hostA, senderIP: localIP, targetIP: remoteIP)],
      now: 4)
    _ = ["vm2", "trunk0", "eth1"].map(sw.takeOutput)
    XCTAssertTrue(sw.core.installARP(vni: 100, ip: remoteIP, mac: remoteMAC))
    XCTAssertTrue(sw.core.installARP(vni: 200, ip: IPAddress("10.2.0.1")!, mac: S.hostB))
    let commands = ControlCommands(core: sw.core, clock: { 10 })
    commands.arpPeer = { vni, mac, ip in vni == 100 && mac == remoteMAC && ip == remoteIP ? "192.0.2.9" : nil
    }
    commands.duplicateMACs = { [DuplicateMAC(vni: 100, mac: remoteMAC.description)] }
    let path = NSTemporaryDirectory() + "vxs-arp-\(getpid())-\(UInt16.random(in: 0...9999)).sock"
    let server = ControlServer(path: path, handler: commands.handle)
    try server.start()
    defer { server.stop() }

    let reply = try ControlClient.request(.init(command: "show-arp", vni: 100), socket: path)
    let object = try JSONSerialization.jsonObject(with: reply) as! [String: Any]
    let entries = object["entries"] as! [[String: Any]]
    XCTAssertEqual(entries.count, 2, String(decoding: reply, as: UTF8.self))
    // Sorted by VNI then IP; exact keys (the documented shape).
    XCTAssertEqual(entries.map { $0["ip"] as? String }, ["192.168.1.10", "192.168.1.20"])
    XCTAssertEqual(Set(entries[0].keys), ["vni", "ip", "mac", "origin", "age_seconds"])
    XCTAssertEqual(entries[0]["mac"] as? String, S.hostA.description)
    XCTAssertEqual(entries[0]["origin"] as? String, "local")
    XCTAssertEqual(entries[0]["age_seconds"] as? Int, 6)
    XCTAssertEqual(entries[0]["vni"] as? Int, 100)
    XCTAssertEqual(Set(entries[1].keys), ["vni", "ip", "mac", "origin", "peer", "duplicate"])
    XCTAssertEqual(entries[1]["origin"] as? String, "evpn")
    XCTAssertEqual(entries[1]["peer"] as? String, "192.0.2.9")
    XCTAssertEqual(entries[1]["duplicate"] as? Bool, true)

    let all = try JSONDecoder.snake.decode(
      [String: [ARPRow]].self, from: ControlClient.request(.init(command: "show-arp"), socket: path))
    XCTAssertEqual(all["entries"]?.map(\.vni), [100, 100, 200])
    XCTAssertEqual(all["entries"]?.last?.mac, S.hostB.description)
    XCTAssertNil(all["entries"]?.last?.peer)

    // show-fdb marks the frozen MAC too (hostA is not frozen).
    sw.core.installRemoteMAC(vni: 100, mac: remoteMAC, vtep: IPAddress("10.0.0.2")!)
    let fdb = try JSONDecoder.snake.decode(
      [String: [FDBRow]].self, from: ControlClient.request(.init(command: "show-fdb"), socket: path))
    XCTAssertEqual(fdb["entries"]?.first { $0.mac == remoteMAC.description }?.duplicate, true)
    XCTAssertNil(fdb["entries"]?.first { $0.mac == S.hostA.description }?.duplicate)

    // Once hostA ages out, its binding is gone from the table and from show-arp.
    sw.forward(interface: "vm2", frames: [S.ping(from: S.hostB, to: .broadcast)], now: 400)
    let after = try JSONDecoder.snake.decode(
      [String: [ARPRow]].self, from: ControlClient.request(.init(command: "show-arp", vni: 100), socket: path)
    )
    XCTAssertEqual(after["entries"]?.map(\.ip), ["192.168.1.20"])
  }
}

extension JSONDecoder {
  static var snake: JSONDecoder {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return decoder
  }
}
