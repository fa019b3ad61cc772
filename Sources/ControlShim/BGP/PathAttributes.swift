import Dataplane

public enum Origin: UInt8, Sendable, Codable { case igp = 0, egp = 1, incomplete = 2 }

/// One AS_PATH segment with 4-octet AS numbers (RFC 6793).
public struct ASPathSegment: Hashable, Sendable {
  public enum Kind: UInt8, Sendable { case set = 1, sequence = 2, confedSequence = 3, confedSet = 4 }
  public var kind: Kind
  public var asns: [UInt32]

  public init(kind: Kind, asns: [UInt32]) {
    self.kind = kind
    self.asns = asns
  }
}

/// PMSI tunnel attribute (RFC 6514 section 5); EVPN uses ingress replication with the
/// VNI as label and the VTEP as tunnel identifier (RFC 8365 section 5.1.3).
public struct PMSITunnel: Hashable, Sendable {
  public static let ingressReplication: UInt8 = 6
  public var flags: UInt8
  public var tunnelType: UInt8
  /// 24 bits; with VXLAN the VNI.
  public var label: UInt32
  public var tunnelIdentifier: [UInt8]

  public init(flags: UInt8 = 0, tunnelType: UInt8, label: UInt32, tunnelIdentifier: [UInt8]) {
    self.flags = flags
    self.tunnelType = tunnelType
    self.label = label & 0xFF_FFFF
    self.tunnelIdentifier = tunnelIdentifier
  }

  public static func ingressReplication(vni: UInt32, vtep: IPAddress) -> PMSITunnel {
    PMSITunnel(tunnelType: ingressReplication, label: vni, tunnelIdentifier: vtep.bytes)
  }

  public var tunnelEndpoint: IPAddress? { tunnelIdentifier.withUnsafeBytes { IPAddress(bytes: $0) } }
}

/// MP_REACH_NLRI / MP_UNREACH_NLRI contents by family; families we do not interpret
/// keep their raw NLRI bytes.
public enum MultiprotocolNLRI: Hashable, Sendable {
  case evpn([EVPNNLRI])
  case routeTargetMembership([RouteTargetMembership])
  case raw(family: AddressFamily, bytes: [UInt8])

  public var family: AddressFamily {
    switch self {
    case .evpn: return .l2vpnEVPN
    case .routeTargetMembership: return .routeTargetConstraint
    case .raw(let family, _): return family
    }
  }

  public var isEmpty: Bool {
    switch self {
    case .evpn(let routes): return routes.isEmpty
    case .routeTargetMembership(let routes): return routes.isEmpty
    case .raw(_, let bytes): return bytes.isEmpty
    }
  }
}

public struct MultiprotocolReach: Hashable, Sendable {
  /// 4 or 16 octets (or 32 for IPv6 global + link-local); EVPN carries the VTEP here.
  public var nextHop: [UInt8]
  public var nlri: MultiprotocolNLRI

  public init(nextHop: [UInt8], nlri: MultiprotocolNLRI) {
    self.nextHop = nextHop
    self.nlri = nlri
  }

  public var nextHopAddress: IPAddress? {
    // 32 octets = IPv6 global + link-local; the global one is the tunnel endpoint.
    let length = nextHop.count == 32 ? 16 : nextHop.count
    return nextHop.withUnsafeBytes { IPAddress(bytes: UnsafeRawBufferPointer(rebasing: $0.prefix(length))) }
  }
}

/// An attribute we do not interpret, kept so that optional transitive ones could be
/// passed on and so that round trips are exact.
public struct RawPathAttribute: Hashable, Sendable {
  public var flags: UInt8
  public var type: UInt8
  public var value: [UInt8]
}

/// The path attributes of an UPDATE (RFC 4271 section 5, RFC 4760, RFC 4360, RFC 6514).
public struct PathAttributes: Hashable, Sendable {
  public var origin: Origin?
  public var asPath: [ASPathSegment]?
  /// RFC 6793 AS4_PATH, only meaningful on 2-octet sessions.
  public var as4Path: [ASPathSegment]?
  public var nextHop: UInt32?
  public var multiExitDiscriminator: UInt32?
  public var localPreference: UInt32?
  public var extendedCommunities: [ExtendedCommunity] = []
  public var pmsiTunnel: PMSITunnel?
  public var mpReach: MultiprotocolReach?
  public var mpUnreach: MultiprotocolNLRI?
  public var other: [RawPathAttribute] = []

  public init() {}

  public var routeTargets: [RouteTarget] {
    extendedCommunities.compactMap {
      if case .routeTarget(let target) = $0.kind { return target } else { return nil }
    }
  }

  public var macMobility: (sticky: Bool, sequence: UInt32)? {
    for community in extendedCommunities {
      if case .macMobility(let sticky, let sequence) = community.kind { return (sticky, sequence) }
    }
    return nil
  }

  /// RFC 1997 COMMUNITIES (type 8), which are kept undecoded in `other`; a value whose
  /// length is not a multiple of 4 reads as none.
  public var communities: [UInt32] {
    guard let raw = other.first(where: { $0.type == TypeCode.communities }), raw.value.count % 4 == 0 else {
      return []
    }
    return stride(from: 0, to: raw.value.count, by: 4).map { offset in
      raw.value[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }
  }

  /// RFC 9494 well-known communities.
  public static let longLivedStaleCommunity: UInt32 = 0xFFFF_0006
  public static let noLongLivedCommunity: UInt32 = 0xFFFF_0007

  /// All ASNs on the path, for loop detection.
  public var allASNs: [UInt32] { (asPath ?? []).flatMap(\.asns) }

  enum TypeCode {
    static let origin: UInt8 = 1, asPath: UInt8 = 2, nextHop: UInt8 = 3, med: UInt8 = 4
    static let localPref: UInt8 = 5, atomicAggregate: UInt8 = 6, aggregator: UInt8 = 7, communities: UInt8 = 8
    static let mpReach: UInt8 = 14, mpUnreach: UInt8 = 15, extendedCommunities: UInt8 = 16
    static let as4Path: UInt8 = 17, as4Aggregator: UInt8 = 18, pmsiTunnel: UInt8 = 22
  }

  enum Flag {
    static let optional: UInt8 = 0x80, transitive: UInt8 = 0x40, partial: UInt8 = 0x20,
      extendedLength: UInt8 = 0x10
  }
}
