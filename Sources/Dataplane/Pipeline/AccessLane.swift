/// What frames arriving on one access interface with one VLAN tag share, read once per
/// batch (and again only when a frame's tag differs): the port member and its bridge
/// domain, whether the domain learns and watches ARP, the source cache tag for the
/// member, and the FDB value patterns that mean "current entry of this domain, at a
/// VTEP" and "at a port".
///
/// A batch-local value; not shared.
struct AccessLane {
  /// The `FrameVector.vlanTags` value of the frames this lane is for.
  let tag: UInt32
  /// 0 when the tag's VLAN maps to no member: then no frame takes the fast path.
  let member: UInt16
  let domain: UInt16
  let domainBits: UInt64
  /// A frame may take the fast path only when `length - 14`, unsigned, is below this:
  /// it has an Ethernet header and its encapsulation fits the underlay. 0 when the lane
  /// maps to no member.
  let lengthSpan: UInt
  let learns: Bool
  /// ARP packets need the general path (learning bindings, answering requests).
  let watchesARP: Bool
  /// `sourceCacheTagBase | member`: a source cached with this tag needs no learning.
  let sourceCacheTag: UInt64
  /// `FDBEntry.rawValue & FDBValuePattern.mask` of a current entry of this domain at a
  /// VTEP or at a port.
  let vtepPattern: UInt64
  let portPattern: UInt64
  /// The domain's VNI as the VXLAN header carries it (`VXLANField.vni`).
  let vniField: UInt32
  /// The flow cache tag of this member's entries in the current generation.
  let flowTag: UInt64

  /// A lane no frame takes the fast path on (storage before the first batch).
  init() {
    tag = .max
    member = 0
    domain = 0
    domainBits = 0
    lengthSpan = 0
    learns = false
    watchesARP = false
    sourceCacheTag = 0
    vtepPattern = .max
    portPattern = .max
    vniField = 0
    flowTag = 0
  }

  @inline(__always)
  init(
    state: ForwardingState, table: ForwardingTable.Reader, interface: UInt16, tag: UInt32,
    sourceCacheTagBase: UInt64,
    flowGeneration: UInt32, maxRestLength: Int, enabled: Bool
  ) {
    self.tag = tag
    var column = ForwardingState.untaggedColumn
    if tag & FrameVector.vlanTagPresent != 0 && tag & 0xFFF != 0 { column = Int(tag & 0xFFF) }
    let member = state.member(interface: interface, vlan: column)
    self.member = member
    let domain = member == 0 ? 0 : state.memberDomain[Int(member)]
    self.domain = domain
    domainBits = UInt64(domain) &<< 48
    // 14 <= length <= 12 + maxRestLength.
    lengthSpan = member == 0 || !enabled || maxRestLength < 2 ? 0 : UInt(maxRestLength &- 1)
    learns = state.domainLearnFlags[Int(domain)] & LearnFlags.local != 0
    watchesARP = state.domainARPSuppression[Int(domain)]
    sourceCacheTag = sourceCacheTagBase | UInt64(member)
    let generation = table.domainGenerations[Int(domain)].load(ordering: .relaxed)
    vtepPattern = FDBValuePattern.current(kind: .vtep, domainGeneration: generation)
    portPattern = FDBValuePattern.current(kind: .port, domainGeneration: generation)
    vniField = VXLANField.vni(state.domainVNI[Int(domain)])
    flowTag = FlowCache.tag(generation: flowGeneration, origin: UInt32(member))
  }
}

/// Masks and patterns that check an `FDBEntry` raw value in one `and` and one compare:
/// present, of a given target kind, and written under the bridge domain's current flush
/// generation. (The target's own generation is checked separately.)
enum FDBValuePattern {
  /// Target kind (bits 16-17) and domain generation (bits 20-27).
  static let mask: UInt64 = 0x0FF3_0000

  @inline(__always)
  static func current(kind: FDBTargetKind, domainGeneration: UInt8) -> UInt64 {
    kind.rawValue &<< 16 | UInt64(domainGeneration) &<< 20
  }
}

/// Fields of the VXLAN header in the byte order of the wire, so that a batch computes
/// them once and frames store them with one move.
enum VXLANField {
  /// The 32-bit word at VXLAN header offset 4: the 24-bit VNI, then a reserved byte.
  @inline(__always)
  static func vni(_ vni: UInt32) -> UInt32 { (vni &<< 8).bigEndian }
}
