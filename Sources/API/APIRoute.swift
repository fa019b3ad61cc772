import HTTPTypes

/// Every route the API serves, one case each: the router registers them through an
/// exhaustive switch (`APIRouter`), and the OpenAPI document (`docs/openapi.json`) must list
/// exactly these (`OpenAPIAgreementTests`).
public enum APIRoute: CaseIterable, Sendable {
  case site
  case fdb
  case arp
  case bridgeDomains
  case ports
  case neighbors
  case statistics
  case bgp
  case duplicateMACs
  case clearDuplicateMACs
  case conflicts
  case staticMACs
  case addStaticMAC
  case removeStaticMAC
  case flood
  case addFloodEntry
  case removeFloodEntry
  case reload
  case networks
  case createNetwork
  case deleteNetwork
  case extensions
  case createExtension
  case extensionStatus
  case deleteExtension
  case addExtensionMembers
  case removeExtensionMember
  case metrics

  public var method: HTTPRequest.Method {
    switch self {
    case .addStaticMAC, .addFloodEntry, .reload, .createNetwork, .createExtension, .addExtensionMembers:
      return .post
    case .clearDuplicateMACs, .removeStaticMAC, .removeFloodEntry, .deleteNetwork, .deleteExtension,
      .removeExtensionMember:
      return .delete
    default: return .get
    }
  }

  /// The path as OpenAPI writes it (`{name}` for a parameter).
  public var path: String {
    switch self {
    case .site: return "/v1/site"
    case .fdb: return "/v1/fdb"
    case .arp: return "/v1/arp"
    case .bridgeDomains: return "/v1/bridge-domains"
    case .ports: return "/v1/ports"
    case .neighbors: return "/v1/neighbors"
    case .statistics: return "/v1/statistics"
    case .bgp: return "/v1/bgp"
    case .duplicateMACs, .clearDuplicateMACs: return "/v1/duplicate-macs"
    case .conflicts: return "/v1/conflicts"
    case .staticMACs, .addStaticMAC: return "/v1/static-macs"
    case .removeStaticMAC: return "/v1/static-macs/{vni}/{mac}"
    case .flood, .addFloodEntry: return "/v1/flood"
    case .removeFloodEntry: return "/v1/flood/{vni}/{vtep}"
    case .reload: return "/v1/reload"
    case .networks, .createNetwork: return "/v1/networks"
    case .deleteNetwork: return "/v1/networks/{name}"
    case .extensions, .createExtension: return "/v1/extensions"
    case .extensionStatus, .deleteExtension: return "/v1/extensions/{id}"
    case .addExtensionMembers: return "/v1/extensions/{id}/members"
    case .removeExtensionMember: return "/v1/extensions/{id}/members/{site}"
    case .metrics: return "/metrics"
    }
  }

  /// The path as Hummingbird's router writes it (`:name` for a parameter).
  var routerPath: String {
    path.split(separator: "/", omittingEmptySubsequences: false).map { part in
      part.hasPrefix("{") && part.hasSuffix("}") ? ":" + part.dropFirst().dropLast() : String(part)
    }.joined(separator: "/")
  }
}
