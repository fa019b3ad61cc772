import Dataplane

/// A 10-octet Ethernet Segment Identifier; all-zero for single-homed VTEPs.
public struct EthernetSegmentID: Hashable, Sendable {
  /// First two octets.
  public let high: UInt16
  /// Last eight octets.
  public let low: UInt64

  public init(high: UInt16, low: UInt64) {
    self.high = high
    self.low = low
  }

  public static let zero = EthernetSegmentID(high: 0, low: 0)
}

/// EVPN route type 2, MAC/IP advertisement (RFC 7432 section 7.2).
public struct MACIPAdvertisementRoute: Hashable, Sendable {
  public var routeDistinguisher: RouteDistinguisher
  public var esi: EthernetSegmentID
  public var ethernetTag: UInt32
  public var mac: MACAddress
  public var ip: IPAddress?
  /// With VXLAN the whole 24 bits are the VNI (RFC 8365 section 5.1.3).
  public var label1: UInt32
  public var label2: UInt32?

  public init(
    routeDistinguisher: RouteDistinguisher, esi: EthernetSegmentID = .zero, ethernetTag: UInt32 = 0,
    mac: MACAddress, ip: IPAddress? = nil, label1: UInt32, label2: UInt32? = nil
  ) {
    self.routeDistinguisher = routeDistinguisher
    self.esi = esi
    self.ethernetTag = ethernetTag
    self.mac = mac
    self.ip = ip
    self.label1 = label1 & 0xFF_FFFF
    self.label2 = label2.map { $0 & 0xFF_FFFF }
  }
}

/// EVPN route type 3, inclusive multicast Ethernet tag (RFC 7432 section 7.3).
public struct InclusiveMulticastRoute: Hashable, Sendable {
  public var routeDistinguisher: RouteDistinguisher
  public var ethernetTag: UInt32
  public var originatingRouter: IPAddress

  public init(routeDistinguisher: RouteDistinguisher, ethernetTag: UInt32 = 0, originatingRouter: IPAddress) {
    self.routeDistinguisher = routeDistinguisher
    self.ethernetTag = ethernetTag
    self.originatingRouter = originatingRouter
  }
}

/// One EVPN NLRI: route type, length, value.
public enum EVPNNLRI: Hashable, Sendable {
  case macIP(MACIPAdvertisementRoute)
  case inclusiveMulticast(InclusiveMulticastRoute)
  /// A route type we do not interpret, carried by length so that the rest of the
  /// UPDATE still decodes (RFC 7432 section 7: unknown types are skipped).
  case unknown(type: UInt8, value: [UInt8])

  static let macIPType: UInt8 = 2
  static let inclusiveMulticastType: UInt8 = 3

  /// Decodes every NLRI in `reader`. A route whose value is inconsistent with its type
  /// makes the whole MP attribute unparseable, which RFC 7606 section 5.3 handles with
  /// a session reset.
  static func decodeAll(_ reader: inout WireReader, into routes: inout [EVPNNLRI]) throws {
    while !reader.isAtEnd {
      do {
        let type = try reader.readUInt8()
        let length = Int(try reader.readUInt8())
        var value = try reader.subReader(length)
        switch type {
        case macIPType: routes.append(.macIP(try decodeMACIP(&value, length: length)))
        case inclusiveMulticastType:
          routes.append(.inclusiveMulticast(try decodeInclusiveMulticast(&value, length: length)))
        default: routes.append(.unknown(type: type, value: value.remainingBytes()))
        }
      } catch is WireReader.Underflow {
        throw BGPWireError(.malformedMultiprotocolNLRI(afi: 25, safi: 70))
      }
    }
  }

  /// Type 2 is the bulk of any EVPN table, so it is parsed with one length check up
  /// front and direct loads instead of a bounds check per field.
  private static func decodeMACIP(_ value: inout WireReader, length: Int) throws -> MACIPAdvertisementRoute {
    // 33 / 37 / 49 octets (no IP, IPv4, IPv6), plus 3 with a second label.
    switch length {
    case 33, 36, 37, 40, 49, 52: break
    default: throw WireReader.Underflow()
    }
    let start = value.position
    guard value.remaining == length, start >= 0, start + length <= value.bytes.count else {
      throw WireReader.Underflow()
    }
    let route: MACIPAdvertisementRoute? = value.bytes.withUnsafeBytes { raw in
      func load64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: start + offset, as: UInt64.self))
      }
      func load32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: start + offset, as: UInt32.self))
      }
      func load24(_ offset: Int) -> UInt32 {
        UInt32(raw[start + offset]) << 16 | UInt32(raw[start + offset + 1]) << 8
          | UInt32(raw[start + offset + 2])
      }
      guard raw[start + 22] == 48 else { return nil }
      let ipLength: Int
      let ip: IPAddress?
      switch raw[start + 29] {
      case 0:
        ipLength = 0
        ip = nil
      case 32:
        ipLength = 4
        ip = length >= 37 ? .v4(load32(30)) : nil
      case 128:
        ipLength = 16
        ip = length >= 49 ? .v6(load64(30), load64(38)) : nil
      default: return nil
      }
      let labels = length - 30 - ipLength
      guard labels == 3 || labels == 6 else { return nil }
      // The 6 MAC octets: load the 8 ending with them and drop the 2 in front.
      let mac = MACAddress(rawValue: load64(21) & 0xFFFF_FFFF_FFFF)
      return MACIPAdvertisementRoute(
        routeDistinguisher: RouteDistinguisher(rawValue: load64(0)),
        esi: EthernetSegmentID(high: UInt16(truncatingIfNeeded: load32(6)), low: load64(10)),
        ethernetTag: load32(18), mac: mac, ip: ip, label1: load24(30 + ipLength),
        label2: labels == 6 ? load24(33 + ipLength) : nil)
    }
    guard let route else { throw WireReader.Underflow() }
    try value.skip(length)
    return route
  }

  private static func decodeInclusiveMulticast(_ value: inout WireReader, length: Int) throws
    -> InclusiveMulticastRoute
  {
    let rd = RouteDistinguisher(rawValue: try value.readUInt64())
    let tag = try value.readUInt32()
    let ipBits = try value.readUInt8()
    let ip: IPAddress
    switch ipBits {
    case 32: ip = .v4(try value.readUInt32())
    case 128: ip = .v6(try value.readUInt64(), try value.readUInt64())
    default: throw WireReader.Underflow()
    }
    guard value.isAtEnd else { throw WireReader.Underflow() }
    return InclusiveMulticastRoute(routeDistinguisher: rd, ethernetTag: tag, originatingRouter: ip)
  }

  func encode(into writer: inout WireWriter) {
    switch self {
    case .macIP(let route):
      // The bulk of any table: laid out in a stack buffer, appended at once.
      withUnsafeTemporaryAllocation(byteCount: 56, alignment: 8) { raw in
        func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
          raw.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
        }
        store(Self.macIPType, at: 0)
        store(route.routeDistinguisher.rawValue, at: 2)
        store(route.esi.high, at: 10)
        store(route.esi.low, at: 12)
        store(route.ethernetTag, at: 20)
        store(UInt8(48), at: 24)
        // MAC in the 6 octets from 25 (the 2 octets after it are overwritten next).
        store(route.mac.rawValue << 16, at: 25)
        var end = 31
        switch route.ip {
        case nil:
          store(UInt8(0), at: 31)
          end = 32
        case .v4(let address)?:
          store(UInt8(32), at: 31)
          store(address, at: 32)
          end = 36
        case .v6(let high, let low)?:
          store(UInt8(128), at: 31)
          store(high, at: 32)
          store(low, at: 40)
          end = 48
        }
        // 24-bit labels: the low 3 octets of the big-endian word.
        store(route.label1 << 8, at: end)
        end += 3
        if let label2 = route.label2 {
          store(label2 << 8, at: end)
          end += 3
        }
        store(UInt8(end - 2), at: 1)
        writer.write(UnsafeRawBufferPointer(rebasing: raw[0..<end]))
      }
    case .inclusiveMulticast(let route):
      writer.write(Self.inclusiveMulticastType)
      writer.withLengthPrefix(octets: 1) { out in
        out.write(route.routeDistinguisher.rawValue)
        out.write(route.ethernetTag)
        writeIP(route.originatingRouter, into: &out)
      }
    case .unknown(let type, let value):
      writer.write(type)
      writer.write(UInt8(truncatingIfNeeded: value.count))
      writer.write(value)
    }
  }
}

/// Writes an IP as bit length + address; nil writes a zero length.
func writeIP(_ ip: IPAddress?, into writer: inout WireWriter) {
  switch ip {
  case nil: writer.write(UInt8(0))
  case .v4(let address)?:
    writer.write(UInt8(32))
    writer.write(address)
  case .v6(let high, let low)?:
    writer.write(UInt8(128))
    writer.write(high)
    writer.write(low)
  }
}
