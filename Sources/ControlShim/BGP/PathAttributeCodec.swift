/// What the receiver must know about the session to decode attributes.
public struct DecodingContext: Sendable {
  /// RFC 6793: AS_PATH carries 4-octet ASNs once both sides announced the capability.
  public var fourOctetAS: Bool

  public init(fourOctetAS: Bool = true) { self.fourOctetAS = fourOctetAS }
}

/// The result of decoding an attribute list: errors that did not reset the session
/// are reported next to what was decoded so the caller can apply them.
public struct DecodedAttributes: Sendable {
  public var attributes = PathAttributes()
  /// Non-empty when the UPDATE's reachable NLRI must be handled as withdrawn.
  public var treatAsWithdraw: [BGPWireError] = []
  /// Attributes dropped on the floor (RFC 7606 attribute discard).
  public var discarded: [BGPWireError] = []
  /// Type codes present, malformed or not: a malformed ORIGIN is not a missing one.
  public var presentTypes: Set<UInt8> = []
}

extension PathAttributes {
  /// Decodes a path attribute list. Throws only for errors whose RFC 7606 action is a
  /// session reset; softer errors are returned in `DecodedAttributes`.
  public static func decode(_ reader: inout WireReader, context: DecodingContext) throws -> DecodedAttributes
  {
    var result = DecodedAttributes()
    var seen = Set<UInt8>()
    attributes: while !reader.isAtEnd {
      let flags: UInt8, type: UInt8, length: Int
      let attributeStart = reader.position
      do {
        flags = try reader.readUInt8()
        type = try reader.readUInt8()
        length = flags & Flag.extendedLength != 0 ? Int(try reader.readUInt16()) : Int(try reader.readUInt8())
      } catch {
        // RFC 7606 section 4: too few octets left for an attribute header. The Total Path
        // Attribute Length still locates the NLRI, so the UPDATE is treated as withdraw.
        result.treatAsWithdraw.append(
          BGPWireError(
            .malformedAttributeList, action: .treatAsWithdraw,
            data: Array(reader.bytes[attributeStart..<reader.end])))
        break attributes
      }
      guard length <= reader.remaining else {
        // RFC 7606 section 4: the last attribute runs past the Total Path Attribute Length;
        // treat-as-withdraw, unless it is MP_REACH/MP_UNREACH, whose NLRI (the routes to
        // withdraw) cannot be read: that stays a session reset (section 5.3).
        let isMultiprotocol = type == TypeCode.mpReach || type == TypeCode.mpUnreach
        let error = BGPWireError(
          .attributeLength(type: type, length: length),
          action: isMultiprotocol ? .sessionReset : .treatAsWithdraw,
          data: Array(reader.bytes[attributeStart..<reader.end]))
        if isMultiprotocol { throw error }
        result.treatAsWithdraw.append(error)
        result.presentTypes.insert(type)
        break attributes
      }
      var value = try reader.subReader(length)
      let rawAttribute = Array(reader.bytes[attributeStart..<reader.position])

      if seen.contains(type) {
        // RFC 7606 section 3g: repeated MP attributes reset, others keep the first.
        if type == TypeCode.mpReach || type == TypeCode.mpUnreach {
          throw BGPWireError(.duplicateMultiprotocolAttribute)
        }
        result.discarded.append(
          BGPWireError(.malformedAttributeList, action: .attributeDiscard, data: rawAttribute))
        continue
      }
      seen.insert(type)
      result.presentTypes.insert(type)

      do {
        try decodeOne(flags: flags, type: type, value: &value, context: context, into: &result.attributes)
      } catch let error as BGPWireError {
        switch error.action {
        case .sessionReset: throw error
        case .treatAsWithdraw: result.treatAsWithdraw.append(error)
        case .attributeDiscard: result.discarded.append(error)
        }
      }
    }
    return result
  }

  /// Checks the Optional/Transitive bits of a recognised attribute (RFC 7606 section 3c:
  /// a conflict makes the attribute malformed, treated as withdraw).
  private static func checkFlags(_ flags: UInt8, type: UInt8, optional: Bool, transitive: Bool) throws {
    let isOptional = flags & Flag.optional != 0
    let isTransitive = flags & Flag.transitive != 0
    if isOptional != optional || (transitive && !isTransitive) || (!optional && !isTransitive) {
      throw BGPWireError(.attributeFlags(type: type, flags: flags), action: .treatAsWithdraw)
    }
  }

  private static func decodeOne(
    flags: UInt8, type: UInt8, value: inout WireReader, context: DecodingContext,
    into attributes: inout PathAttributes
  ) throws {
    let length = value.remaining
    func lengthError(_ action: RFC7606Action) -> BGPWireError {
      BGPWireError(.attributeLength(type: type, length: length), action: action, data: value.remainingBytes())
    }
    switch type {
    case TypeCode.origin:
      try checkFlags(flags, type: type, optional: false, transitive: true)
      guard length == 1 else { throw lengthError(.treatAsWithdraw) }
      let code = try value.readUInt8()
      guard let origin = Origin(rawValue: code) else {
        throw BGPWireError(.invalidOrigin(code), action: .treatAsWithdraw, data: [code])
      }
      attributes.origin = origin

    case TypeCode.asPath, TypeCode.as4Path:
      if type == TypeCode.asPath {
        try checkFlags(flags, type: type, optional: false, transitive: true)
      }
      let asnOctets = type == TypeCode.as4Path || context.fourOctetAS ? 4 : 2
      do {
        let segments = try decodeASPath(&value, asnOctets: asnOctets)
        if type == TypeCode.asPath { attributes.asPath = segments } else { attributes.as4Path = segments }
      } catch {
        // AS4_PATH errors are discarded (RFC 6793 section 6), AS_PATH ones withdraw.
        throw BGPWireError(
          .malformedASPath, action: type == TypeCode.asPath ? .treatAsWithdraw : .attributeDiscard)
      }

    case TypeCode.nextHop:
      try checkFlags(flags, type: type, optional: false, transitive: true)
      guard length == 4 else { throw lengthError(.treatAsWithdraw) }
      attributes.nextHop = try value.readUInt32()

    case TypeCode.med:
      try checkFlags(flags, type: type, optional: true, transitive: false)
      guard length == 4 else { throw lengthError(.treatAsWithdraw) }
      attributes.multiExitDiscriminator = try value.readUInt32()

    case TypeCode.localPref:
      try checkFlags(flags, type: type, optional: false, transitive: true)
      guard length == 4 else { throw lengthError(.treatAsWithdraw) }
      attributes.localPreference = try value.readUInt32()

    case TypeCode.atomicAggregate:
      // RFC 7606 section 7.6: a malformed ATOMIC_AGGREGATE is discarded.
      guard length == 0 else { throw lengthError(.attributeDiscard) }
      attributes.other.append(RawPathAttribute(flags: flags, type: type, value: []))

    case TypeCode.aggregator:
      let expected = context.fourOctetAS ? 8 : 6
      guard length == expected else { throw lengthError(.attributeDiscard) }
      attributes.other.append(RawPathAttribute(flags: flags, type: type, value: value.remainingBytes()))

    case TypeCode.extendedCommunities:
      // RFC 7606 section 7.14: a length that is not a multiple of 8 withdraws.
      guard length % 8 == 0 else { throw lengthError(.treatAsWithdraw) }
      var communities: [ExtendedCommunity] = []
      communities.reserveCapacity(length / 8)
      while !value.isAtEnd { communities.append(ExtendedCommunity(rawValue: try value.readUInt64())) }
      attributes.extendedCommunities = communities

    case TypeCode.pmsiTunnel:
      // flags(1) type(1) label(3) tunnel id; an IR tunnel id must be an address.
      guard length >= 5 else { throw lengthError(.treatAsWithdraw) }
      let tunnelFlags = try value.readUInt8()
      let tunnelType = try value.readUInt8()
      let label = try value.readUInt24()
      let identifier = value.remainingBytes()
      if tunnelType == PMSITunnel.ingressReplication && identifier.count != 4 && identifier.count != 16 {
        throw BGPWireError(.optionalAttribute(type: type), action: .treatAsWithdraw, data: identifier)
      }
      attributes.pmsiTunnel = PMSITunnel(
        flags: tunnelFlags, tunnelType: tunnelType, label: label, tunnelIdentifier: identifier)

    case TypeCode.mpReach:
      attributes.mpReach = try decodeMPReach(&value)

    case TypeCode.mpUnreach:
      attributes.mpUnreach = try decodeMPUnreach(&value)

    default:
      // RFC 4271 section 6.3: an unrecognised well-known attribute is an error;
      // unrecognised optional ones are kept (transitive) or ignored.
      if flags & Flag.optional == 0 {
        throw BGPWireError(.unrecognizedWellKnownAttribute(type), data: value.remainingBytes())
      }
      attributes.other.append(RawPathAttribute(flags: flags, type: type, value: value.remainingBytes()))
    }
  }

  private static func decodeASPath(_ reader: inout WireReader, asnOctets: Int) throws -> [ASPathSegment] {
    var segments: [ASPathSegment] = []
    while !reader.isAtEnd {
      guard let kind = ASPathSegment.Kind(rawValue: try reader.readUInt8()) else {
        throw WireReader.Underflow()
      }
      let count = Int(try reader.readUInt8())
      guard count > 0 else { throw WireReader.Underflow() }
      var asns: [UInt32] = []
      asns.reserveCapacity(count)
      for _ in 0..<count {
        asns.append(asnOctets == 4 ? try reader.readUInt32() : UInt32(try reader.readUInt16()))
      }
      segments.append(ASPathSegment(kind: kind, asns: asns))
    }
    return segments
  }

  private static func decodeFamilyNLRI(_ family: AddressFamily, _ reader: inout WireReader) throws
    -> MultiprotocolNLRI
  {
    switch family {
    case .l2vpnEVPN:
      var routes: [EVPNNLRI] = []
      try EVPNNLRI.decodeAll(&reader, into: &routes)
      return .evpn(routes)
    case .routeTargetConstraint:
      var routes: [RouteTargetMembership] = []
      try RouteTargetMembership.decodeAll(&reader, into: &routes)
      return .routeTargetMembership(routes)
    default:
      return .raw(family: family, bytes: reader.remainingBytes())
    }
  }

  private static func decodeMPReach(_ reader: inout WireReader) throws -> MultiprotocolReach {
    // RFC 7606 section 7.11: MP_REACH that cannot be parsed resets the session.
    do {
      let family = AddressFamily(afi: try reader.readUInt16(), safi: try reader.readUInt8())
      let nextHopLength = Int(try reader.readUInt8())
      let nextHop = try reader.readBytes(nextHopLength)
      _ = try reader.readUInt8()  // reserved (formerly SNPA count)
      if family == .l2vpnEVPN || family == .routeTargetConstraint {
        guard [4, 16, 32].contains(nextHopLength) else { throw BGPWireError(.invalidNextHop) }
      }
      return MultiprotocolReach(nextHop: nextHop, nlri: try decodeFamilyNLRI(family, &reader))
    } catch is WireReader.Underflow {
      throw BGPWireError(.optionalAttribute(type: TypeCode.mpReach))
    }
  }

  private static func decodeMPUnreach(_ reader: inout WireReader) throws -> MultiprotocolNLRI {
    do {
      let family = AddressFamily(afi: try reader.readUInt16(), safi: try reader.readUInt8())
      return try decodeFamilyNLRI(family, &reader)
    } catch is WireReader.Underflow {
      throw BGPWireError(.optionalAttribute(type: TypeCode.mpUnreach))
    }
  }

  // MARK: - Encoding

  /// Encodes the attributes in type-code order, using the extended length flag only
  /// when a value exceeds 255 octets.
  public func encode(into writer: inout WireWriter, context: DecodingContext) {
    func attribute(_ flags: UInt8, _ type: UInt8, _ body: (inout WireWriter) -> Void) {
      var value = WireWriter()
      body(&value)
      let extended = value.count > 255
      writer.write(extended ? flags | Flag.extendedLength : flags)
      writer.write(type)
      if extended {
        writer.write(UInt16(truncatingIfNeeded: value.count))
      } else {
        writer.write(UInt8(value.count))
      }
      writer.write(value.bytes)
    }
    let wellKnown = Flag.transitive
    let optionalTransitive = Flag.optional | Flag.transitive
    if let origin { attribute(wellKnown, TypeCode.origin) { $0.write(origin.rawValue) } }
    if let asPath {
      attribute(wellKnown, TypeCode.asPath) { out in
        for segment in asPath {
          out.write(segment.kind.rawValue)
          out.write(UInt8(truncatingIfNeeded: segment.asns.count))
          for asn in segment.asns {
            if context.fourOctetAS { out.write(asn) } else { out.write(UInt16(asn <= 0xFFFF ? asn : 23456)) }
          }
        }
      }
    }
    if let nextHop { attribute(wellKnown, TypeCode.nextHop) { $0.write(nextHop) } }
    if let multiExitDiscriminator {
      attribute(Flag.optional, TypeCode.med) { $0.write(multiExitDiscriminator) }
    }
    if let localPreference { attribute(wellKnown, TypeCode.localPref) { $0.write(localPreference) } }
    if let mpReach {
      attribute(Flag.optional, TypeCode.mpReach) { out in
        out.write(mpReach.nlri.family.afi)
        out.write(mpReach.nlri.family.safi)
        out.write(UInt8(truncatingIfNeeded: mpReach.nextHop.count))
        out.write(mpReach.nextHop)
        out.write(UInt8(0))
        mpReach.nlri.encodeRoutes(into: &out)
      }
    }
    if let mpUnreach {
      attribute(Flag.optional, TypeCode.mpUnreach) { out in
        out.write(mpUnreach.family.afi)
        out.write(mpUnreach.family.safi)
        mpUnreach.encodeRoutes(into: &out)
      }
    }
    if !extendedCommunities.isEmpty {
      attribute(optionalTransitive, TypeCode.extendedCommunities) { out in
        for community in extendedCommunities { out.write(community.rawValue) }
      }
    }
    if let as4Path {
      attribute(optionalTransitive, TypeCode.as4Path) { out in
        for segment in as4Path {
          out.write(segment.kind.rawValue)
          out.write(UInt8(truncatingIfNeeded: segment.asns.count))
          for asn in segment.asns { out.write(asn) }
        }
      }
    }
    if let pmsiTunnel {
      attribute(optionalTransitive, TypeCode.pmsiTunnel) { out in
        out.write(pmsiTunnel.flags)
        out.write(pmsiTunnel.tunnelType)
        out.writeUInt24(pmsiTunnel.label)
        out.write(pmsiTunnel.tunnelIdentifier)
      }
    }
    for raw in other { attribute(raw.flags & ~Flag.extendedLength, raw.type) { $0.write(raw.value) } }
  }
}

extension MultiprotocolNLRI {
  func encodeRoutes(into writer: inout WireWriter) {
    switch self {
    case .evpn(let routes): for route in routes { route.encode(into: &writer) }
    case .routeTargetMembership(let routes): for route in routes { route.encode(into: &writer) }
    case .raw(_, let bytes): writer.write(bytes)
    }
  }
}
