/// What VXLAN frames carrying one VNI share, read once per batch (and again only when a
/// frame's VNI differs): its bridge domain, whether the domain learns from decapsulated
/// frames, and the FDB value pattern that means "current entry of this domain, at a
/// port".
///
/// A batch-local value; not shared.
struct DecapLane {
  /// The VNI as the fast path reads it: the three VNI bytes of the VXLAN header in a
  /// little-endian 32-bit load, the reserved byte masked off. `UInt32.max` matches no frame.
  let vniField: UInt32
  let domain: UInt16
  let domainBits: UInt64
  let learns: Bool
  /// `FDBEntry.rawValue & FDBValuePattern.mask` of a current entry of this domain at a
  /// port; `UInt64.max` (matching no value) when the VNI maps to no domain.
  let portPattern: UInt64
  /// `FlowCache.tag` of this domain's entries in the current generation, but for the
  /// source VTEP (bits 16-31): see `flowTag(fromVTEP:)`.
  let flowTag: UInt64

  /// The flow cache tag of this lane's frames from `vtep` (index, or -1 when unknown).
  @inline(__always)
  func flowTag(fromVTEP vtep: Int) -> UInt64 { flowTag | UInt64(UInt16(truncatingIfNeeded: vtep)) &<< 16 }

  static let none = DecapLane(vniField: .max, domain: 0, learns: false, portPattern: .max, flowTag: 0)

  init(vniField: UInt32, domain: UInt16, learns: Bool, portPattern: UInt64, flowTag: UInt64) {
    self.vniField = vniField
    self.domain = domain
    domainBits = UInt64(domain) &<< 48
    self.learns = learns
    self.portPattern = portPattern
    self.flowTag = flowTag
  }

  @inline(__always)
  init(state: ForwardingState, table: ForwardingTable.Reader, vniField: UInt32, flowGeneration: UInt32) {
    self.vniField = vniField
    let vni = UInt32(bigEndian: vniField &<< 8)
    let domain = state.domain(vni: vni)
    self.domain = domain
    domainBits = UInt64(domain) &<< 48
    learns = state.domainLearnFlags[Int(domain)] & LearnFlags.decap != 0
    if domain == 0 {
      portPattern = .max
    } else {
      let generation = table.domainGenerations[Int(domain)].load(ordering: .relaxed)
      portPattern = FDBValuePattern.current(kind: .port, domainGeneration: generation)
    }
    flowTag = FlowCache.tag(generation: flowGeneration, origin: UInt32(domain))
  }
}
