import ControlShim
import Dataplane

/// The rows and results `SiteService` answers with. Stable shapes: keys are only ever added
/// (the HTTP API serialises them with snake-case keys; `docs/openapi.json` describes them).

/// Which FDB entries a listing returns, and where a page starts.
public struct FDBQuery: Sendable, Equatable {
  public var vni: UInt32?
  public var mac: MACAddress?
  public var origin: FDBOrigin?
  /// Opaque position from the previous page's `nextCursor`; 0 starts at the beginning.
  public var cursor: Int
  public var limit: Int

  public static let defaultLimit = 1000
  public static let maximumLimit = 10_000

  public init(
    vni: UInt32? = nil, mac: MACAddress? = nil, origin: FDBOrigin? = nil, cursor: Int = 0,
    limit: Int = FDBQuery.defaultLimit
  ) {
    self.vni = vni
    self.mac = mac
    self.origin = origin
    self.cursor = cursor
    self.limit = limit
  }
}

/// One page of FDB entries; `nextCursor` is nil on the last page.
public struct FDBPage: Sendable, Equatable, Codable {
  public var entries: [FDBRow]
  public var nextCursor: String?
}

/// One port: counters from the switch, ring statistics from the kernel, link state from sysfs.
public struct PortRow: Sendable, Equatable, Codable {
  /// "underlay" or "access".
  public var role: String
  public var name: String
  /// Bridge-domain members on this interface ("vm1", "trunk0.10").
  public var members: [String]
  /// The kernel's operstate ("up", "down", "lowerlayerdown", ...); nil where it cannot be read.
  public var operState: String?
  public var mtu: Int?
  /// The port type the live switch opened ("af_packet", "af_xdp"); nil without live ports.
  public var io: String? = nil
  /// The underlay on AF_PACKET: whether its VXLAN datagrams end at tc ingress after the
  /// switch's copy (`UnderlayStackBypass`), or also climb the host's stack to the port
  /// holder (no tcx in the kernel, or turned off); nil on access ports and without a
  /// live port.
  public var stackBypass: Bool? = nil
  /// The tap the port's super-frames go through (`[[interface]] offload_tap`): `vxstnlN`
  /// on the underlay (the kernel cuts a VM's super-frame), `vxsvmN` on an access port
  /// (coalesced TCP toward the VM); nil where there is none and without a live port.
  public var offloadTap: String? = nil
  /// Access ports: the largest MTU a VM behind this port may use, the underlay IP MTU
  /// less 50 (IPv4 underlay) or 70 (IPv6) bytes of encapsulation; nil on the underlay.
  public var vmMTU: Int?
  public var rxFrames: UInt64
  public var rxBytes: UInt64
  public var txFrames: UInt64
  public var txBytes: UInt64
  /// AF_PACKET ring statistics summed over the workers; nil without a live port.
  public var ring: RingStatistics?

  /// The wire names are snake case (`vm_mtu`): spelled here so that an acronym in a
  /// property name survives the coders' case conversion both ways.
  enum CodingKeys: String, CodingKey {
    case role, name, members, operState, mtu, io, stackBypass, offloadTap, rxFrames, rxBytes, txFrames,
      txBytes
    case ring
    case vmMTU = "vmMtu"
  }
}

public struct RingStatistics: Sendable, Equatable, Codable {
  public var receivedFrames: UInt64
  public var receivedBlocks: UInt64
  /// Frames the kernel copied only partly into the ring (dropped and counted).
  public var truncatedDrops: UInt64
  /// Frames the kernel dropped because the ring was full (PACKET_STATISTICS).
  public var kernelDrops: UInt64
  public var checksumsCompleted: UInt64
  public var transmitKicks: UInt64
  public var transmitBusy: UInt64
  public var transmitErrors: UInt64
  /// TSO/USO super-frames from VMs cut into wire-sized frames, and the frames they made.
  public var superFrames: UInt64 = 0
  public var segments: UInt64 = 0
  /// Super-frames refused for a malformed or unsupported `virtio_net_hdr`.
  public var offloadDrops: UInt64 = 0
  /// AF_XDP: frames sent from the chunk another port received them in, not copied.
  public var sentInPlace: UInt64 = 0
}

/// How a remote VTEP's underlay next hop is known.
public enum NextHopResolution: String, Sendable, Codable, CaseIterable {
  /// `[[neighbor]]` in the configuration.
  case configured
  /// The kernel's routes and neighbour table (libnl), followed live.
  case kernel
  /// No next-hop MAC yet: frames to this VTEP are dropped (`no_next_hop`) until resolved.
  case unresolved
}

public struct NeighborRow: Sendable, Equatable, Codable {
  public var vtep: String
  /// The gateway, or the VTEP itself when on-link; nil without a route.
  public var nextHop: String?
  public var mac: String?
  public var resolution: NextHopResolution
  /// Kernel NUD state names ("reachable", "stale", ...) for kernel-resolved next hops.
  public var nudState: [String]?
}

/// Where a static MAC or a flood-list entry comes from.
public enum EntryOrigin: String, Sendable, Codable, CaseIterable {
  /// The configuration file.
  case config
  /// Added through the API; kept across reloads until removed through the API.
  case api
  /// A BGP EVPN type-3 route (flood lists only).
  case evpn
  /// Another member of an extension this network belongs to (flood lists only).
  case `extension`
}

public struct StaticMACRow: Sendable, Equatable, Codable {
  public var vni: UInt32
  public var mac: String
  /// Local port member, or nil when the MAC is behind `vtep`.
  public var port: String?
  public var vtep: String?
  public var origin: EntryOrigin
}

public struct FloodRow: Sendable, Equatable, Codable {
  public var vni: UInt32
  public var vtep: String
  public var origin: EntryOrigin
  public init(vni: UInt32, vtep: String, origin: EntryOrigin) {
    self.vni = vni
    self.vtep = vtep
    self.origin = origin
  }
}

/// What a reload changed (`POST /v1/reload`, SIGHUP).
public struct ReloadResult: Sendable, Equatable, Codable {
  public var bridgeDomainsAdded: [UInt32]
  public var bridgeDomainsRemoved: [UInt32]
  public var bridgeDomainsChanged: [UInt32]
  public var staticMacsAdded: Int
  public var staticMacsRemoved: Int
  public var neighborsChanged: Bool
  public var bgpChanged: Bool
  /// True when the new configuration equals the running one.
  public var unchanged: Bool
}

/// A MAC released from its duplicate-MAC freeze.
public struct ReleasedMAC: Sendable, Equatable, Codable {
  public var vni: UInt32
  public var mac: String
  public init(vni: UInt32, mac: String) {
    self.vni = vni
    self.mac = mac
  }
}

/// Which address conflicts `SiteService.conflicts` lists (nil: any).
public struct ConflictQuery: Sendable, Equatable {
  public var vni: UInt32?
  public var kind: AddressConflict.Kind?

  public init(vni: UInt32? = nil, kind: AddressConflict.Kind? = nil) {
    self.vni = vni
    self.kind = kind
  }
}
