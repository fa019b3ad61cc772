/// Why a frame was dropped. Every drop is counted under exactly one reason.
public enum DropReason: Int, CaseIterable, Sendable {
  case runt = 0
  case badSourceMAC
  case unmappedVLAN
  case sameInterface
  case innerVLANTag
  case notIP
  case badIPHeader
  case badIPChecksum
  case badIPLength
  case outerFragment
  case unsupportedIPv6Extension
  case notForLocalVTEP
  case notUDP
  case wrongUDPPort
  case badUDPLength
  case badUDPChecksum
  case badVXLANFlags
  case unknownVNI
  case splitHorizon
  case mtuExceeded
  case noNextHop
  case noFloodTargets
  case txRingFull
  case oversize
  case fdbDrop
  case truncated
  /// VXLAN from a source VTEP the site does not know, with `accept_vteps = "known"`.
  case unknownVTEP

  public var name: String {
    switch self {
    case .runt: return "runt"
    case .badSourceMAC: return "bad_source_mac"
    case .unmappedVLAN: return "unmapped_vlan"
    case .sameInterface: return "same_interface"
    case .innerVLANTag: return "inner_vlan_tag"
    case .notIP: return "not_ip"
    case .badIPHeader: return "bad_ip_header"
    case .badIPChecksum: return "bad_ip_checksum"
    case .badIPLength: return "bad_ip_length"
    case .outerFragment: return "outer_fragment"
    case .unsupportedIPv6Extension: return "unsupported_ipv6_extension"
    case .notForLocalVTEP: return "not_for_local_vtep"
    case .notUDP: return "not_udp"
    case .wrongUDPPort: return "wrong_udp_port"
    case .badUDPLength: return "bad_udp_length"
    case .badUDPChecksum: return "bad_udp_checksum"
    case .badVXLANFlags: return "bad_vxlan_flags"
    case .unknownVNI: return "unknown_vni"
    case .splitHorizon: return "split_horizon"
    case .mtuExceeded: return "mtu_exceeded"
    case .noNextHop: return "no_next_hop"
    case .noFloodTargets: return "no_flood_targets"
    case .txRingFull: return "tx_ring_full"
    case .oversize: return "oversize"
    case .fdbDrop: return "fdb_drop"
    case .truncated: return "truncated"
    case .unknownVTEP: return "unknown_vtep"
    }
  }
}
