/// The whole configuration of one site, as read from its TOML file.
///
/// Values are plain and validated; `SiteConfig.load(path:)` / `SiteConfig.parse(text:file:)`
/// (ConfigDecoder.swift) build it and report every problem as `FILE:LINE: message`.
public struct SiteConfig: Sendable, Equatable {
  public var site: Site
  /// `[api]`; nil (the default) when the file has none.
  public var api: API? = nil
  public var neighbors: [Neighbor] = []
  /// `[[interface]]`: per-interface settings; interfaces not listed keep the defaults.
  public var interfaces: [InterfaceSettings] = []
  public var bridgeDomains: [BridgeDomain] = []
  public var staticMACs: [StaticMAC] = []
  public var bgp: BGP? = nil
  /// `[peering]`: the site-to-site channel; nil (the default) when the file has none.
  public var peering: Peering? = nil
  /// `[[site_peer]]`: the other sites this one talks to over the channel (needs `[peering]`).
  public var sitePeers: [SitePeer] = []
  /// `[[site_peer]]` with `evpn_only = true`: sites that take part in extensions through
  /// BGP EVPN only (FRR, GoBGP): no site channel, so their VNI and route target are
  /// configured there by their operator.
  public var evpnSites: [EVPNSite] = []

  public init(site: Site) { self.site = site }

  /// `[site]`
  public struct Site: Sendable, Equatable {
    public var name: String
    /// Local VTEP address (outer source address, and the address decap accepts).
    public var vtep: IPAddress
    /// Underlay interface name.
    public var underlay: String
    public var udpPort: UInt16 = 4789
    /// Source MAC of the underlay; read from the interface when nil and it exists.
    public var underlayMAC: MACAddress? = nil
    /// Underlay IP MTU; VXLAN frames whose outer IP packet would exceed it are dropped.
    public var mtu: Int = 1500
    /// `udp_source_ports = [49152, 65535]`
    public var udpSourcePorts: ClosedRange<UInt16> = 49152...65535
    /// Compute the outer UDP checksum over IPv4 (always computed over IPv6).
    public var udpChecksumIPv4: Bool = false
    public var ttl: UInt8 = 64
    /// `dscp = 0..63` or `dscp = "inherit"`.
    public var dscp: DSCP = .fixed(0)
    /// Seconds; `aging_time`.
    public var agingTime: Int = 300
    /// Maximum number of learned MACs over all bridge domains (`learn_limit`).
    public var learnLimit: Int = 1_000_000
    /// FDB capacity in entries (`fdb_capacity`); sized once at start.
    public var fdbCapacity: Int = 1 << 20
    /// Packet worker threads (`workers`), and the CPUs they are pinned to (`cpus`).
    public var workers: Int = 1
    public var cpus: [Int] = []
    /// `control_socket`; default `/run/vxswitch/NAME.sock`.
    public var controlSocket: String
    /// `log_level`: the least severe messages logged.
    public var logLevel: LogLevel = .info
    /// `accept_vteps`.
    public var acceptedVTEPs: AcceptedVTEPs = .any
    /// `state_dir`; nil: `/var/lib/vxswitch` with the default control socket, else the
    /// control socket's directory.
    public var stateDirectory: String? = nil
    /// Where the runtime state (API networks, static MACs and flood entries, extensions)
    /// is kept across restarts: `STATE_DIR/NAME.state.json`.
    public var stateFile: String {
      var directory = stateDirectory ?? ""
      if stateDirectory == nil {
        if controlSocket == "/run/vxswitch/\(name).sock" {
          directory = "/var/lib/vxswitch"
        } else if let slash = controlSocket.lastIndex(of: "/") {
          directory = slash == controlSocket.startIndex ? "/" : String(controlSocket[..<slash])
        }
      }
      if directory.isEmpty { directory = "." }
      return (directory.hasSuffix("/") ? directory : directory + "/") + name + ".state.json"
    }
    public init(name: String, vtep: IPAddress, underlay: String) {
      self.name = name
      self.vtep = vtep
      self.underlay = underlay
      self.controlSocket = "/run/vxswitch/\(name).sock"
    }
  }

  public enum DSCP: Sendable, Equatable {
    case fixed(UInt8)
    case inherit
  }

  /// `log_level`: swift-log's levels, least severe first; the raw value is the word written in
  /// the file.
  /// `accept_vteps`: which source VTEPs VXLAN is taken from.
  public enum AcceptedVTEPs: String, Sendable, Codable, CaseIterable {
    /// Any source (decapsulated frames may teach the switch new VTEPs).
    case any
    /// Only VTEPs the site knows: flood-list members (configured or added by the control
    /// plane), static MAC targets and VTEPs of BGP EVPN routes; others are dropped as
    /// `unknown_vtep`.
    case known
  }

  public enum LogLevel: String, Sendable, Codable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
  }

  /// `[api]`: where the API listens, and the file holding the token its clients present.
  public struct API: Sendable, Equatable {
    /// `listen = "ADDR:PORT"`: an IPv4 address, or an IPv6 address in brackets.
    public var listenHost: IPAddress
    public var listenPort: UInt16
    /// `token_file`
    public var tokenFile: String
    /// `rate_limit`: requests a second from one client address, twice that at once; over
    /// it, 429. 0: no limit.
    public var rateLimit: Int = 50
    public init(listenHost: IPAddress, listenPort: UInt16, tokenFile: String) {
      self.listenHost = listenHost
      self.listenPort = listenPort
      self.tokenFile = tokenFile
    }
  }

  /// `[peering]`: where the site-to-site channel listens, and the TLS files of its mutual
  /// authentication (PEM: this site's certificate and key, the CA that signs every site's).
  public struct Peering: Sendable, Equatable {
    /// `listen = "ADDR:PORT"`: an IPv4 address, or an IPv6 address in brackets.
    public var listenHost: IPAddress
    public var listenPort: UInt16
    /// `tls_cert`, `tls_key`, `tls_ca`
    public var tlsCert: String
    public var tlsKey: String
    public var tlsCA: String
    /// The extension speaker's `stale_time` and `long_lived_stale_time` at a site without
    /// `[bgp]` (with `[bgp]`, its keys apply).
    public var staleTime: Int = 300
    public var longLivedStaleTime: Int = SiteConfig.defaultLongLivedStaleTime
    /// The extension speaker's `restart_time` and `selection_deferral_time` at a site
    /// without `[bgp]`.
    public var restartTime: Int = SiteConfig.defaultRestartTime
    public var selectionDeferralTime: Int = SiteConfig.defaultSelectionDeferralTime
    /// The hold time offered on the extension speaker's sessions (`hold_time`), at a site
    /// without `[bgp]`.
    public var holdTime: Int = 90
    /// `rate_limit`: requests a second from one site peer, twice that at once; over it,
    /// 429 (the peer's background retries try again). 0: no limit.
    public var rateLimit: Int = 50
    public init(listenHost: IPAddress, listenPort: UInt16, tlsCert: String, tlsKey: String, tlsCA: String) {
      self.listenHost = listenHost
      self.listenPort = listenPort
      self.tlsCert = tlsCert
      self.tlsKey = tlsKey
      self.tlsCA = tlsCA
    }
  }

  /// `[[site_peer]]`: another site, by the name its certificate carries, and where its
  /// channel listens (`url = "https://HOST:PORT"`).
  public struct SitePeer: Sendable, Equatable {
    public var name: String
    /// An IPv4 address, an IPv6 address (without brackets) or a DNS name.
    public var host: String
    public var port: Int
    public init(name: String, host: String, port: Int) {
      self.name = name
      self.host = host
      self.port = port
    }
  }

  /// `[[site_peer]]` with `evpn_only = true`: a BGP EVPN speaker that is an extension
  /// member without the site channel.
  public struct EVPNSite: Sendable, Equatable {
    public var name: String
    /// Its VTEP, and the address of its BGP speaker.
    public var vtep: IPAddress
    /// Its AS number; nil: this site's (iBGP).
    public var asn: UInt32?
    /// TCP MD5 key of the BGP session with it.
    public var password: String?
    public init(name: String, vtep: IPAddress, asn: UInt32? = nil, password: String? = nil) {
      self.name = name
      self.vtep = vtep
      self.asn = asn
      self.password = password
    }
  }

  /// `[[neighbor]]`: a static underlay next hop.
  public struct InterfaceSettings: Sendable, Equatable {
    public var name: String
    /// The port type the switch opens on this interface.
    public var io: PortIO = .afPacket
    /// `offload_tap`: whether an AF_PACKET port on this interface hands super-frames to
    /// the kernel through a tap (the underlay's UDP-tunnel cut, a VM's coalesced TCP);
    /// without it the switch sends them through the port's ring.
    public var offloadTap = true
    public init(name: String, io: PortIO = .afPacket, offloadTap: Bool = true) {
      self.name = name
      self.io = io
      self.offloadTap = offloadTap
    }
  }

  /// The port type configured for `interface` (`af_packet` unless `[[interface]]` says).
  public func io(of interface: String) -> PortIO {
    interfaces.first { $0.name == interface }?.io ?? .afPacket
  }

  /// Whether `interface` may have an offload tap (yes unless `[[interface]]` says not).
  public func offloadTap(of interface: String) -> Bool {
    interfaces.first { $0.name == interface }?.offloadTap ?? true
  }

  public struct Neighbor: Sendable, Equatable {
    public var ip: IPAddress
    public var mac: MACAddress
    public init(ip: IPAddress, mac: MACAddress) {
      self.ip = ip
      self.mac = mac
    }
  }

  /// An access port member: an interface, untagged, or one VLAN on a trunk (`"trunk0.10"`).
  public struct PortMember: Sendable, Hashable, CustomStringConvertible {
    public var interface: String
    public var vlan: UInt16?
    public init(interface: String, vlan: UInt16? = nil) {
      self.interface = interface
      self.vlan = vlan
    }
    public var description: String { vlan.map { "\(interface).\($0)" } ?? interface }
  }

  /// `[[bridge_domain]]`
  public struct BridgeDomain: Sendable, Equatable {
    public var vni: UInt32
    /// `name`: optional, unique among the bridge domains of the file.
    public var name: String? = nil
    public var ports: [PortMember] = []
    /// Static head-end replication list.
    public var flood: [IPAddress] = []
    public var learning: Bool = true
    /// Maximum learned MACs in this bridge domain (`learn_limit`).
    public var learnLimit: Int? = nil
    /// Answer ARP requests for known IPs locally (`arp_suppression`).
    public var arpSuppression: Bool = false
    /// BGP EVPN overrides (`rd`, `import_rt`, `export_rt`), as written: "A.B.C.D:N" or "ASN:N".
    public var rd: String? = nil
    public var importRTs: [String] = []
    public var exportRTs: [String] = []
    public init(vni: UInt32) { self.vni = vni }
  }

  /// `[[static_mac]]`
  public struct StaticMAC: Sendable, Hashable {
    public enum Target: Sendable, Hashable {
      case remote(IPAddress)
      case port(PortMember)
    }
    public var vni: UInt32
    public var mac: MACAddress
    public var target: Target
    public init(vni: UInt32, mac: MACAddress, target: Target) {
      self.vni = vni
      self.mac = mac
      self.target = target
    }
  }

  /// `[bgp]` with `[[bgp.peer]]`.
  public struct BGP: Sendable, Equatable {
    public var asn: UInt32
    public var routerID: IPAddress
    /// Local TCP port to listen on for passive peers (`listen_port`; 0 = do not listen).
    public var listenPort: UInt16 = 179
    /// Seconds to keep a lost peer's routes as stale (`stale_time`): the graceful-restart
    /// phase.
    public var staleTime: Int = 300
    /// Seconds of the long-lived phase that follows (RFC 9494, `long_lived_stale_time`;
    /// 0: off), with peers that announce long-lived graceful restart too.
    public var longLivedStaleTime: Int = SiteConfig.defaultLongLivedStaleTime
    /// The restart time announced in the graceful-restart capability (`restart_time`, RFC
    /// 4724: how long peers keep this site's routes while it restarts; a start within it
    /// of the last stop restores the saved state), and how long a restarted site holds
    /// received routes back waiting for its peers' End-of-RIB (`selection_deferral_time`).
    public var restartTime: Int = SiteConfig.defaultRestartTime
    public var selectionDeferralTime: Int = SiteConfig.defaultSelectionDeferralTime
    /// Duplicate-MAC detection (RFC 7432 section 15.1): a MAC that moves
    /// `dupMACMaxMoves` times within `dupMACTime` seconds is frozen (`dup_mac_max_moves`,
    /// `dup_mac_time`; FRR's defaults 5 and 180).
    public var dupMACMaxMoves: Int = 5
    public var dupMACTime: Int = 180
    /// Seconds a frozen MAC stays frozen before it is released by itself
    /// (`dup_mac_freeze`); 0: until `vxswitch clear dup-mac`.
    public var dupMACFreeze: Int = 0
    public var peers: [Peer] = []
    public init(asn: UInt32, routerID: IPAddress) {
      self.asn = asn
      self.routerID = routerID
    }
    public struct Peer: Sendable, Equatable {
      public var address: IPAddress
      public var asn: UInt32
      public var port: UInt16 = 179
      public var holdTime: Int = 90
      public var password: String? = nil
      /// Connect actively (default) or only accept (`passive = true`).
      public var passive: Bool = false
      /// Routes accepted from this peer at most (`max_routes`).
      public var maxRoutes: Int = 1_000_000
      public init(address: IPAddress, asn: UInt32) {
        self.address = address
        self.asn = asn
      }
    }
  }
}

extension SiteConfig {
  /// One day: a partition of up to a day keeps forwarding to the remote VMs last known;
  /// after that, what the other sites had is likely out of date.
  public static let defaultLongLivedStaleTime = 86400
  /// RFC 4724's restart time is 12 bits; 120 s is what FRR and GoBGP announce.
  public static let defaultRestartTime = 120
  public static let defaultSelectionDeferralTime = 60

  /// Whether `name` may be a site's name (`[site] name`, `[[site_peer]] name`).
  public static func isValidSiteName(_ name: String) -> Bool { ConfigSyntax.isValidSiteName(name) }

  /// What `isValidSiteName` accepts, for messages.
  public static let siteNameRule = ConfigSyntax.nameRule(maximumLength: 32)

  /// Whether a site of this name can use the site-to-site channel: a valid site name that is
  /// also a DNS host name (no `_`, labels not starting or ending with `-`, not an IP
  /// address), since certificates carry it as a DNS subject alternative name and TLS host
  /// name verification accepts nothing else.
  public static func isValidPeerSiteName(_ name: String) -> Bool {
    isValidSiteName(name) && ConfigSyntax.isValidDNSName(Substring(name))
  }

  /// What `isValidPeerSiteName` adds to `siteNameRule`, for messages.
  public static let peerSiteNameRule = ConfigSyntax.peerSiteNameRule
}
