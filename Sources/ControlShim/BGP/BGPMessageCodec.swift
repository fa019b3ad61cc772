/// A decoded message with the RFC 7606 findings that did not reset the session.
public struct DecodedMessage: Sendable {
  public var message: BGPMessage
  /// Non-empty: every reachable NLRI of this UPDATE is to be handled as withdrawn.
  public var treatAsWithdraw: [BGPWireError] = []
  public var discardedAttributes: [BGPWireError] = []

  public init(
    message: BGPMessage, treatAsWithdraw: [BGPWireError] = [], discardedAttributes: [BGPWireError] = []
  ) {
    self.message = message
    self.treatAsWithdraw = treatAsWithdraw
    self.discardedAttributes = discardedAttributes
  }
}

/// Encodes and decodes whole BGP messages (header included).
public enum BGPMessageCodec {
  /// Returns the length of the message starting at `bytes[offset...]` once its header
  /// is complete, nil while more bytes are needed. Throws for a bad marker, length or
  /// type (RFC 4271 section 6.1), which always resets the session.
  public static func frameLength(_ bytes: [UInt8], offset: Int = 0) throws -> Int? {
    guard bytes.count - offset >= BGPMessage.headerLength else { return nil }
    for index in offset..<offset + 16 where bytes[index] != 0xFF {
      throw BGPWireError(.connectionNotSynchronized)
    }
    let length = Int(bytes[offset + 16]) << 8 | Int(bytes[offset + 17])
    let type = bytes[offset + 18]
    try checkLength(length, type: type)
    return length
  }

  private static func checkLength(_ length: Int, type: UInt8) throws {
    let lengthError = BGPWireError(
      .badMessageLength(UInt16(truncatingIfNeeded: length)), data: [UInt8(length >> 8), UInt8(length & 0xFF)])
    guard length >= BGPMessage.headerLength, length <= BGPMessage.maximumLength else { throw lengthError }
    switch type {
    case BGPMessage.TypeCode.open: guard length >= 29 else { throw lengthError }
    case BGPMessage.TypeCode.update: guard length >= 23 else { throw lengthError }
    case BGPMessage.TypeCode.notification: guard length >= 21 else { throw lengthError }
    case BGPMessage.TypeCode.keepalive: guard length == 19 else { throw lengthError }
    case BGPMessage.TypeCode.routeRefresh: guard length == 23 else { throw lengthError }
    default: throw BGPWireError(.badMessageType(type), data: [type])
    }
  }

  /// Decodes one complete message. Never traps: any byte string either decodes or
  /// throws a `BGPWireError`.
  public static func decode(_ frame: [UInt8], context: DecodingContext = DecodingContext()) throws
    -> DecodedMessage
  {
    guard let length = try frameLength(frame), length == frame.count else {
      throw BGPWireError(.badMessageLength(UInt16(truncatingIfNeeded: frame.count)))
    }
    var reader = WireReader(frame)
    try reader.skip(BGPMessage.headerLength - 1)
    let type = try reader.readUInt8()
    switch type {
    case BGPMessage.TypeCode.open: return DecodedMessage(message: .open(try decodeOpen(&reader)))
    case BGPMessage.TypeCode.update: return try decodeUpdate(&reader, context: context)
    case BGPMessage.TypeCode.notification:
      let code = try reader.readUInt8()
      let subcode = try reader.readUInt8()
      return DecodedMessage(
        message: .notification(
          NotificationMessage(code: code, subcode: subcode, data: reader.remainingBytes())))
    case BGPMessage.TypeCode.keepalive: return DecodedMessage(message: .keepalive)
    default:
      let afi = try reader.readUInt16()
      let subtype = try reader.readUInt8()
      let safi = try reader.readUInt8()
      return DecodedMessage(
        message: .routeRefresh(
          RouteRefreshMessage(family: AddressFamily(afi: afi, safi: safi), subtype: subtype)))
    }
  }

  private static func decodeOpen(_ reader: inout WireReader) throws -> OpenMessage {
    do {
      let version = try reader.readUInt8()
      guard version == 4 else { throw BGPWireError(.unsupportedVersion(version), data: [0, 4]) }
      let myAS = try reader.readUInt16()
      let holdTime = try reader.readUInt16()
      guard holdTime == 0 || holdTime >= 3 else { throw BGPWireError(.unacceptableHoldTime(holdTime)) }
      let identifier = try reader.readUInt32()
      guard identifier != 0 else { throw BGPWireError(.badBGPIdentifier(identifier)) }
      let parametersLength = Int(try reader.readUInt8())
      guard parametersLength == reader.remaining else { throw BGPWireError(.malformedOpen) }
      var capabilities: [BGPCapability] = []
      while !reader.isAtEnd {
        let parameterType = try reader.readUInt8()
        var parameter = try reader.subReader(Int(try reader.readUInt8()))
        guard parameterType == 2 else { throw BGPWireError(.unsupportedOptionalParameter(parameterType)) }
        while !parameter.isAtEnd {
          let code = try parameter.readUInt8()
          var value = try parameter.subReader(Int(try parameter.readUInt8()))
          capabilities.append(try BGPCapability.decode(code: code, value: &value))
        }
      }
      return OpenMessage(
        version: version, myAS: myAS, holdTime: holdTime, bgpIdentifier: identifier,
        capabilities: capabilities)
    } catch is WireReader.Underflow {
      throw BGPWireError(.malformedOpen)
    }
  }

  private static func decodeUpdate(_ reader: inout WireReader, context: DecodingContext) throws
    -> DecodedMessage
  {
    do {
      let withdrawnLength = Int(try reader.readUInt16())
      guard withdrawnLength + 2 <= reader.remaining else { throw BGPWireError(.malformedAttributeList) }
      let withdrawn = try reader.readBytes(withdrawnLength)
      let attributesLength = Int(try reader.readUInt16())
      guard attributesLength <= reader.remaining else { throw BGPWireError(.malformedAttributeList) }
      var attributeReader = try reader.subReader(attributesLength)
      let nlri = reader.remainingBytes()
      var decoded = try PathAttributes.decode(&attributeReader, context: context)
      let update = UpdateMessage(withdrawnRoutes: withdrawn, attributes: decoded.attributes, nlri: nlri)
      // RFC 7606 section 3d: missing ORIGIN/AS_PATH with routes to install withdraws.
      let hasReachable = !nlri.isEmpty || !(decoded.attributes.mpReach?.nlri.isEmpty ?? true)
      if hasReachable {
        if !decoded.presentTypes.contains(PathAttributes.TypeCode.origin) {
          decoded.treatAsWithdraw.append(
            BGPWireError(
              .missingWellKnownAttribute(PathAttributes.TypeCode.origin), action: .treatAsWithdraw, data: [1])
          )
        }
        if !decoded.presentTypes.contains(PathAttributes.TypeCode.asPath) {
          decoded.treatAsWithdraw.append(
            BGPWireError(
              .missingWellKnownAttribute(PathAttributes.TypeCode.asPath), action: .treatAsWithdraw, data: [2])
          )
        }
        if !nlri.isEmpty && !decoded.presentTypes.contains(PathAttributes.TypeCode.nextHop) {
          decoded.treatAsWithdraw.append(
            BGPWireError(
              .missingWellKnownAttribute(PathAttributes.TypeCode.nextHop), action: .treatAsWithdraw, data: [3]
            ))
        }
      }
      return DecodedMessage(
        message: .update(update), treatAsWithdraw: decoded.treatAsWithdraw,
        discardedAttributes: decoded.discarded)
    } catch is WireReader.Underflow {
      throw BGPWireError(.malformedAttributeList)
    }
  }

  /// Encodes a message with its header. The caller keeps UPDATEs within 4096 octets
  /// (`UpdateBuilder` splits them).
  public static func encode(_ message: BGPMessage, context: DecodingContext = DecodingContext()) -> [UInt8] {
    var writer = WireWriter(capacity: 64)
    writer.write(Array(repeating: UInt8(0xFF), count: 16))
    writer.write(UInt16(0))
    writer.write(message.typeCode)
    switch message {
    case .open(let open):
      writer.write(open.version)
      writer.write(open.myAS)
      writer.write(open.holdTime)
      writer.write(open.bgpIdentifier)
      writer.withLengthPrefix(octets: 1) { parameters in
        // One capabilities parameter holding all capabilities (RFC 5492 allows either).
        guard !open.capabilities.isEmpty else { return }
        parameters.write(UInt8(2))
        parameters.withLengthPrefix(octets: 1) { out in
          for capability in open.capabilities { capability.encode(into: &out) }
        }
      }
    case .update(let update):
      writer.write(UInt16(truncatingIfNeeded: update.withdrawnRoutes.count))
      writer.write(update.withdrawnRoutes)
      writer.withLengthPrefix(octets: 2) { update.attributes.encode(into: &$0, context: context) }
      writer.write(update.nlri)
    case .notification(let notification):
      writer.write(notification.code)
      writer.write(notification.subcode)
      writer.write(notification.data)
    case .keepalive:
      break
    case .routeRefresh(let refresh):
      writer.write(refresh.family.afi)
      writer.write(refresh.subtype)
      writer.write(refresh.family.safi)
    }
    writer.patchUInt16(at: 16, UInt16(truncatingIfNeeded: writer.count))
    return writer.bytes
  }
}
