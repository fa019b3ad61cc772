/// Every key the configuration decoder accepts, per table: the one list the decoders check
/// keys against (`rejectUnknownKeys`) and README's "Configuration reference" is tested
/// against (ConfigReferenceTests).
///
/// Tables are named by their dotted path without brackets: `"site"`, `"bgp.peer"`. A table's
/// keys are its values only; the tables nested in it (`[[bgp.peer]]` in `[bgp]`) are tables of
/// their own here, and `allowedKeys(in:)` adds their names to what the parent accepts.
public enum ConfigSchema {
  public static let keys: [String: Set<String>] = [
    "site": [
      "name", "vtep", "underlay", "udp_port", "underlay_mac", "mtu", "udp_source_ports",
      "udp_checksum_ipv4", "ttl", "dscp", "aging_time", "learn_limit", "fdb_capacity", "workers", "cpus",
      "control_socket", "log_level", "state_dir", "accept_vteps",
    ],
    "api": ["listen", "token_file", "rate_limit"],
    "neighbor": ["ip", "mac"],
    "interface": ["name", "io", "offload_tap"],
    "bridge_domain": [
      "vni", "name", "ports", "flood", "learning", "learn_limit", "arp_suppression", "rd", "import_rt",
      "export_rt",
    ],
    "static_mac": ["vni", "mac", "remote", "port"],
    "bgp": [
      "asn", "router_id", "listen_port", "stale_time", "long_lived_stale_time", "restart_time",
      "selection_deferral_time", "dup_mac_max_moves", "dup_mac_time", "dup_mac_freeze",
    ],
    "bgp.peer": ["address", "asn", "port", "hold_time", "password", "passive", "max_routes"],
    "peering": [
      "listen", "tls_cert", "tls_key", "tls_ca", "hold_time", "stale_time",
      "long_lived_stale_time", "restart_time", "selection_deferral_time", "rate_limit",
    ],
    "site_peer": ["name", "url", "evpn_only", "vtep", "asn", "password"],
  ]

  /// The tables written `[[name]]`, any number of times; the others are written `[name]`, once.
  public static let arrayTables: Set<String> = [
    "neighbor", "interface", "bridge_domain", "static_mac", "bgp.peer", "site_peer",
  ]

  /// How a table is named in messages and in the README: `[site]`, `[[bgp.peer]]`.
  public static func displayName(of table: String) -> String {
    arrayTables.contains(table) ? "[[\(table)]]" : "[\(table)]"
  }

  /// What may appear in `table` (`""`: the top level of the file): its keys, and the names of
  /// the tables directly inside it.
  public static func allowedKeys(in table: String) -> Set<String> {
    let prefix = table.isEmpty ? "" : table + "."
    var allowed = keys[table] ?? []
    for name in keys.keys where name.hasPrefix(prefix) {
      let child = name.dropFirst(prefix.count)
      if !child.isEmpty, !child.contains(".") { allowed.insert(String(child)) }
    }
    return allowed
  }
}
