/// What a reference implementation of the encapsulation fast path needs from a switch, as
/// plain pointers and constants: the FDB's read side, one access member's lane, the
/// underlay's per-VTEP headers. `Bench reference` hands it to the C yardstick
/// (`CReference`), so that the two do the same work on the same tables.
///
/// Valid while the switch lives and its forwarding state is not replaced (no reload).
/// Thread safety: a value; the memory it points at follows `ForwardingTable`'s and
/// `ForwardingState`'s contracts.
public struct EncapsulationReferenceInputs {
  public let fdb: ReferenceFDB
  public let domainBits: UInt64
  public let vtepPattern: UInt64
  public let portPattern: UInt64
  public let member: UInt16
  public let learns: Bool
  public let watchesARP: Bool
  public let vniField: UInt32
  /// A frame is taken only when `length - 14`, unsigned, is below this.
  public let lengthSpan: UInt64
  public let headers: UnsafeRawPointer
  public let headerSlot: Int
  public let checksumBase: UnsafePointer<UInt32>
  public let resolved: UnsafeRawPointer
  public let vtepCount: Int
  public let sourcePortBase: UInt32
  public let sourcePortSpan: UInt64
  /// An IPv6 underlay (70-byte outer header); else IPv4 (50 bytes).
  public let isIPv6: Bool
}

extension OfflineSwitch {
  /// The inputs for frames received untagged on `interface` and encapsulated with a fixed
  /// DSCP toward an IPv4 underlay without UDP checksums or an IPv6 one: nil for anything
  /// else, which the reference does not implement.
  public func encapsulationReference(interface name: String) -> EncapsulationReferenceInputs? {
    guard let interface = interfaceIndex(name) else { return nil }
    let state = core.state
    guard PlainIPv4Encapsulation.matches(state) || PlainIPv6Encapsulation.matches(state),
      let ring = ports.first(where: { $0.name == core.config.site.underlay })
    else { return nil }
    let table = core.fdb.reader
    let out = UnderlayOutput(state: state, ring: ring.transmitRing)
    let lane = AccessLane(
      state: state, table: table, interface: UInt16(interface), tag: 0, sourceCacheTagBase: 0,
      flowGeneration: 0, maxRestLength: out.maxRestLength, enabled: true)
    guard lane.member != 0 else { return nil }
    return EncapsulationReferenceInputs(
      fdb: ReferenceFDB(table), domainBits: lane.domainBits,
      vtepPattern: lane.vtepPattern, portPattern: lane.portPattern, member: lane.member, learns: lane.learns,
      watchesARP: lane.watchesARP, vniField: lane.vniField, lengthSpan: UInt64(lane.lengthSpan),
      headers: UnsafeRawPointer(state.vtepHeaders), headerSlot: ForwardingState.headerSlot,
      checksumBase: UnsafePointer(state.vtepChecksumBase), resolved: UnsafeRawPointer(state.vtepResolved),
      vtepCount: state.vtepCount, sourcePortBase: state.sourcePortBase,
      sourcePortSpan: UInt64(state.sourcePortSpan), isIPv6: state.localIsIPv6)
  }
}
