/// What a reference implementation of the decapsulation fast path needs from a switch
/// (see `EncapsulationReferenceInputs`): the FDB's read side, one VNI's lane, the
/// outer header pattern, the VTEP table and the members' interfaces and VLANs.
///
/// Valid while the switch lives and its forwarding state is not replaced (no reload).
public struct DecapsulationReferenceInputs {
  public let fdb: ReferenceFDB
  public let vniField: UInt32
  public let learns: Bool
  /// `FrameFlags` that send a frame to the general path.
  public let generalFlags: UInt8
  public let domainBits: UInt64
  public let portPattern: UInt64
  public let vtepPattern: UInt64
  /// The outer header pattern's three 16-byte vectors (`OuterHeaderPattern`): a frame's
  /// bytes 12-27 and 28-43 (IPv4), or 12-27, 38-53 and 54-69 (IPv6), must equal
  /// `expected` where `masks` has bits.
  public let masks: [UInt8]
  public let expected: [UInt8]
  public let vtepSlots: UnsafePointer<UInt32>
  public let vtepMask: Int
  public let vtepHigh: UnsafePointer<UInt64>
  public let vtepLow: UnsafePointer<UInt64>
  public let memberVLAN: UnsafePointer<UInt16>
  public let memberInterface: UnsafePointer<UInt16>
  public let interfaceCount: Int
  /// An IPv6 underlay (70-byte outer header, the UDP checksum verified); else IPv4.
  public let isIPv6: Bool
}

extension OfflineSwitch {
  /// The inputs for VXLAN frames of `vni` (nil when no bridge domain has it).
  public func decapsulationReference(vni: UInt32) -> DecapsulationReferenceInputs? {
    let state = core.state
    guard state.domainIndex(vni: vni) != nil else { return nil }
    let table = core.fdb.reader
    let lane = DecapLane(state: state, table: table, vniField: VXLANField.vni(vni), flowGeneration: 0)
    let generation = table.domainGenerations[Int(lane.domain)].load(ordering: .relaxed)
    func bytes(_ vectors: (SIMD16<UInt8>, SIMD16<UInt8>, SIMD16<UInt8>)) -> [UInt8] {
      [vectors.0, vectors.1, vectors.2].flatMap { vector in (0..<16).map { vector[$0] } }
    }
    let pattern = state.outerHeaderPattern
    return DecapsulationReferenceInputs(
      fdb: ReferenceFDB(table), vniField: lane.vniField, learns: lane.learns,
      generalFlags: pipeline.fastPathRefusedFlags, domainBits: lane.domainBits, portPattern: lane.portPattern,
      vtepPattern: FDBValuePattern.current(kind: .vtep, domainGeneration: generation),
      masks: bytes(pattern.masks), expected: bytes(pattern.expected),
      vtepSlots: UnsafePointer(state.vtepSlots), vtepMask: state.vtepMask,
      vtepHigh: UnsafePointer(state.vtepHigh),
      vtepLow: UnsafePointer(state.vtepLow), memberVLAN: UnsafePointer(state.memberVLAN),
      memberInterface: UnsafePointer(state.memberInterface), interfaceCount: ports.count,
      isIPv6: state.localIsIPv6)
  }
}
