import Dataplane
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The runtime state of a site that the configuration file does not hold, kept across
/// daemon restarts in one JSON file (`[site] state_dir`, `NAME.state.json`): networks,
/// static MACs and flood entries added through the API, extension bindings, and the
/// extension protocol's records (the extensions this site owns, with each member's state
/// and the sessions' TCP MD5 key; the extensions it joined; reservations it holds).
///
/// Every change is written at once, atomically: a temporary file in the same directory
/// (mode 0600: it holds TCP MD5 keys) is written and fsync'ed, renamed over the file, and
/// the directory fsync'ed; a crash leaves the old file or the new one, never a mix.
/// `open(path:site:)` reads it at start-up; a file that cannot be read or is not a
/// state file of this site is refused (`StateFileError`, naming the file) and left as it is.
///
/// Thread-safety: a mutex serialises writes; the site service and the extension manager
/// each save their part from any thread.
public final class StateStore: Sendable {
  public let path: String
  let site: String
  let logger: Logger
  private let current: Mutex<SiteState>
  /// The state found at start-up, decoded and checked.
  let restoredOverlay: RuntimeOverlay
  let restoredExtensions: ExtensionRecords
  /// Whether a state file was found at start-up.
  public let existed: Bool
  /// Writes that failed (logged; the daemon keeps running on what it has in memory).
  private let failures = Mutex<Int>(0)

  /// Reads the state file if there is one (a missing file is an empty state).
  public init(path: String, site: String, logger: Logger = Logger(label: "vxswitch")) throws(StateFileError) {
    self.path = path
    self.site = site
    self.logger = logger
    var state = SiteState(site: site)
    var found = false
    if FileManager.default.fileExists(atPath: path) {
      found = true
      let data: Data
      do {
        data = try Data(contentsOf: URL(fileURLWithPath: path))
      } catch {
        throw StateFileError(path: path, message: "cannot be read: \(error.localizedDescription)")
      }
      do {
        state = try JSONDecoder().decode(SiteState.self, from: data)
      } catch let error as DecodingError {
        throw StateFileError(path: path, message: "not a vxswitch state file: \(Self.describe(error))")
      } catch {
        throw StateFileError(path: path, message: "not a vxswitch state file: \(error)")
      }
      guard state.version == SiteState.currentVersion else {
        throw StateFileError(
          path: path,
          message: "format version \(state.version) is not supported (this vxswitch reads version "
            + "\(SiteState.currentVersion))")
      }
      guard state.site == site else {
        throw StateFileError(path: path, message: "holds the state of site \(state.site), not of \(site)")
      }
    }
    existed = found
    do {
      restoredOverlay = try state.overlay()
      restoredExtensions = try state.extensions.checked(site: site)
    } catch let problem as StateFileError.Problem {
      throw StateFileError(path: path, message: problem.message)
    } catch {
      throw StateFileError(path: path, message: "\(error)")
    }
    current = Mutex(state)
  }

  static func describe(_ error: DecodingError) -> String {
    func place(_ context: DecodingError.Context) -> String {
      let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
      return path.isEmpty ? "" : " at \(path)"
    }
    switch error {
    case .dataCorrupted(let context):
      let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
      return (underlying ?? context.debugDescription) + place(context)
    case .keyNotFound(let key, let context):
      return "missing \(key.stringValue)\(place(context))"
    case .typeMismatch(_, let context), .valueNotFound(_, let context):
      return context.debugDescription + place(context)
    @unknown default:
      return "\(error)"
    }
  }

  /// The number of writes that failed since start-up.
  public var failedWrites: Int { failures.withLock { $0 } }

  func save(overlay: RuntimeOverlay) {
    write { $0.setOverlay(overlay) }
  }

  func save(extensions: ExtensionRecords) {
    write { $0.extensions = extensions }
  }

  private func write(_ change: (inout SiteState) -> Void) {
    current.withLock { state in
      var next = state
      change(&next)
      guard next != state else { return }
      state = next
      do {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Self.writeAtomically(try encoder.encode(next), to: path)
      } catch {
        failures.withLock { $0 += 1 }
        logger.error(
          "runtime state not saved: the daemon goes on with what it holds in memory",
          metadata: ["file": "\(path)", "error": "\(error)"])
      }
    }
  }

  /// Temporary file, fsync, rename, fsync of the directory.
  static func writeAtomically(_ data: Data, to path: String) throws {
    let directory = (path as NSString).deletingLastPathComponent
    let folder = directory.isEmpty ? "." : directory
    if !FileManager.default.fileExists(atPath: folder) {
      try FileManager.default.createDirectory(
        atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw StateWriteError(step: "create \(temporary)", code: errno) }
    var failure: StateWriteError?
    data.withUnsafeBytes { buffer in
      var offset = 0
      while offset < buffer.count {
        let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
        if written < 0 {
          if errno == EINTR { continue }
          failure = StateWriteError(step: "write \(temporary)", code: errno)
          return
        }
        offset += written
      }
    }
    if failure == nil, fsync(fd) != 0 { failure = StateWriteError(step: "fsync \(temporary)", code: errno) }
    close(fd)
    if let failure {
      unlink(temporary)
      throw failure
    }
    guard rename(temporary, path) == 0 else {
      let code = errno
      unlink(temporary)
      throw StateWriteError(step: "rename \(temporary) to \(path)", code: code)
    }
    let directoryFD = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if directoryFD >= 0 {
      _ = fsync(directoryFD)
      close(directoryFD)
    }
  }
}

/// A state file that cannot be used: start-up stops with this message (the file is left
/// untouched for the operator to inspect, repair or move away).
public struct StateFileError: Error, CustomStringConvertible, Sendable {
  public var path: String
  public var message: String
  public var description: String {
    "\(path): \(message) (the file is left as it is: repair it, or move it away to start without "
      + "the runtime state: API networks, static MACs, flood entries, extensions)"
  }

  struct Problem: Error {
    var message: String
  }
}

struct StateWriteError: Error, CustomStringConvertible {
  var step: String
  var code: Int32
  var description: String { "\(step): \(String(cString: strerror(code)))" }
}

/// The file's format (version 1). Not an interface: only this code reads it.
struct SiteState: Codable, Sendable, Equatable {
  static let currentVersion = 1
  var version = SiteState.currentVersion
  var site: String
  var networks: [Network] = []
  var staticMACs: [StaticMAC] = []
  var flood: [Flood] = []
  var bindings: [Binding] = []
  var extensions = ExtensionRecords()

  init(site: String) { self.site = site }

  struct Network: Codable, Sendable, Equatable {
    var name: String
    var vni: UInt32
    var ports: [String]
  }
  struct StaticMAC: Codable, Sendable, Equatable {
    var vni: UInt32
    var mac: String
    var port: String?
    var vtep: String?
  }
  struct Flood: Codable, Sendable, Equatable {
    var vni: UInt32
    var vtep: String
  }
  struct Binding: Codable, Sendable, Equatable {
    var network: String
    var vni: UInt32
    var routeTarget: String
    var remoteVTEPs: [String]
  }

  mutating func setOverlay(_ overlay: RuntimeOverlay) {
    networks = overlay.networks.map {
      Network(name: $0.name ?? "", vni: $0.vni, ports: $0.ports.map(\.description))
    }
    staticMACs = overlay.staticMACs.map { entry in
      switch entry.target {
      case .port(let member): StaticMAC(vni: entry.vni, mac: "\(entry.mac)", port: member.description)
      case .remote(let vtep): StaticMAC(vni: entry.vni, mac: "\(entry.mac)", vtep: "\(vtep)")
      }
    }
    flood = overlay.flood.map { Flood(vni: $0.vni, vtep: "\($0.vtep)") }
    bindings = overlay.bindings.sorted { $0.key < $1.key }.map { name, binding in
      Binding(
        network: name, vni: binding.vni, routeTarget: binding.routeTarget,
        remoteVTEPs: binding.remoteVTEPs.map { "\($0)" })
    }
  }

  /// The overlay the file describes; every value checked.
  func overlay() throws -> RuntimeOverlay {
    typealias Problem = StateFileError.Problem
    func vni(_ value: UInt32, _ what: String) throws -> UInt32 {
      guard value < 1 << 24 else { throw Problem(message: "\(what): VNI \(value) is above 16777215") }
      return value
    }
    func address(_ text: String, _ what: String) throws -> IPAddress {
      guard let address = IPAddress(text) else {
        throw Problem(message: "\(what): not an IP address: \(text)")
      }
      return address
    }
    var overlay = RuntimeOverlay()
    var names = Set<String>()
    for network in networks {
      let what = "network \(network.name)"
      guard ConfigSyntax.isValidBridgeDomainName(network.name) else {
        throw Problem(message: "not a network name: \(network.name)")
      }
      guard names.insert(network.name).inserted else { throw Problem(message: "\(what) is listed twice") }
      var domain = SiteConfig.BridgeDomain(vni: try vni(network.vni, what))
      domain.name = network.name
      domain.ports = try network.ports.map { text in
        switch ConfigSyntax.parsePortMember(text) {
        case .success(let member): return member
        case .failure(let problem): throw Problem(message: "\(what): \(problem.message)")
        }
      }
      overlay.networks.append(domain)
    }
    for entry in staticMACs {
      let what = "static MAC \(entry.mac) in VNI \(entry.vni)"
      guard let mac = MACAddress(entry.mac) else { throw Problem(message: "\(what): not a MAC address") }
      let target: SiteConfig.StaticMAC.Target
      switch (entry.port, entry.vtep) {
      case (let port?, nil):
        switch ConfigSyntax.parsePortMember(port) {
        case .success(let member): target = .port(member)
        case .failure(let problem): throw Problem(message: "\(what): \(problem.message)")
        }
      case (nil, let vtep?): target = .remote(try address(vtep, what))
      default: throw Problem(message: "\(what): needs exactly one of port and vtep")
      }
      overlay.staticMACs.append(.init(vni: try vni(entry.vni, what), mac: mac, target: target))
    }
    for entry in flood {
      let what = "flood entry \(entry.vtep) in VNI \(entry.vni)"
      overlay.flood.append(.init(vni: try vni(entry.vni, what), vtep: try address(entry.vtep, what)))
    }
    for binding in bindings {
      let what = "extension binding of network \(binding.network)"
      guard ConfigSyntax.isValidBridgeDomainName(binding.network) else {
        throw Problem(message: "\(what): not a network name")
      }
      guard overlay.bindings[binding.network] == nil else {
        throw Problem(message: "\(what) is listed twice")
      }
      overlay.bindings[binding.network] = .init(
        vni: try vni(binding.vni, what), routeTarget: binding.routeTarget,
        remoteVTEPs: try binding.remoteVTEPs.map { try address($0, what) })
    }
    return overlay
  }
}

/// The extension manager's records, as the state file holds them.
struct ExtensionRecords: Codable, Sendable, Equatable {
  var owned: [Owned] = []
  var joined: [Joined] = []
  var reservations: [Reservation] = []

  struct Owned: Codable, Sendable, Equatable {
    var status: ExtensionStatus
    var sessionKey: String
    var used: [SiteUsed]
    var acknowledged: [SiteGeneration]
    var reserved: [String]
  }
  struct SiteUsed: Codable, Sendable, Equatable {
    var site: String
    var used: UsedIdentifiers
  }
  struct SiteGeneration: Codable, Sendable, Equatable {
    var site: String
    var generation: Int
  }
  struct Joined: Codable, Sendable, Equatable {
    var description: ExtensionDescription
    var network: String
    var created: Bool
  }

  /// The records, when they are consistent with being `site`'s.
  func checked(site: String) throws -> ExtensionRecords {
    typealias Problem = StateFileError.Problem
    var ids = Set<ExtensionID>()
    for record in owned {
      guard record.status.owner == site, record.status.id.rawValue.hasPrefix(site + ".") else {
        throw Problem(
          message: "extension \(record.status.id) is listed as owned but its owner is \(record.status.owner)")
      }
      guard ids.insert(record.status.id).inserted else {
        throw Problem(message: "extension \(record.status.id) is listed twice")
      }
    }
    for record in joined {
      guard record.description.owner != site else {
        throw Problem(message: "extension \(record.description.id) is listed as joined but this site owns it")
      }
      guard ids.insert(record.description.id).inserted else {
        throw Problem(message: "extension \(record.description.id) is listed twice")
      }
    }
    return self
  }
}
