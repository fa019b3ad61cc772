import Dataplane

/// The boundary between the BGP speaker and the dataplane. The speaker calls these
/// methods on its event-loop thread, one at a time, in the order changes happen; an
/// implementation should only queue or apply the change and return quickly.
public protocol EVPNRouteSink: AnyObject, Sendable {
  /// `mac` in `vni` (optionally with `ip`, for ARP/ND suppression) is behind remote
  /// VTEP `vtep`. Called again with new values when the best route changes.
  func installMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, sticky: Bool,
    peer: String)
  /// No remote route is left for this entry (withdrawn, lost to a local route, or the
  /// peer's stale routes were swept).
  func removeMAC(vni: UInt32, mac: MACAddress, ip: IPAddress?)
  /// `vtep` wants BUM traffic of `vni` (type-3 route with ingress replication).
  func addFloodMember(vni: UInt32, vtep: IPAddress)
  func removeFloodMember(vni: UInt32, vtep: IPAddress)
  /// Duplicate-address detection froze `mac`: it moved `moves` times within the
  /// configured window. The speaker stops advertising it locally until `unfreezeMAC`.
  func macFrozen(vni: UInt32, mac: MACAddress, moves: Int)
  /// Several MACs claim `ip` in `vni` (an address conflict, see `ConflictRule`): ARP
  /// suppression must stop answering for it, and neither claim's binding replace the
  /// other, until `addressConflictCleared`. `mac` is the winning claim (a binding to
  /// hold when none is held). Called before the routes of the claims reach the sink.
  func addressConflictStarted(vni: UInt32, ip: IPAddress, mac: MACAddress)
  /// The conflict of `ip` ended: `mac` is the binding left (nil: none), `local` when it
  /// is this site's own (learnt from local ARP).
  func addressConflictCleared(vni: UInt32, ip: IPAddress, mac: MACAddress?, local: Bool)
  /// The calls up to the matching `endBatch()` belong to one UPDATE (or one bulk
  /// change such as a session's routes going): the sink may queue their effect and
  /// apply it all at `endBatch()`, in order. Batches may nest; only the outermost
  /// `endBatch()` counts.
  func beginBatch()
  func endBatch()
}

extension EVPNRouteSink {
  public func macFrozen(vni: UInt32, mac: MACAddress, moves: Int) {}
  public func addressConflictStarted(vni: UInt32, ip: IPAddress, mac: MACAddress) {}
  public func addressConflictCleared(vni: UInt32, ip: IPAddress, mac: MACAddress?, local: Bool) {}
  public func beginBatch() {}
  public func endBatch() {}
}
