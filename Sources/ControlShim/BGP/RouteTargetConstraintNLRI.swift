/// A Route Target membership NLRI (RFC 4684 section 4): prefix length in bits (0..96)
/// over origin AS (4 octets) + route target (8 octets). Length 0 is the default route
/// ("send me everything"); 96 names one exact RT.
public struct RouteTargetMembership: Hashable, Sendable {
  public var originAS: UInt32
  public var routeTarget: RouteTarget?
  public var prefixLength: UInt8

  public init(originAS: UInt32, routeTarget: RouteTarget) {
    self.originAS = originAS
    self.routeTarget = routeTarget
    self.prefixLength = 96
  }

  public static let wildcard = RouteTargetMembership(prefixLength: 0)

  private init(prefixLength: UInt8) {
    originAS = 0
    routeTarget = nil
    self.prefixLength = prefixLength
  }

  init(prefixLength: UInt8, originAS: UInt32, routeTargetBits: UInt64) {
    self.prefixLength = prefixLength
    self.originAS = originAS
    self.routeTarget = prefixLength > 32 ? RouteTarget(rawValue: routeTargetBits) : nil
  }

  /// True when routes carrying `target` should go to the speaker that sent this NLRI.
  public func matches(_ target: RouteTarget) -> Bool {
    guard prefixLength > 32 else { return true }
    let bits = Int(prefixLength) - 32
    let mask: UInt64 = bits >= 64 ? ~0 : ~(~0 >> UInt64(bits))
    return (routeTarget?.rawValue ?? 0) & mask == target.rawValue & mask
  }

  static func decodeAll(_ reader: inout WireReader, into routes: inout [RouteTargetMembership]) throws {
    while !reader.isAtEnd {
      do {
        let bits = try reader.readUInt8()
        guard bits <= 96, bits == 0 || bits >= 32 else { throw WireReader.Underflow() }
        let octets = (Int(bits) + 7) / 8
        var value: [UInt8] = try reader.readBytes(octets)
        value += repeatElement(0, count: 12 - octets)
        var padded = WireReader(value)
        let origin = try padded.readUInt32()
        let target = try padded.readUInt64()
        routes.append(RouteTargetMembership(prefixLength: bits, originAS: origin, routeTargetBits: target))
      } catch is WireReader.Underflow {
        throw BGPWireError(.malformedMultiprotocolNLRI(afi: 1, safi: 132))
      }
    }
  }

  func encode(into writer: inout WireWriter) {
    writer.write(prefixLength)
    var full = WireWriter(capacity: 12)
    full.write(originAS)
    full.write(routeTarget?.rawValue ?? 0)
    writer.write(Array(full.bytes.prefix((Int(prefixLength) + 7) / 8)))
  }
}
