/// Adds control-plane details to `show fdb` rows: the control shim installs one on
/// `SiteService` (Management) so that entries learnt from BGP EVPN show their peer and MAC-mobility
/// sequence. Called on the control-socket thread, outside the packet path.
public protocol FDBAnnotator: AnyObject, Sendable {
  /// Fills `row.peer` / `row.sequence` for a control-plane entry of `vni`/`mac`.
  func annotate(_ row: inout FDBRow, vni: UInt32, mac: MACAddress)
}
