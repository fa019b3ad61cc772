import Dataplane
import Foundation
import Logging
import Synchronization
import XCTest

@testable import Management

/// The restart record (`RestartRecordFile`): what a stopping daemon saves of its local
/// state comes back into a new core's FDB and ARP table as local entries (re-advertised
/// through the observers); a start within the restart time is a restart, a later one is
/// not; a record that cannot be used is a cold start (no crash, no refusal to start) and is
/// kept aside, not overwritten.
final class RestartRecordTests: XCTestCase {
  private var directory = ""

  override func setUpWithError() throws {
    directory =
      NSTemporaryDirectory() + "vxswitch-restart-record-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: directory)
  }

  private let config = """
    [site]
    name = "site-a"
    vtep = "10.0.0.1"
    underlay = "eth0"

    [[bridge_domain]]
    vni = 100
    ports = ["vm1", "vm2"]

    [[bridge_domain]]
    vni = 200
    ports = ["vm3"]
    """

  private func makeCore() throws -> SwitchCore {
    SwitchCore(config: try SiteConfig.parse(text: config, file: "site-a.toml"))
  }

  private func file() -> RestartRecordFile {
    RestartRecordFile(
      stateFile: directory + "/site-a.state.json", site: "site-a", logger: Logger(label: "test"))
  }

  private let m1 = MACAddress("02:00:00:00:00:01")!
  private let m2 = MACAddress("02:00:00:00:00:02")!
  private let m3 = MACAddress("02:00:00:00:00:03")!

  func testLocalStateComesBackAsLocalEntriesAndIsAnnounced() throws {
    let before = try makeCore()
    before.restoreLocalMACs(
      [
        .init(vni: 100, mac: m1, port: "vm1"), .init(vni: 100, mac: m2, port: "vm2"),
        .init(vni: 200, mac: m3, port: "vm3"),
      ], now: 5)
    before.restoreLocalBindings([.init(vni: 100, ip: IPAddress("192.168.1.1")!, mac: m1)])
    let saved = Date(timeIntervalSince1970: 1_000_000)
    file().save(core: before, restartTime: 120, stopped: true, now: saved)
    XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/site-a.restart.json"))

    guard case .restart(let record, let downtime) = file().load(now: saved.addingTimeInterval(30)) else {
      return XCTFail("\(file().load(now: saved.addingTimeInterval(30)))")
    }
    XCTAssertEqual(downtime, 30)
    XCTAssertTrue(record.stopped)
    XCTAssertEqual(record.restartTime, 120)

    let after = try makeCore()
    let learned = Mutex<[String]>([])
    after.observeLocalMACs { event in
      if case .learned(let vni, let mac, let port) = event {
        learned.withLock { $0.append("\(vni) \(mac) \(port)") }
      }
    }
    let bound = Mutex<[SwitchCore.LocalARPEvent]>([])
    after.observeLocalARP { event in bound.withLock { $0.append(event) } }
    // vm2 left the configuration: its MAC is skipped; m3 was learnt again meanwhile (kept).
    XCTAssertEqual(after.restoreLocalMACs([.init(vni: 200, mac: m3, port: "vm3")], now: 1), 1)
    var macs = record.localMACs
    macs[1].port = "vm9"
    XCTAssertEqual(after.restoreLocalMACs(macs, now: 7), 1)
    XCTAssertEqual(after.restoreLocalBindings(record.localBindings), 1)
    XCTAssertEqual(learned.withLock { $0 }, ["200 \(m3) vm3", "100 \(m1) vm1"])
    XCTAssertEqual(bound.withLock { $0 }, [.bound(vni: 100, ip: IPAddress("192.168.1.1")!, mac: m1)])
    XCTAssertEqual(
      after.localMACs(in: [100, 200]).map { "\($0.vni) \($0.mac) \($0.port)" },
      ["100 \(m1) vm1", "200 \(m3) vm3"])
    // Restored entries age like learnt ones: stamped 7, gone after the aging time.
    XCTAssertEqual(after.age(now: 7 + 301), 2)
  }

  func testTooOldNotRunningAndMissingRecordsAreColdStarts() throws {
    XCTAssertEqual(file().load(), .none)
    let saved = Date(timeIntervalSince1970: 2_000_000)
    file().save(core: try makeCore(), restartTime: 120, stopped: false, now: saved)
    XCTAssertEqual(file().load(now: saved.addingTimeInterval(121)), .expired(downtime: 121))
    guard case .restart = file().load(now: saved.addingTimeInterval(119)) else { return XCTFail() }
    // A clock stepped back: no time passed.
    guard case .restart(_, let downtime) = file().load(now: saved.addingTimeInterval(-5)) else {
      return XCTFail()
    }
    XCTAssertEqual(downtime, 0)
  }

  func testAnUnusableRecordIsAColdStartAndIsKeptAside() throws {
    let path = directory + "/site-a.restart.json"
    let aside = path + ".corrupt"
    let cases: [(String, String)] = [
      ("{not json", "data"),
      (
        #"{"version": 9, "site": "site-a", "bgp_running": true, "saved_at": 1, "stopped": true, "restart_time": 120, "macs": [], "bindings": []}"#,
        "version 9"
      ),
      (
        #"{"version": 1, "site": "site-b", "bgp_running": true, "saved_at": 1, "stopped": true, "restart_time": 120, "macs": [], "bindings": []}"#,
        "site-b"
      ),
      (
        #"{"version": 1, "site": "site-a", "bgp_running": true, "saved_at": 1, "stopped": true, "restart_time": 120, "macs": [{"vni": 100, "mac": "zz", "port": "vm1"}], "bindings": []}"#,
        "zz"
      ),
      (
        #"{"version": 1, "site": "site-a", "bgp_running": true, "saved_at": 1, "stopped": true, "restart_time": 99999, "macs": [], "bindings": []}"#,
        "JSON"
      ),
    ]
    for (text, mention) in cases {
      try text.write(toFile: path, atomically: true, encoding: .utf8)
      guard case .unusable(let reason) = file().load() else { return XCTFail(text) }
      XCTAssertTrue(reason.contains(mention), "\(reason) should mention \(mention)")
      XCTAssertFalse(FileManager.default.fileExists(atPath: path), "moved aside, not left to be overwritten")
      XCTAssertEqual(try String(contentsOfFile: aside, encoding: .utf8), text, "kept as it was")
    }
  }
}
