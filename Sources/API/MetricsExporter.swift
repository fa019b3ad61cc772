import ControlShim
import Dataplane
import Management
import Prometheus

/// `GET /metrics`: the site's counters in the Prometheus text exposition format, written by
/// swift-prometheus. Values are read at scrape time from the counters the packet path
/// already flushes once per batch, so exporting adds nothing to the per-frame work.
///
/// Names follow Prometheus conventions: `vxswitch_..._total` for counters, base units
/// (bytes, frames), ports, reasons, VNIs and peers as labels. README "Metrics" lists them.
public final class MetricsExporter: Sendable {
  let service: SiteService
  /// The control inputs held to a rate (`[api] rate_limit`, `[peering] rate_limit`).
  let rateLimiters: [RateLimitedListener: RequestRateLimiter]

  /// The listeners whose requests are rate-limited, as the metric's `listener` label.
  public enum RateLimitedListener: String, Sendable, CaseIterable {
    case api, peering
  }

  public init(service: SiteService, rateLimiters: [RateLimitedListener: RequestRateLimiter] = [:]) {
    self.service = service
    self.rateLimiters = rateLimiters
  }

  /// Every metric name with its type and help text, in exposition order (documented in
  /// README "Metrics"; `MetricsTests` checks the two agree).
  public static let catalogue: [(name: String, type: String, help: String)] = [
    ("vxswitch_port_frames_total", "counter", "Frames received (rx) and sent (tx) per port."),
    ("vxswitch_port_bytes_total", "counter", "Bytes received (rx) and sent (tx) per port."),
    ("vxswitch_drops_total", "counter", "Frames dropped, by reason."),
    ("vxswitch_encapsulated_frames_total", "counter", "Frames encapsulated toward remote VTEPs."),
    ("vxswitch_decapsulated_frames_total", "counter", "VXLAN frames decapsulated and switched."),
    (
      "vxswitch_flood_copies_total", "counter",
      "Copies made for flooding (local ports and head-end replication)."
    ),
    ("vxswitch_fdb_learned_total", "counter", "MACs learned."),
    ("vxswitch_fdb_moves_total", "counter", "Learned MACs that moved to another port or VTEP."),
    ("vxswitch_fdb_aged_total", "counter", "FDB entries removed by aging or flushes."),
    (
      "vxswitch_fdb_learn_limit_drops_total", "counter", "MACs not learned because a learn limit was reached."
    ),
    (
      "vxswitch_arp_suppressed_total", "counter",
      "ARP requests and IPv6 neighbour solicitations answered locally (suppression)."
    ),
    (
      "vxswitch_arp_binding_collisions_total", "counter",
      "IPv6 bindings not kept for suppression: another address of the bridge domain owns their folded key."
    ),
    (
      "vxswitch_path_mtu_replies_total", "counter",
      "ICMP Fragmentation Needed / Packet Too Big sent to VMs whose frames did not fit the underlay."
    ),
    (
      "vxswitch_underlay_gso_frames_total", "counter",
      "UDP GSO frames sent on the underlay (runs of VXLAN datagrams to one VTEP, cut up by the kernel)."
    ),
    (
      "vxswitch_underlay_gso_datagrams_total", "counter",
      "VXLAN datagrams sent inside UDP GSO frames (also in vxswitch_encapsulated_frames_total)."
    ),
    (
      "vxswitch_underlay_tunnel_frames_total", "counter",
      "VM super-frames handed to the kernel encapsulated but whole, through the tunnel tap (cut by the kernel)."
    ),
    (
      "vxswitch_underlay_tunnel_segments_total", "counter",
      "VXLAN datagrams the kernel cut from them (also in vxswitch_encapsulated_frames_total)."
    ),
    (
      "vxswitch_tap_refusals_total", "counter",
      "Writes to the switch's taps (the underlay's tunnel tap, a VM's super-frame tap) the kernel refused; their frames are lost."
    ),
    (
      "vxswitch_tcp_coalesced_super_frames_total", "counter",
      "TCP super-frames coalesced toward access ports (runs of two or more segments of one flow)."
    ),
    (
      "vxswitch_tcp_coalesced_segments_total", "counter",
      "TCP segments sent inside coalesced super-frames (also in the ports' transmitted frames)."
    ),
    ("vxswitch_fdb_entries", "gauge", "Current FDB entries, by VNI and origin."),
    ("vxswitch_ring_received_frames_total", "counter", "Frames read from the port's AF_PACKET RX ring."),
    (
      "vxswitch_ring_kernel_drops_total", "counter", "Frames the kernel dropped because the RX ring was full."
    ),
    (
      "vxswitch_ring_truncated_frames_total", "counter",
      "Frames the kernel copied only partly into the ring (dropped)."
    ),
    ("vxswitch_ring_transmit_errors_total", "counter", "TX ring kicks that failed (e.g. ENETDOWN)."),
    ("vxswitch_bgp_session_up", "gauge", "1 while the BGP session to the peer is Established."),
    ("vxswitch_bgp_routes_received_total", "counter", "EVPN NLRI received from the peer."),
    ("vxswitch_bgp_routes_accepted", "gauge", "Routes of the peer currently held (type 2 and 3)."),
    ("vxswitch_bgp_routes_advertised_total", "counter", "EVPN NLRI sent to the peer."),
    (
      "vxswitch_bgp_routes_stale", "gauge",
      "Routes of the peer kept stale after its session was lost, by phase (graceful_restart, long_lived)."
    ),
    ("vxswitch_bgp_established_transitions_total", "counter", "Times the session reached Established."),
    ("vxswitch_bgp_duplicate_macs", "gauge", "MACs frozen by duplicate-MAC detection."),
    (
      "vxswitch_address_conflicts", "gauge",
      "Address conflicts now, by kind (ip: one IP bound to several MACs; mac: one MAC tied between two VTEPs)."
    ),
    ("vxswitch_address_conflicts_total", "counter", "Address conflicts started, by kind."),
    ("vxswitch_next_hop_resolved", "gauge", "1 when the remote VTEP's underlay next-hop MAC is known."),
    (
      "vxswitch_control_requests_rate_limited_total", "counter",
      "Requests refused with 429 over a client's rate, by listener (api: TCP API; peering: site channel)."
    ),
  ]

  static let help = Dictionary(uniqueKeysWithValues: catalogue.map { ($0.name, $0.help) })

  /// The catalogue's full name as the registry wants it (no unit suffix of its own: the
  /// names carry theirs), with its help text.
  static func descriptor(_ name: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help[name] ?? name)
  }

  /// The exposition text of the current values.
  public func exposition() async -> [UInt8] {
    let registry = PrometheusCollectorRegistry()
    func counter(_ name: String, _ value: UInt64) { counter(name, [], value) }
    func gauge(_ name: String, _ value: Double) { gauge(name, [], value) }
    func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
      registry.makeCounter(descriptor: Self.descriptor(name), labels: labels).increment(
        by: Int64(clamping: value))
    }
    func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
      registry.makeGauge(descriptor: Self.descriptor(name), labels: labels).set(value)
    }
    let statistics = service.statistics()
    for port in statistics.ports {
      counter("vxswitch_port_frames_total", [("port", port.name), ("direction", "rx")], port.rxFrames)
      counter("vxswitch_port_frames_total", [("port", port.name), ("direction", "tx")], port.txFrames)
      counter("vxswitch_port_bytes_total", [("port", port.name), ("direction", "rx")], port.rxBytes)
      counter("vxswitch_port_bytes_total", [("port", port.name), ("direction", "tx")], port.txBytes)
    }
    for reason in DropReason.allCases {
      counter("vxswitch_drops_total", [("reason", reason.name)], statistics.drops[reason.name] ?? 0)
    }
    counter("vxswitch_encapsulated_frames_total", statistics.encapsulated)
    counter("vxswitch_decapsulated_frames_total", statistics.decapsulated)
    counter("vxswitch_flood_copies_total", statistics.floodCopies)
    counter("vxswitch_fdb_learned_total", statistics.learned)
    counter("vxswitch_fdb_moves_total", statistics.moves)
    counter("vxswitch_fdb_aged_total", statistics.aged)
    counter("vxswitch_fdb_learn_limit_drops_total", statistics.learnLimitDrops ?? 0)
    counter("vxswitch_arp_suppressed_total", statistics.arpSuppressed ?? 0)
    counter("vxswitch_arp_binding_collisions_total", statistics.arpBindingCollisions ?? 0)
    counter("vxswitch_path_mtu_replies_total", statistics.pathMTUReplies ?? 0)
    counter("vxswitch_underlay_gso_frames_total", statistics.underlayGSOFrames ?? 0)
    counter("vxswitch_underlay_gso_datagrams_total", statistics.underlayGSODatagrams ?? 0)
    counter("vxswitch_underlay_tunnel_frames_total", statistics.underlayTunnelFrames ?? 0)
    counter("vxswitch_underlay_tunnel_segments_total", statistics.underlayTunnelSegments ?? 0)
    counter("vxswitch_tap_refusals_total", statistics.tapRefusals ?? 0)
    counter("vxswitch_tcp_coalesced_super_frames_total", statistics.tcpCoalescedSuperFrames ?? 0)
    counter("vxswitch_tcp_coalesced_segments_total", statistics.tcpCoalescedSegments ?? 0)
    for count in service.fdbCounts() {
      gauge(
        "vxswitch_fdb_entries", [("vni", "\(count.vni)"), ("origin", count.origin)], Double(count.entries))
    }
    for port in service.ports() {
      guard let ring = port.ring else { continue }
      counter("vxswitch_ring_received_frames_total", [("port", port.name)], ring.receivedFrames)
      counter("vxswitch_ring_kernel_drops_total", [("port", port.name)], ring.kernelDrops)
      counter("vxswitch_ring_truncated_frames_total", [("port", port.name)], ring.truncatedDrops)
      counter("vxswitch_ring_transmit_errors_total", [("port", port.name)], ring.transmitErrors)
    }
    if let status = try? await service.bgp() {
      for peer in status.peers {
        let labels = [("peer", peer.name)]
        gauge("vxswitch_bgp_session_up", labels, peer.state == .established ? 1 : 0)
        counter("vxswitch_bgp_routes_received_total", labels, UInt64(max(0, peer.routesReceived)))
        gauge("vxswitch_bgp_routes_accepted", labels, Double(peer.routesAccepted))
        counter("vxswitch_bgp_routes_advertised_total", labels, UInt64(max(0, peer.routesAdvertised)))
        let longLived = peer.routesLongLivedStale ?? 0
        gauge(
          "vxswitch_bgp_routes_stale", labels + [("phase", "graceful_restart")],
          Double(max(0, peer.routesStale - longLived)))
        gauge("vxswitch_bgp_routes_stale", labels + [("phase", "long_lived")], Double(longLived))
        counter(
          "vxswitch_bgp_established_transitions_total", labels, UInt64(max(0, peer.establishedTransitions)))
      }
      gauge("vxswitch_bgp_duplicate_macs", Double(status.frozenMACs))
    }
    let conflicts = await service.conflictReport()
    for kind in AddressConflict.Kind.allCases {
      let labels = [("kind", kind.rawValue)]
      gauge(
        "vxswitch_address_conflicts", labels, Double(conflicts.conflicts.filter { $0.kind == kind }.count))
      counter("vxswitch_address_conflicts_total", labels, UInt64(conflicts.started[kind] ?? 0))
    }
    for neighbor in service.neighbors() {
      gauge(
        "vxswitch_next_hop_resolved",
        [("vtep", neighbor.vtep), ("resolution", neighbor.resolution.rawValue)],
        neighbor.mac == nil ? 0 : 1)
    }
    // Listeners without a limit (none configured, or rate_limit = 0) refuse nothing: 0.
    for listener in RateLimitedListener.allCases {
      counter(
        "vxswitch_control_requests_rate_limited_total", [("listener", listener.rawValue)],
        rateLimiters[listener]?.refused ?? 0)
    }
    return registry.emitToBuffer()
  }
}
