import Foundation

/// Answers control-socket requests for one switching instance: `show-fdb`, `show-bd`,
/// `show-stats`, plus commands other layers register (the control shim adds `show-bgp`).
///
/// Thread-safety: `handle` may run on any thread; it reads `SwitchCore` through its
/// thread-safe API. Register extra commands before the server starts.
public final class ControlCommands: @unchecked Sendable {
  public let core: SwitchCore
  private let clock: @Sendable () -> UInt32
  private var extra: [String: @Sendable (ControlRequest) -> Data] = [:]
  /// Details for control-plane FDB entries in `show-fdb` (set before the server starts).
  public var fdbAnnotator: FDBAnnotator?

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
      return Self.encode(["entries": core.fdbRows(vni: request.vni, now: clock(), annotator: fdbAnnotator)])
    case "show-bd":
      return Self.encode(["bridge_domains": core.bridgeDomainRows()])
    case "show-stats":
      return Self.encode(core.statisticsReport())
    default:
      if let body = extra[request.command] { return body(request) }
      let known = (["show-fdb", "show-bd", "show-stats"] + extra.keys.sorted()).joined(separator: ", ")
      return ControlServer.error("unknown command '\(request.command)' (known: \(known))")
    }
  }
}
