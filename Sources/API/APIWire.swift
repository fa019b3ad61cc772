import ControlShim
import Dataplane
import Management

/// Request bodies and list envelopes of the HTTP API (docs/openapi.json describes each).

struct StaticMACBody: Codable, Sendable {
  var vni: UInt32
  var mac: String
  var port: String?
  var vtep: String?
}

struct FloodBody: Codable, Sendable {
  var vni: UInt32
  var vtep: String
}

public struct SiteSummary: Codable, Sendable, Equatable {
  public var name: String
  public var vtep: String
  public var underlay: String
  public var udpPort: UInt16
  public var mtu: Int
  public var bridgeDomains: Int
  public var bgp: Bool
  public var api: String
}

public struct FDBList: Codable, Sendable, Equatable {
  public var entries: [FDBRow]
  public var nextCursor: String?
}
public struct ARPList: Codable, Sendable, Equatable { public var entries: [ARPRow] }
public struct BridgeDomainList: Codable, Sendable, Equatable { public var bridgeDomains: [BridgeDomainRow] }
public struct PortList: Codable, Sendable, Equatable { public var ports: [PortRow] }
public struct NeighborList: Codable, Sendable, Equatable { public var neighbors: [NeighborRow] }
public struct StaticMACList: Codable, Sendable, Equatable { public var staticMacs: [StaticMACRow] }
public struct FloodList: Codable, Sendable, Equatable { public var flood: [FloodRow] }
public struct DuplicateMACList: Codable, Sendable, Equatable {
  public var duplicateMacs: [DuplicateMACStatus]
}
public struct ConflictList: Codable, Sendable, Equatable { public var conflicts: [AddressConflict] }
public struct ReleasedMACList: Codable, Sendable, Equatable { public var cleared: [ReleasedMAC] }

struct NetworkBody: Codable, Sendable {
  var name: String
  var vni: UInt32?
  var ports: [String]?
}

struct ExtensionBody: Codable, Sendable {
  var network: String
  var sites: [String]
}

struct MembersBody: Codable, Sendable {
  var sites: [String]
}

public struct NetworkList: Codable, Sendable, Equatable { public var networks: [NetworkRow] }
public struct ExtensionList: Codable, Sendable, Equatable { public var extensions: [ExtensionStatus] }
