/// Graceful restart capability (RFC 4724 section 3).
public struct GracefulRestartCapability: Hashable, Sendable, Codable {
  public struct Family: Hashable, Sendable, Codable {
    public var family: AddressFamily
    /// The F bit: forwarding state for this family survived the restart.
    public var forwardingPreserved: Bool

    public init(family: AddressFamily, forwardingPreserved: Bool) {
      self.family = family
      self.forwardingPreserved = forwardingPreserved
    }
  }

  /// The R bit: the sender has restarted.
  public var restarting: Bool
  /// The N bit (RFC 8538): the sender keeps to graceful restart when a NOTIFICATION other
  /// than a Hard Reset ends the session, as when the connection just drops.
  public var notification: Bool
  /// 12 bits, seconds.
  public var restartTime: UInt16
  public var families: [Family]

  /// The R and N bits of the 16-bit header, over the 12-bit restart time.
  static let restartStateBit: UInt16 = 0x8000
  static let notificationBit: UInt16 = 0x4000
  static let restartTimeMask: UInt16 = 0x0FFF

  public init(restarting: Bool = false, notification: Bool = false, restartTime: UInt16, families: [Family]) {
    self.restarting = restarting
    self.notification = notification
    self.restartTime = restartTime & Self.restartTimeMask
    self.families = families
  }
}

/// Long-lived graceful restart capability (RFC 9494 section 3): per AFI/SAFI, the F bit
/// and how long (24-bit seconds) the receiver may keep the sender's routes as long-lived
/// stale after a session loss.
public struct LongLivedGracefulRestartCapability: Hashable, Sendable, Codable {
  public struct Family: Hashable, Sendable, Codable {
    public var family: AddressFamily
    /// The F bit: forwarding state for this family survived the restart.
    public var forwardingPreserved: Bool
    /// 24 bits, seconds.
    public var staleTime: UInt32

    public init(family: AddressFamily, forwardingPreserved: Bool, staleTime: UInt32) {
      self.family = family
      self.forwardingPreserved = forwardingPreserved
      self.staleTime = min(staleTime, Self.maximumStaleTime)
    }

    public static let maximumStaleTime: UInt32 = 0xFF_FFFF
  }

  public var families: [Family]

  public init(families: [Family]) { self.families = families }

  /// The long-lived stale time the sender announced for `family`; nil when it did not
  /// announce the family.
  public func staleTime(for family: AddressFamily) -> UInt32? {
    families.first { $0.family == family }?.staleTime
  }
}

/// A BGP capability (RFC 5492) carried in OPEN optional parameter type 2.
public enum BGPCapability: Hashable, Sendable {
  case multiprotocol(AddressFamily)
  case routeRefresh
  case gracefulRestart(GracefulRestartCapability)
  case longLivedGracefulRestart(LongLivedGracefulRestartCapability)
  case fourOctetAS(UInt32)
  case unknown(code: UInt8, value: [UInt8])

  enum Code {
    static let multiprotocol: UInt8 = 1, routeRefresh: UInt8 = 2, gracefulRestart: UInt8 = 64,
      fourOctetAS: UInt8 = 65, longLivedGracefulRestart: UInt8 = 71
  }

  static func decode(code: UInt8, value reader: inout WireReader) throws -> BGPCapability {
    switch code {
    case Code.multiprotocol:
      guard reader.remaining == 4 else { throw WireReader.Underflow() }
      let afi = try reader.readUInt16()
      _ = try reader.readUInt8()
      return .multiprotocol(AddressFamily(afi: afi, safi: try reader.readUInt8()))
    case Code.routeRefresh:
      return .routeRefresh
    case Code.fourOctetAS:
      guard reader.remaining == 4 else { throw WireReader.Underflow() }
      return .fourOctetAS(try reader.readUInt32())
    case Code.gracefulRestart:
      guard reader.remaining >= 2, (reader.remaining - 2) % 4 == 0 else { throw WireReader.Underflow() }
      let header = try reader.readUInt16()
      var families: [GracefulRestartCapability.Family] = []
      while !reader.isAtEnd {
        let family = AddressFamily(afi: try reader.readUInt16(), safi: try reader.readUInt8())
        let flags = try reader.readUInt8()
        families.append(.init(family: family, forwardingPreserved: flags & 0x80 != 0))
      }
      return .gracefulRestart(
        GracefulRestartCapability(
          restarting: header & GracefulRestartCapability.restartStateBit != 0,
          notification: header & GracefulRestartCapability.notificationBit != 0,
          restartTime: header & GracefulRestartCapability.restartTimeMask, families: families))
    case Code.longLivedGracefulRestart:
      // 7 octets per family; a length that is not a multiple of 7 makes the OPEN malformed.
      guard reader.remaining % 7 == 0 else { throw WireReader.Underflow() }
      var families: [LongLivedGracefulRestartCapability.Family] = []
      while !reader.isAtEnd {
        let family = AddressFamily(afi: try reader.readUInt16(), safi: try reader.readUInt8())
        let flags = try reader.readUInt8()
        families.append(
          .init(family: family, forwardingPreserved: flags & 0x80 != 0, staleTime: try reader.readUInt24()))
      }
      return .longLivedGracefulRestart(LongLivedGracefulRestartCapability(families: families))
    default:
      return .unknown(code: code, value: reader.remainingBytes())
    }
  }

  func encode(into writer: inout WireWriter) {
    switch self {
    case .multiprotocol(let family):
      writer.write(Code.multiprotocol)
      writer.write(UInt8(4))
      writer.write(family.afi)
      writer.write(UInt8(0))
      writer.write(family.safi)
    case .routeRefresh:
      writer.write(Code.routeRefresh)
      writer.write(UInt8(0))
    case .fourOctetAS(let asn):
      writer.write(Code.fourOctetAS)
      writer.write(UInt8(4))
      writer.write(asn)
    case .gracefulRestart(let capability):
      writer.write(Code.gracefulRestart)
      writer.withLengthPrefix(octets: 1) { out in
        out.write(
          (capability.restarting ? GracefulRestartCapability.restartStateBit : 0)
            | (capability.notification ? GracefulRestartCapability.notificationBit : 0)
            | capability.restartTime & GracefulRestartCapability.restartTimeMask)
        for entry in capability.families {
          out.write(entry.family.afi)
          out.write(entry.family.safi)
          out.write(UInt8(entry.forwardingPreserved ? 0x80 : 0))
        }
      }
    case .longLivedGracefulRestart(let capability):
      writer.write(Code.longLivedGracefulRestart)
      writer.withLengthPrefix(octets: 1) { out in
        for entry in capability.families {
          out.write(entry.family.afi)
          out.write(entry.family.safi)
          out.write(UInt8(entry.forwardingPreserved ? 0x80 : 0))
          out.writeUInt24(entry.staleTime)
        }
      }
    case .unknown(let code, let value):
      writer.write(code)
      writer.write(UInt8(truncatingIfNeeded: value.count))
      writer.write(value)
    }
  }
}
