import Dataplane
import Foundation
import Logging

/// What a daemon running BGP leaves for its next start (`STATE_DIR/NAME.restart.json`,
/// next to the state file): when it was last alive, whether it stopped cleanly, and the
/// local MACs and IP bindings it advertised. A start within the restart time of that is a
/// graceful restart (RFC 4724): the peers still hold our routes as stale and forward on
/// them, so the local entries come back into the FDB and are re-advertised before our
/// End-of-RIB, and the Restart State and Forwarding State bits are truthful.
///
/// Written at every `interval` while running (a crash loses at most that much) and at a
/// graceful stop, atomically (`StateStore.writeAtomically`). Unlike the state file, a
/// record that cannot be used never stops the daemon: it starts as after a cold start
/// (no R bit, F bit clear) and the unreadable file is kept aside as `.corrupt`.
public final class RestartRecordFile: Sendable {
  public let path: String
  let site: String
  let logger: Logger

  /// Seconds between periodic writes.
  public static let interval: Double = 10

  public init(stateFile: String, site: String, logger: Logger) {
    let directory = (stateFile as NSString).deletingLastPathComponent
    path = (directory.isEmpty ? "." : directory) + "/" + site + ".restart.json"
    self.site = site
    self.logger = logger
  }

  /// What the last run left, judged at `now`.
  public enum Previous: Sendable, Equatable {
    /// No record, or one of a daemon that ran without BGP: a cold start.
    case none
    /// Within the restart time: a graceful restart; `downtime` seconds since last alive.
    case restart(RestartRecord, downtime: Double)
    /// Too long ago: the peers have dropped our routes; a cold start.
    case expired(downtime: Double)
    /// The file could not be used (moved aside to `.corrupt`); a cold start without the
    /// F bit: nothing can be said of what was kept.
    case unusable(String)
  }

  public func load(now: Date = Date()) -> Previous {
    guard FileManager.default.fileExists(atPath: path) else { return .none }
    let record: RestartRecord
    do {
      record = try JSONDecoder().decode(
        RestartRecord.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
      try record.check(site: site)
    } catch {
      let reason =
        (error as? RestartRecord.Problem)?.message ?? (error as? DecodingError).map(StateStore.describe)
        ?? "\(error)"
      let aside = path + ".corrupt"
      try? FileManager.default.removeItem(atPath: aside)
      let kept = (try? FileManager.default.moveItem(atPath: path, toPath: aside)) != nil
      logger.warning(
        "restart record unusable: starting without graceful restart",
        metadata: ["file": "\(path)", "error": "\(reason)", "kept_as": "\(kept ? aside : path)"])
      return .unusable(reason)
    }
    guard record.bgpRunning else { return .none }
    let downtime = now.timeIntervalSince1970 - record.savedAt
    // A clock stepped back counts as no time passed; one far ahead as too long.
    guard downtime <= Double(record.restartTime) else { return .expired(downtime: downtime) }
    return .restart(record, downtime: max(0, downtime))
  }

  /// Writes what the FDB and ARP table hold locally now.
  public func save(core: SwitchCore, restartTime: UInt16, stopped: Bool, now: Date = Date()) {
    let vnis = Set(core.config.bridgeDomains.map(\.vni))
    let record = RestartRecord(
      site: site, savedAt: now.timeIntervalSince1970, stopped: stopped, restartTime: restartTime,
      macs: core.localMACs(in: vnis).map { .init(vni: $0.vni, mac: "\($0.mac)", port: $0.port) },
      bindings: core.localBindings(in: vnis).map { .init(vni: $0.vni, ip: "\($0.ip)", mac: "\($0.mac)") })
    do {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      try StateStore.writeAtomically(try encoder.encode(record), to: path)
    } catch {
      logger.error(
        "restart record not saved: a restart now would not be graceful",
        metadata: ["file": "\(path)", "error": "\(error)"])
    }
  }
}

/// The file's format (version 1). Not an interface: only this code reads it.
public struct RestartRecord: Codable, Sendable, Equatable {
  static let currentVersion = 1
  var version = RestartRecord.currentVersion
  var site: String
  /// BGP ran (only such a run's peers keep our routes).
  var bgpRunning = true
  /// Seconds since 1970 at the write: the last instant the daemon is known alive.
  public var savedAt: Double
  /// Written at a graceful stop (not a periodic write a crash left behind).
  public var stopped: Bool
  /// The restart time announced to the peers then.
  public var restartTime: UInt16
  var macs: [MAC]
  var bindings: [Binding]

  struct MAC: Codable, Sendable, Equatable {
    var vni: UInt32
    var mac: String
    var port: String
  }

  struct Binding: Codable, Sendable, Equatable {
    var vni: UInt32
    var ip: String
    var mac: String
  }

  struct Problem: Error {
    var message: String
  }

  init(
    site: String, savedAt: Double, stopped: Bool, restartTime: UInt16, macs: [MAC], bindings: [Binding]
  ) {
    self.site = site
    self.savedAt = savedAt
    self.stopped = stopped
    self.restartTime = restartTime
    self.macs = macs
    self.bindings = bindings
  }

  func check(site expected: String) throws {
    guard version == Self.currentVersion else {
      throw Problem(message: "format version \(version) (this vxswitch reads \(Self.currentVersion))")
    }
    guard site == expected else { throw Problem(message: "the record of site \(site), not of \(expected)") }
    guard savedAt.isFinite else { throw Problem(message: "saved_at is not a time") }
    for entry in macs where MACAddress(entry.mac) == nil || entry.vni >= 1 << 24 {
      throw Problem(message: "bad MAC entry \(entry.vni) \(entry.mac)")
    }
    for entry in bindings
    where MACAddress(entry.mac) == nil || IPAddress(entry.ip) == nil || entry.vni >= 1 << 24 {
      throw Problem(message: "bad binding \(entry.vni) \(entry.ip) \(entry.mac)")
    }
  }

  /// The local MACs to put back (`SwitchCore.restoreLocalMACs`).
  public var localMACs: [SwitchCore.LocalMAC] {
    macs.compactMap { entry in
      MACAddress(entry.mac).map { SwitchCore.LocalMAC(vni: entry.vni, mac: $0, port: entry.port) }
    }
  }

  /// The local bindings to put back (`SwitchCore.restoreLocalBindings`).
  public var localBindings: [SwitchCore.LocalBinding] {
    bindings.compactMap { entry in
      guard let mac = MACAddress(entry.mac), let ip = IPAddress(entry.ip) else { return nil }
      return SwitchCore.LocalBinding(vni: entry.vni, ip: ip, mac: mac)
    }
  }

  enum CodingKeys: String, CodingKey {
    case version, site, stopped, macs, bindings
    case bgpRunning = "bgp_running", savedAt = "saved_at", restartTime = "restart_time"
  }
}
