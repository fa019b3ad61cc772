import Foundation

/// Answers control-socket requests for one switching instance: `show-fdb`, `show-arp`,
/// `show-bd`, `show-stats`, plus commands other layers register (the control shim adds
/// `show-bgp` and `clear-dup-mac`).
///
/// Thread-safety: `handle` may run on any thread; it reads `SwitchCore` through its
/// thread-safe API. Register extra commands before the server starts.
public final class ControlCommands: @unchecked Sendable {
  public let core: SwitchCore
  private let clock: @Sendable () -> UInt32
  private var extra: [String: @Sendable (ControlRequest) -> Data] = [:]
  /// Details for control-plane FDB entries in `show-fdb` (set before the server starts).
  public var fdbAnnotator: FDBAnnotator?
  /// The BGP peer of an EVPN ARP binding, for `show-arp` (set before the server starts).
  public var arpPeer: (@Sendable (UInt32, MACAddress, IPAddress) -> String?)?
  /// (VNI, MAC) pairs frozen by duplicate-MAC detection, marked in `show-fdb` and
  /// `show-arp` (set before the server starts).
  public var duplicateMACs: (@Sendable () -> Set<DuplicateMAC>)?

  public init(core: SwitchCore, clock: @escaping @Sendable () -> UInt32) {
    self.core = core
    self.clock = clock
  }

  public func register(_ command: String, _ body: @escaping @Sendable (ControlRequest) -> Data) {
    extra[command] = body
  }

  public static func encode<T: Encodable>(_ value: T) -> Data {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys]
    return (try? encoder.encode(value)) ?? ControlServer.error("cannot encode reply")
  }

  public func handle(_ request: ControlRequest) -> Data {
    switch request.command {
    case "show-fdb":
      return Self.encode([
        "entries": markingDuplicates(core.fdbRows(vni: request.vni, now: clock(), annotator: fdbAnnotator))
      ])
    case "show-arp":
      return Self.encode([
        "entries": markingDuplicates(core.arpRows(vni: request.vni, now: clock(), peer: arpPeer))
      ])
    case "show-bd":
      return Self.encode(["bridge_domains": core.bridgeDomainRows()])
    case "show-stats":
      return Self.encode(core.statisticsReport())
    default:
      if let body = extra[request.command] { return body(request) }
      let known = (["show-arp", "show-bd", "show-fdb", "show-stats"] + extra.keys.sorted()).joined(
        separator: ", ")
      return ControlServer.error("unknown command '\(request.command)' (known: \(known))")
    }
  }
}

/// A MAC in a VNI, as `show fdb` prints it ("02:00:00:00:00:01").
/// A `show` row that names a MAC of a VNI and can say the MAC is frozen as a duplicate.
protocol DuplicateMarkable {
  var vni: UInt32 { get }
  var mac: String { get }
  var duplicate: Bool? { get set }
}

extension FDBRow: DuplicateMarkable {}
extension ARPRow: DuplicateMarkable {}

extension ControlCommands {
  /// `rows` with `duplicate` set on those whose MAC the control plane has frozen.
  func markingDuplicates<Row: DuplicateMarkable>(_ rows: [Row]) -> [Row] {
    guard let frozen = duplicateMACs?(), !frozen.isEmpty else { return rows }
    var rows = rows
    for index in rows.indices where frozen.contains(DuplicateMAC(vni: rows[index].vni, mac: rows[index].mac))
    {
      rows[index].duplicate = true
    }
    return rows
  }
}

public struct DuplicateMAC: Hashable, Sendable {
  public var vni: UInt32
  public var mac: String
  public init(vni: UInt32, mac: String) {
    self.vni = vni
    self.mac = mac
  }
}
