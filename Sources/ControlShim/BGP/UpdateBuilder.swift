import Dataplane

/// Packs EVPN NLRI into as few UPDATE messages as fit in 4096 octets each.
enum UpdateBuilder {
  /// UPDATEs announcing `routes` with `attributes` (whose MP_REACH is filled in here).
  static func announcements(
    _ routes: [EVPNNLRI], attributes: PathAttributes, nextHop: [UInt8], context: DecodingContext
  ) -> [[UInt8]] {
    chunked(routes) { chunk in
      var withRoutes = attributes
      withRoutes.mpReach = MultiprotocolReach(nextHop: nextHop, nlri: .evpn(chunk))
      return BGPMessageCodec.encode(.update(UpdateMessage(attributes: withRoutes)), context: context)
    }
  }

  /// UPDATEs withdrawing `routes` (MP_UNREACH only, RFC 4760 section 4).
  static func withdrawals(_ routes: [EVPNNLRI], context: DecodingContext) -> [[UInt8]] {
    chunked(routes) { chunk in
      var attributes = PathAttributes()
      attributes.mpUnreach = .evpn(chunk)
      return BGPMessageCodec.encode(.update(UpdateMessage(attributes: attributes)), context: context)
    }
  }

  /// Greedy split: measures the message without routes, then adds routes while the
  /// encoded size stays within the limit (one octet spare for the extended length).
  private static func chunked(_ routes: [EVPNNLRI], encode: ([EVPNNLRI]) -> [UInt8]) -> [[UInt8]] {
    guard !routes.isEmpty else { return [] }
    let budget = BGPMessage.maximumLength - encode([]).count - 1
    var messages: [[UInt8]] = []
    var chunk: [EVPNNLRI] = []
    var used = 0
    for route in routes {
      let size = route.encodedSize
      if used + size > budget && !chunk.isEmpty {
        messages.append(encode(chunk))
        chunk.removeAll(keepingCapacity: true)
        used = 0
      }
      chunk.append(route)
      used += size
    }
    if !chunk.isEmpty { messages.append(encode(chunk)) }
    return messages
  }
}

extension EVPNNLRI {
  /// Octets on the wire including type and length.
  var encodedSize: Int {
    func ipSize(_ ip: IPAddress?) -> Int {
      switch ip {
      case nil: return 0
      case .v4?: return 4
      case .v6?: return 16
      }
    }
    switch self {
    case .macIP(let route): return 2 + 33 + ipSize(route.ip) + (route.label2 == nil ? 0 : 3)
    case .inclusiveMulticast(let route): return 2 + 13 + ipSize(route.originatingRouter)
    case .unknown(_, let value): return 2 + value.count
    }
  }
}
