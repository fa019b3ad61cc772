/// What RFC 7606 tells a receiver to do about a malformed message or attribute.
public enum RFC7606Action: String, Sendable, Codable, Equatable {
  /// Send the NOTIFICATION and tear down this one session (RFC 4271 behaviour).
  case sessionReset
  /// Keep the session; handle every NLRI of the UPDATE as if it had been withdrawn.
  case treatAsWithdraw
  /// Keep the session and the routes; ignore the offending attribute only.
  case attributeDiscard
}

/// A decoding failure, typed by what was wrong; it carries the NOTIFICATION code and
/// subcode RFC 4271 assigns to it and the RFC 7606 action that applies.
public struct BGPWireError: Error, Equatable, Sendable, CustomStringConvertible {
  public enum Kind: Equatable, Sendable {
    // Message header (code 1)
    case connectionNotSynchronized
    case badMessageLength(UInt16)
    case badMessageType(UInt8)
    // OPEN (code 2)
    case unsupportedVersion(UInt8)
    case badPeerAS(UInt32)
    case badBGPIdentifier(UInt32)
    case unsupportedOptionalParameter(UInt8)
    case unacceptableHoldTime(UInt16)
    case malformedOpen
    // UPDATE (code 3)
    case malformedAttributeList
    case unrecognizedWellKnownAttribute(UInt8)
    case missingWellKnownAttribute(UInt8)
    case attributeFlags(type: UInt8, flags: UInt8)
    case attributeLength(type: UInt8, length: Int)
    case invalidOrigin(UInt8)
    case invalidNextHop
    case optionalAttribute(type: UInt8)
    case invalidNetworkField
    case malformedASPath
    case duplicateMultiprotocolAttribute
    case malformedMultiprotocolNLRI(afi: UInt16, safi: UInt8)
    // NOTIFICATION / ROUTE-REFRESH
    case malformedNotification
    case malformedRouteRefresh
  }

  public let kind: Kind
  public let action: RFC7606Action
  /// Bytes for the NOTIFICATION data field (e.g. the offending attribute).
  public let data: [UInt8]

  public init(_ kind: Kind, action: RFC7606Action = .sessionReset, data: [UInt8] = []) {
    self.kind = kind
    self.action = action
    self.data = data
  }

  /// RFC 4271 section 4.5 error code and subcode for the NOTIFICATION we send.
  public var notificationCode: (code: UInt8, subcode: UInt8) {
    switch kind {
    case .connectionNotSynchronized: return (1, 1)
    case .badMessageLength: return (1, 2)
    case .badMessageType: return (1, 3)
    case .unsupportedVersion: return (2, 1)
    case .badPeerAS: return (2, 2)
    case .badBGPIdentifier: return (2, 3)
    case .unsupportedOptionalParameter: return (2, 4)
    case .unacceptableHoldTime: return (2, 6)
    case .malformedOpen: return (2, 0)
    case .malformedAttributeList, .duplicateMultiprotocolAttribute: return (3, 1)
    case .unrecognizedWellKnownAttribute: return (3, 2)
    case .missingWellKnownAttribute: return (3, 3)
    case .attributeFlags: return (3, 4)
    case .attributeLength: return (3, 5)
    case .invalidOrigin: return (3, 6)
    case .invalidNextHop: return (3, 8)
    case .optionalAttribute, .malformedMultiprotocolNLRI: return (3, 9)
    case .invalidNetworkField: return (3, 10)
    case .malformedASPath: return (3, 11)
    case .malformedNotification: return (1, 2)
    case .malformedRouteRefresh: return (7, 1)  // RFC 7313: invalid message length
    }
  }

  public var description: String {
    let (code, subcode) = notificationCode
    return "BGP wire error \(kind) (NOTIFICATION \(code)/\(subcode), RFC 7606 \(action.rawValue))"
  }
}
