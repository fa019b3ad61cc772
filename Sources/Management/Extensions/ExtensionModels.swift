import Dataplane

/// A global extension identifier: the owner site's name and a random suffix
/// ("site-a.3f9c2e71"), unique without coordination because site names are.
public struct ExtensionID: Hashable, Codable, Sendable, CustomStringConvertible, Comparable {
  public var rawValue: String
  public init(rawValue: String) { self.rawValue = rawValue }
  public init(from decoder: any Decoder) throws {
    rawValue = try decoder.singleValueContainer().decode(String.self)
  }
  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(rawValue)
  }
  public var description: String { rawValue }
  public static func < (a: ExtensionID, b: ExtensionID) -> Bool { a.rawValue < b.rawValue }

  static func make(owner: String) -> ExtensionID {
    ExtensionID(rawValue: owner + "." + String(UInt32.random(in: .min ... .max), radix: 16))
  }
}

/// Where a member site stands in an extension.
public enum MemberState: String, Codable, Sendable, CaseIterable {
  /// Not joined yet: identifiers being negotiated, or the site unreachable (retried).
  case pending
  /// The network is bound to the extension's VNI and route target at that site.
  case joined
  /// Being removed (the owner retries until the site confirms).
  case leaving
  /// The site refused (the reason says why); retried when the cause may have gone.
  case failed
}

public struct ExtensionMember: Codable, Sendable, Equatable {
  public var site: String
  public var state: MemberState
  /// Why the member is pending or failed.
  public var reason: String?
  /// The member's VTEP, once it answered.
  public var vtep: String?
}

/// An extension as every member sees it: the owner's view is authoritative.
public struct ExtensionStatus: Codable, Sendable, Equatable {
  public var id: ExtensionID
  public var owner: String
  /// The network's name (at the owner, and at members unless they bound another name).
  public var network: String
  /// Negotiated identifiers; nil until every reachable member agreed.
  public var vni: UInt32?
  public var routeTarget: String?
  public var members: [ExtensionMember]
  /// This site's role: "owner" or "member".
  public var role: String
  /// Increases with every change the owner makes (members apply only newer ones).
  public var generation: Int
  public var deleting: Bool
}

/// What a site uses: VNIs and route targets it cannot take for a new extension.
public struct UsedIdentifiers: Codable, Sendable, Equatable {
  public var vnis: [UInt32]
  public var routeTargets: [String]
  public var vtep: String
}

/// The owner asks a member to hold `vni`/`routeTarget` for an extension.
public struct Reservation: Codable, Sendable, Equatable {
  public var id: ExtensionID
  public var owner: String
  /// The network's name at the member (its current VNI does not count as used).
  public var network: String
  public var vni: UInt32
  public var routeTarget: String
}

public struct ReservationReply: Codable, Sendable, Equatable {
  public var accepted: Bool
  public var vtep: String
  /// When refused: what the member uses (the owner picks again outside it).
  public var used: UsedIdentifiers?
}

/// The owner's full description of an extension, sent to every member on each change.
public struct ExtensionDescription: Codable, Sendable, Equatable {
  public var id: ExtensionID
  public var owner: String
  public var network: String
  public var vni: UInt32
  public var routeTarget: String
  public var generation: Int
  /// Every member (the owner included) and its VTEP.
  public var members: [MemberVTEP]
  /// The TCP MD5 key of the BGP EVPN sessions members bring up with each other for this
  /// extension (sent over the mutual-TLS channel, to members only). Two sites sharing
  /// several extensions use the key of the one with the smallest identifier.
  public var sessionKey: String

  public struct MemberVTEP: Codable, Sendable, Equatable {
    public var site: String
    public var vtep: String
    /// The network's name at this member (the request's name by default).
    public var network: String
    /// True for a member that takes part through BGP EVPN only (`[[site_peer]] evpn_only`
    /// at the owner): the others peer with it using their own `[[site_peer]]` entry of that
    /// name for its key and AS, if they have one, else iBGP without TCP MD5.
    public var evpnOnly: Bool? = nil
  }
}

public struct JoinReply: Codable, Sendable, Equatable {
  public var vtep: String
  public var network: String
}

/// The site-to-site calls the extension protocol makes; the Peering target implements
/// them over the mutual-TLS channel. Every call is idempotent (the owner retries).
public protocol PeerChannel: Sendable {
  /// True when `site` is a configured peer (`[[site_peer]]`).
  func isKnown(_ site: String) -> Bool
  func usedIdentifiers(at site: String) async throws -> UsedIdentifiers
  func reserve(_ reservation: Reservation, at site: String) async throws -> ReservationReply
  func join(_ description: ExtensionDescription, at site: String) async throws -> JoinReply
  func leave(_ id: ExtensionID, owner: String, at site: String) async throws
}
