import ControlShim
import Dataplane
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import Management
import NIOCore
import NIOPosix

/// The routes of the API over one `SiteService`, for any listener (the Unix control socket,
/// TCP behind a bearer token).
public struct APIRouter: Sendable {
  public let service: SiteService
  public let metrics: MetricsExporter
  /// The inter-site extensions; nil without `[peering]`.
  public let extensions: ExtensionManager?

  public init(service: SiteService, metrics: MetricsExporter, extensions: ExtensionManager? = nil) {
    self.service = service
    self.metrics = metrics
    self.extensions = extensions
  }

  /// A router with every `APIRoute`; `token` (TCP listeners) puts them behind a bearer token.
  public func makeRouter(token: [UInt8]? = nil, limiter: RequestRateLimiter? = nil) -> Router<
    APIRequestContext
  > {
    let router = Router(context: APIRequestContext.self)
    if let limiter { router.add(middleware: RateLimitMiddleware(limiter: limiter)) }
    if let token { router.add(middleware: BearerTokenMiddleware(token: token)) }
    for route in APIRoute.allCases {
      router.on(RouterPath(route.routerPath), method: route.method) { request, context in
        try await handle(route, request, context)
      }
    }
    return router
  }

  func handle(_ route: APIRoute, _ request: Request, _ context: APIRequestContext) async throws -> Response {
    let query = request.uri.queryParameters
    do {
      switch route {
      case .site:
        let config = service.core.config
        return try APICoding.response(
          SiteSummary(
            name: config.site.name, vtep: "\(config.site.vtep)", underlay: config.site.underlay,
            udpPort: config.site.udpPort, mtu: config.site.mtu, bridgeDomains: config.bridgeDomains.count,
            bgp: service.controlPlane != nil, api: "v1"))
      case .fdb:
        var fdbQuery = FDBQuery(vni: try vni(query, "vni"))
        if let text = query.get("mac") {
          guard let mac = MACAddress(text) else { throw APIError.badRequest("not a MAC address: \(text)") }
          fdbQuery.mac = mac
        }
        if let text = query.get("origin") {
          guard let origin = FDBOrigin.allCases.first(where: { $0.name == text }) else {
            throw APIError.badRequest("origin must be one of static, local, decap, control (got \(text))")
          }
          fdbQuery.origin = origin
        }
        if let text = query.get("limit") {
          guard let limit = Int(text), (1...FDBQuery.maximumLimit).contains(limit) else {
            throw APIError.badRequest("limit must be 1 to \(FDBQuery.maximumLimit) (got \(text))")
          }
          fdbQuery.limit = limit
        }
        if let text = query.get("cursor") {
          guard let cursor = Int(text), cursor >= 0 else { throw APIError.badRequest("bad cursor: \(text)") }
          fdbQuery.cursor = cursor
        }
        let page = service.fdb(fdbQuery)
        return try APICoding.response(FDBList(entries: page.entries, nextCursor: page.nextCursor))
      case .arp:
        return try APICoding.response(ARPList(entries: service.arp(vni: try vni(query, "vni"))))
      case .bridgeDomains:
        return try APICoding.response(BridgeDomainList(bridgeDomains: service.bridgeDomains()))
      case .ports:
        return try APICoding.response(PortList(ports: service.ports()))
      case .neighbors:
        return try APICoding.response(NeighborList(neighbors: service.neighbors()))
      case .statistics:
        return try APICoding.response(service.statistics())
      case .bgp:
        return try APICoding.response(try await service.bgp())
      case .duplicateMACs:
        return try APICoding.response(DuplicateMACList(duplicateMacs: try await service.duplicateMACs()))
      case .clearDuplicateMACs:
        let vni = try vni(query, "vni")
        var mac: MACAddress?
        if let text = query.get("mac") {
          guard let parsed = MACAddress(text) else { throw APIError.badRequest("not a MAC address: \(text)") }
          mac = parsed
        }
        let (service, selected) = (self.service, mac)
        let released = try await NIOThreadPool.singleton.runIfActive {
          try service.clearDuplicateMACs(vni: vni, mac: selected)
        }
        return try APICoding.response(ReleasedMACList(cleared: released))
      case .conflicts:
        var conflictQuery = ConflictQuery(vni: try vni(query, "vni"))
        if let text = query.get("kind") {
          guard let kind = AddressConflict.Kind(rawValue: text) else {
            throw APIError.badRequest("kind must be ip or mac (got \(text))")
          }
          conflictQuery.kind = kind
        }
        return try APICoding.response(ConflictList(conflicts: await service.conflicts(conflictQuery)))
      case .staticMACs:
        return try APICoding.response(
          StaticMACList(staticMacs: service.staticMACs(vni: try vni(query, "vni"))))
      case .addStaticMAC:
        let body = try await decode(StaticMACBody.self, request, context)
        guard let mac = MACAddress(body.mac) else {
          throw APIError.badRequest("not a MAC address: \(body.mac)")
        }
        let target: SiteConfig.StaticMAC.Target
        switch (body.port, body.vtep) {
        case (let port?, nil):
          target = .port(try member(port))
        case (nil, let vtep?):
          guard let address = IPAddress(vtep) else { throw APIError.badRequest("not an IP address: \(vtep)") }
          target = .remote(address)
        default:
          throw APIError.badRequest("give exactly one of port and vtep")
        }
        let (row, created) = try service.addStaticMAC(.init(vni: body.vni, mac: mac, target: target))
        return try APICoding.response(row, status: created ? .created : .ok)
      case .removeStaticMAC:
        let vni = try pathVNI(context)
        let text = context.parameters.get("mac") ?? ""
        guard let mac = MACAddress(text) else { throw APIError.badRequest("not a MAC address: \(text)") }
        try service.removeStaticMAC(vni: vni, mac: mac)
        return Response(status: .noContent)
      case .flood:
        return try APICoding.response(FloodList(flood: service.floodEntries(vni: try vni(query, "vni"))))
      case .addFloodEntry:
        let body = try await decode(FloodBody.self, request, context)
        guard let vtep = IPAddress(body.vtep) else {
          throw APIError.badRequest("not an IP address: \(body.vtep)")
        }
        let created = try service.addFloodEntry(vni: body.vni, vtep: vtep)
        // The member as listed: an entry already in the configuration file says so.
        let row =
          service.floodEntries(vni: body.vni).first { $0.vtep == "\(vtep)" }
          ?? FloodRow(vni: body.vni, vtep: "\(vtep)", origin: .api)
        return try APICoding.response(row, status: created ? .created : .ok)
      case .removeFloodEntry:
        let vni = try pathVNI(context)
        let text = context.parameters.get("vtep") ?? ""
        guard let vtep = IPAddress(text) else { throw APIError.badRequest("not an IP address: \(text)") }
        try service.removeFloodEntry(vni: vni, vtep: vtep)
        return Response(status: .noContent)
      case .reload:
        let service = self.service
        let result = try await NIOThreadPool.singleton.runIfActive { try service.reload() }
        return try APICoding.response(result)
      case .networks:
        return try APICoding.response(NetworkList(networks: service.networks()))
      case .createNetwork:
        let body = try await decode(NetworkBody.self, request, context)
        let ports = try (body.ports ?? []).map(member)
        let row = try service.createNetwork(name: body.name, vni: body.vni, ports: ports)
        return try APICoding.response(row, status: .created)
      case .deleteNetwork:
        try service.deleteNetwork(name: context.parameters.get("name") ?? "")
        return Response(status: .noContent)
      case .extensions:
        return try APICoding.response(ExtensionList(extensions: await manager().list()))
      case .createExtension:
        let body = try await decode(ExtensionBody.self, request, context)
        let status = try await manager().create(network: body.network, sites: body.sites)
        return try APICoding.response(status, status: .accepted)
      case .extensionStatus:
        return try APICoding.response(try await manager().status(extensionID(context)))
      case .deleteExtension:
        return try APICoding.response(try await manager().delete(extensionID(context)), status: .accepted)
      case .addExtensionMembers:
        let body = try await decode(MembersBody.self, request, context)
        return try APICoding.response(
          try await manager().addMembers(extensionID(context), sites: body.sites), status: .accepted)
      case .removeExtensionMember:
        let status = try await manager().removeMember(
          extensionID(context), site: context.parameters.get("site") ?? "")
        return try APICoding.response(status, status: .accepted)
      case .metrics:
        let text = await metrics.exposition()
        return Response(
          status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
          body: .init(byteBuffer: ByteBuffer(bytes: text)))
      }
    } catch let error as ManagementError {
      throw APIError(error)
    }
  }

  private func manager() throws -> ExtensionManager {
    guard let extensions else {
      throw APIError(
        .serviceUnavailable, code: "unavailable",
        "no [peering] in the configuration: extensions need the site channel")
    }
    return extensions
  }

  private func extensionID(_ context: APIRequestContext) -> ExtensionID {
    ExtensionID(rawValue: context.parameters.get("id") ?? "")
  }

  private func vni(_ query: FlatDictionary<Substring, Substring>, _ name: String) throws -> UInt32? {
    guard let text = query.get(name) else { return nil }
    guard let value = UInt32(text), value < 1 << 24 else {
      throw APIError.badRequest("\(name) must be a VNI, 0 to 16777215 (got \(text))")
    }
    return value
  }

  private func pathVNI(_ context: APIRequestContext) throws -> UInt32 {
    let text = context.parameters.get("vni") ?? ""
    guard let value = UInt32(text), value < 1 << 24 else {
      throw APIError.badRequest("vni must be 0 to 16777215 (got \(text))")
    }
    return value
  }

  private func member(_ text: String) throws -> SiteConfig.PortMember {
    let parts = text.split(separator: ".", maxSplits: 1)
    if parts.count == 2 {
      guard let vlan = UInt16(parts[1]), (1...4094).contains(vlan) else {
        throw APIError.badRequest("port \(text): VLAN must be 1 to 4094")
      }
      return .init(interface: String(parts[0]), vlan: vlan)
    }
    return .init(interface: text)
  }

  private func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: APIRequestContext)
    async throws
    -> T
  {
    do {
      return try await request.decode(as: type, context: context)
    } catch let error as DecodingError {
      throw APIError.badRequest("malformed JSON body: \(Self.describe(error))")
    } catch let error as HTTPError {
      throw APIError(error.status, code: "invalid_request", error.body ?? "malformed request body")
    } catch is NIOTooManyBytesError {
      // Hummingbird answers this one with an empty 413; the API's errors all have a body.
      throw APIError(
        .contentTooLarge, code: "invalid_request", "request body larger than \(context.maxUploadSize) bytes")
    }
  }

  static func describe(_ error: DecodingError) -> String {
    switch error {
    case .keyNotFound(let key, _): return "missing key \(key.stringValue)"
    case .typeMismatch(_, let context), .valueNotFound(_, let context):
      let path = context.codingPath.map(\.stringValue).joined(separator: ".")
      return "wrong type at \(path.isEmpty ? "top level" : path)"
    case .dataCorrupted(let context):
      return context.debugDescription
    @unknown default:
      return "\(error)"
    }
  }
}
