import Dataplane

/// Packs EVPN NLRI into as few UPDATE messages as fit in 4096 octets each.
enum UpdateBuilder {
  /// UPDATEs announcing `routes` with `attributes` (whose MP_REACH is filled in here).
  static func announcements(
    _ routes: [EVPNNLRI], attributes: PathAttributes, nextHop: [UInt8], context: DecodingContext
  ) -> [[UInt8]] {
    var messages: [[UInt8]] = []
    announcements(routes, attributes: attributes, nextHop: nextHop, context: context) { messages.append($0) }
    return messages
  }

  /// Streaming form: hands each UPDATE to `send` as soon as it is encoded, so that a
  /// large table goes out (and is decoded by the peer) while the rest is still encoded.
  static func announcements(
    _ routes: [EVPNNLRI], attributes: PathAttributes, nextHop: [UInt8], context: DecodingContext,
    send: ([UInt8]) -> Void
  ) {
    chunked(
      routes,
      encode: { chunk in
        var withRoutes = attributes
        withRoutes.mpReach = MultiprotocolReach(nextHop: nextHop, nlri: .evpn(chunk))
        return BGPMessageCodec.encode(.update(UpdateMessage(attributes: withRoutes)), context: context)
      }, send: send)
  }

  /// UPDATEs withdrawing `routes` (MP_UNREACH only, RFC 4760 section 4).
  static func withdrawals(_ routes: [EVPNNLRI], context: DecodingContext) -> [[UInt8]] {
    var messages: [[UInt8]] = []
    chunked(
      routes,
      encode: { chunk in
        var attributes = PathAttributes()
        attributes.mpUnreach = .evpn(chunk)
        return BGPMessageCodec.encode(.update(UpdateMessage(attributes: attributes)), context: context)
      }, send: { messages.append($0) })
    return messages
  }

  /// Greedy split: measures the message without routes, then adds routes while the
  /// encoded size stays within the limit (one octet spare for the extended length).
  private static func chunked(
    _ routes: [EVPNNLRI], encode: ([EVPNNLRI]) -> [UInt8], send: ([UInt8]) -> Void
  ) {
    guard !routes.isEmpty else { return }
    let budget = BGPMessage.maximumLength - encode([]).count - 1
    var chunk: [EVPNNLRI] = []
    var used = 0
    for route in routes {
      let size = route.encodedSize
      if used + size > budget && !chunk.isEmpty {
        send(encode(chunk))
        chunk.removeAll(keepingCapacity: true)
        used = 0
      }
      chunk.append(route)
      used += size
    }
    if !chunk.isEmpty { send(encode(chunk)) }
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
