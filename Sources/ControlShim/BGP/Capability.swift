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
  /// 12 bits, seconds.
  public var restartTime: UInt16
  public var families: [Family]

  public init(restarting: Bool = false, restartTime: UInt16, families: [Family]) {
    self.restarting = restarting
    self.restartTime = restartTime & 0x0FFF
    self.families = families
  }
}

/// A BGP capability (RFC 5492) carried in OPEN optional parameter type 2.
public enum BGPCapability: Hashable, Sendable {
  case multiprotocol(AddressFamily)
  case routeRefresh
  case gracefulRestart(GracefulRestartCapability)
  case fourOctetAS(UInt32)
  case unknown(code: UInt8, value: [UInt8])

  enum Code {
    static let multiprotocol: UInt8 = 1, routeRefresh: UInt8 = 2, gracefulRestart: UInt8 = 64,
      fourOctetAS: UInt8 = 65
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
          restarting: header & 0x8000 != 0, restartTime: header & 0x0FFF, families: families))
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
        out.write((capability.restarting ? 0x8000 : 0) | capability.restartTime & 0x0FFF)
        for entry in capability.families {
          out.write(entry.family.afi)
          out.write(entry.family.safi)
          out.write(UInt8(entry.forwardingPreserved ? 0x80 : 0))
        }
      }
    case .unknown(let code, let value):
      writer.write(code)
      writer.write(UInt8(truncatingIfNeeded: value.count))
      writer.write(value)
    }
  }
}
