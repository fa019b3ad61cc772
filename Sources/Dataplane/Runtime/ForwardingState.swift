import Synchronization

/// Everything the packet loop reads besides the FDB, as one immutable snapshot:
/// interfaces and their VLAN-to-member maps, port members, bridge domains with their
/// flood lists, the VNI map, and one precomputed outer header per remote VTEP.
///
/// Built by `ForwardingStateBuilder` off the packet path and published through a
/// `SnapshotCell`; never mutated after publication, so workers read it without locks.
/// All tables are flat raw buffers indexed by small integers (interface, member, domain,
/// VTEP); index 0 of members and domains means "none".
// @unchecked: raw tables written once by the builder, immutable once published.
public final class ForwardingState: @unchecked Sendable {
  public static let maxInterfaces = 64
  private static let generations = Atomic<UInt64>(0)

  /// Unique among the snapshots of this process (and never reused, unlike an address):
  /// caches of decisions taken under one snapshot compare it to stay exact.
  let generation: UInt64
  /// Column for untagged frames in `memberByVLAN`.
  static let untaggedColumn = 4096
  static let vlanColumns = 4097
  public static let headerSlot = 128

  // Interfaces.
  public let interfaceNames: [String]
  /// `interfaceNames.count`, as a plain word for the packet path.
  let interfaceCount: Int
  public let underlayInterface: UInt16
  let memberByVLAN: UnsafeMutablePointer<UInt16>

  // Port members (index 0 unused).
  public let memberCount: Int
  let memberInterface: UnsafeMutablePointer<UInt16>
  let memberVLAN: UnsafeMutablePointer<UInt16>
  let memberDomain: UnsafeMutablePointer<UInt16>

  // Bridge domains (index 0 unused).
  public let domainCount: Int
  let domainVNI: UnsafeMutablePointer<UInt32>
  let domainLearnFlags: UnsafeMutablePointer<UInt8>
  /// True where the domain answers ARP requests for known IPs itself.
  let domainARPSuppression: UnsafeMutablePointer<Bool>
  let domainMemberStart: UnsafeMutablePointer<Int32>
  let domainMemberCount: UnsafeMutablePointer<Int32>
  let domainVTEPStart: UnsafeMutablePointer<Int32>
  let domainVTEPCount: UnsafeMutablePointer<Int32>
  let floodMembers: UnsafeMutablePointer<UInt16>
  let floodVTEPs: UnsafeMutablePointer<UInt16>

  // VNI -> domain (open addressing, key = vni << 16 | domain, 0 = empty).
  let vniSlots: UnsafeMutablePointer<UInt64>
  let vniMask: Int

  // Remote VTEPs: a 128-byte header template each, plus lookup by address for decap
  // learning (open addressing over folded address, value = index + 1).
  public let vtepCount: Int
  let vtepHeaders: UnsafeMutableRawPointer
  let vtepResolved: UnsafeMutablePointer<Bool>
  let vtepChecksumBase: UnsafeMutablePointer<UInt32>
  let vtepHigh: UnsafeMutablePointer<UInt64>
  let vtepLow: UnsafeMutablePointer<UInt64>
  let vtepSlots: UnsafeMutablePointer<UInt32>
  let vtepMask: Int

  // Site-wide encapsulation parameters.
  public let localVTEP: IPAddress
  let localIsIPv6: Bool
  let localHigh: UInt64
  let localLow: UInt64
  let udpPort: UInt16
  let sourcePortBase: UInt32
  let sourcePortSpan: UInt32
  let ipMTU: Int
  let inheritDSCP: Bool
  let ipv4UDPChecksum: Bool
  /// `accept_vteps = "known"`: VXLAN from a VTEP not in the VTEP table is dropped.
  let acceptsOnlyKnownVTEPs: Bool
  /// VTEP addresses by index, for the control side.
  public let vtepAddresses: [IPAddress]
  /// What the decap fast path requires of outer headers to this VTEP and port.
  let outerHeaderPattern: OuterHeaderPattern

  init(_ b: ForwardingStateBuilder) {
    generation = Self.generations.add(1, ordering: .relaxed).newValue
    interfaceNames = b.interfaceNames
    interfaceCount = b.interfaceNames.count
    underlayInterface = b.underlayInterface
    memberByVLAN = Self.copy(b.memberByVLAN)
    memberCount = b.members.count
    memberInterface = Self.copy(b.members.map(\.interface))
    memberVLAN = Self.copy(b.members.map(\.vlan))
    memberDomain = Self.copy(b.members.map(\.domain))
    domainCount = b.domains.count
    domainVNI = Self.copy(b.domains.map(\.vni))
    domainLearnFlags = Self.copy(b.domains.map(\.learnFlags))
    domainARPSuppression = Self.copy(b.domains.map(\.arpSuppression))
    var memberList: [UInt16] = []
    var vtepList: [UInt16] = []
    var memberStarts: [Int32] = []
    var memberCounts: [Int32] = []
    var vtepStarts: [Int32] = []
    var vtepCounts: [Int32] = []
    for domain in b.domains {
      memberStarts.append(Int32(memberList.count))
      memberCounts.append(Int32(domain.members.count))
      memberList += domain.members
      vtepStarts.append(Int32(vtepList.count))
      vtepCounts.append(Int32(domain.floodVTEPs.count))
      vtepList += domain.floodVTEPs
    }
    domainMemberStart = Self.copy(memberStarts)
    domainMemberCount = Self.copy(memberCounts)
    domainVTEPStart = Self.copy(vtepStarts)
    domainVTEPCount = Self.copy(vtepCounts)
    floodMembers = Self.copy(memberList + [0])
    floodVTEPs = Self.copy(vtepList + [0])

    var vniSize = 16
    while vniSize < b.domains.count * 2 { vniSize <<= 1 }
    var vniTable = [UInt64](repeating: 0, count: vniSize)
    for (index, domain) in b.domains.enumerated()
    where index > 0 && domain.vni != ForwardingStateBuilder.Domain.unassignedVNI {
      var slot = Self.hashVNI(domain.vni) & (vniSize - 1)
      while vniTable[slot] != 0 { slot = (slot + 1) & (vniSize - 1) }
      vniTable[slot] = UInt64(domain.vni) << 16 | UInt64(index)
    }
    vniSlots = Self.copy(vniTable)
    vniMask = vniSize - 1

    vtepCount = b.vteps.count
    vtepAddresses = b.vteps.map(\.address)
    let headers = UnsafeMutableRawPointer.allocate(
      byteCount: max(1, b.vteps.count) * Self.headerSlot, alignment: 64)
    headers.initializeMemory(as: UInt8.self, repeating: 0, count: max(1, b.vteps.count) * Self.headerSlot)
    vtepHeaders = headers
    var resolved: [Bool] = []
    var checksumBase: [UInt32] = []
    var highs: [UInt64] = []
    var lows: [UInt64] = []
    for (index, vtep) in b.vteps.enumerated() {
      let template = OuterHeaderTemplate(
        underlayMAC: b.underlayMAC, nextHopMAC: vtep.nextHopMAC ?? .zero, source: b.localVTEP,
        destination: vtep.address, udpPort: b.udpPort, ttl: b.ttl, dscp: b.dscp)
      template.bytes.withUnsafeBytes { raw in
        (headers + index * Self.headerSlot).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
      }
      resolved.append(vtep.nextHopMAC != nil && vtep.address.isIPv4 == b.localVTEP.isIPv4)
      checksumBase.append(template.checksumBase)
      let (high, low) = Self.split(vtep.address)
      highs.append(high)
      lows.append(low)
    }
    vtepResolved = Self.copy(resolved + [false])
    vtepChecksumBase = Self.copy(checksumBase + [0])
    vtepHigh = Self.copy(highs + [0])
    vtepLow = Self.copy(lows + [0])
    var vtepSize = 16
    while vtepSize < b.vteps.count * 2 { vtepSize <<= 1 }
    var vtepTable = [UInt32](repeating: 0, count: vtepSize)
    for index in 0..<b.vteps.count {
      var slot = Self.hashAddress(highs[index], lows[index]) & (vtepSize - 1)
      while vtepTable[slot] != 0 { slot = (slot + 1) & (vtepSize - 1) }
      vtepTable[slot] = UInt32(index + 1)
    }
    vtepSlots = Self.copy(vtepTable)
    vtepMask = vtepSize - 1

    localVTEP = b.localVTEP
    localIsIPv6 = !b.localVTEP.isIPv4
    (localHigh, localLow) = Self.split(b.localVTEP)
    udpPort = b.udpPort
    sourcePortBase = UInt32(b.sourcePorts.lowerBound)
    sourcePortSpan = UInt32(b.sourcePorts.upperBound) - UInt32(b.sourcePorts.lowerBound) + 1
    ipMTU = b.mtu
    if case .inherit = b.dscp { inheritDSCP = true } else { inheritDSCP = false }
    ipv4UDPChecksum = b.ipv4UDPChecksum
    acceptsOnlyKnownVTEPs = b.acceptsOnlyKnownVTEPs
    outerHeaderPattern = OuterHeaderPattern(local: b.localVTEP, udpPort: b.udpPort)
  }

  deinit {
    memberByVLAN.deallocate()
    memberInterface.deallocate()
    memberVLAN.deallocate()
    memberDomain.deallocate()
    domainVNI.deallocate()
    domainLearnFlags.deallocate()
    domainARPSuppression.deallocate()
    domainMemberStart.deallocate()
    domainMemberCount.deallocate()
    domainVTEPStart.deallocate()
    domainVTEPCount.deallocate()
    floodMembers.deallocate()
    floodVTEPs.deallocate()
    vniSlots.deallocate()
    vtepHeaders.deallocate()
    vtepResolved.deallocate()
    vtepChecksumBase.deallocate()
    vtepHigh.deallocate()
    vtepLow.deallocate()
    vtepSlots.deallocate()
  }

  private static func copy<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
    let pointer = UnsafeMutablePointer<T>.allocate(capacity: max(1, values.count))
    values.withUnsafeBufferPointer { buffer in
      if let base = buffer.baseAddress { pointer.initialize(from: base, count: buffer.count) }
    }
    return pointer
  }

  static func split(_ address: IPAddress) -> (UInt64, UInt64) {
    switch address {
    case .v4(let value): return (0, UInt64(value))
    case .v6(let high, let low): return (high, low)
    }
  }

  @inline(__always) static func hashVNI(_ vni: UInt32) -> Int {
    Int(truncatingIfNeeded: (UInt64(vni) &* 0x9E37_79B9_7F4A_7C15) &>> 40)
  }

  @inline(__always) static func hashAddress(_ high: UInt64, _ low: UInt64) -> Int {
    Int(truncatingIfNeeded: ((high ^ low) &* 0x9E37_79B9_7F4A_7C15) &>> 40)
  }

  // MARK: Per-frame lookups

  /// Port member for a frame on `interface` with `vlan` (`untaggedColumn` when untagged).
  @inline(__always) func member(interface: UInt16, vlan: Int) -> UInt16 {
    memberByVLAN[Int(interface) &* Self.vlanColumns &+ vlan]
  }

  /// Bridge domain for a VNI, or 0.
  @inline(__always) func domain(vni: UInt32) -> UInt16 {
    var slot = Self.hashVNI(vni) & vniMask
    while true {
      let entry = vniSlots[slot]
      if entry == 0 { return 0 }
      if UInt32(truncatingIfNeeded: entry &>> 16) == vni { return UInt16(truncatingIfNeeded: entry) }
      slot = (slot &+ 1) & vniMask
    }
  }

  /// VTEP index for an outer source address, or -1.
  @inline(__always) func vtep(high: UInt64, low: UInt64) -> Int {
    var slot = Self.hashAddress(high, low) & vtepMask
    while true {
      let entry = Int(vtepSlots[slot])
      if entry == 0 { return -1 }
      if vtepLow[entry &- 1] == low && vtepHigh[entry &- 1] == high { return entry &- 1 }
      slot = (slot &+ 1) & vtepMask
    }
  }

  // MARK: Control-side views

  /// The VNI of a bridge-domain index; nil for an index no domain holds now. FDB and ARP
  /// entries, learn events and claims carry indices that can outlive their domain (a
  /// reload frees it, or shrinks the table past it), so every caller must expect nil.
  public func vni(ofDomain domain: UInt16) -> UInt32? {
    guard Int(domain) < domainCount else { return nil }
    let vni = domainVNI[Int(domain)]
    return vni == ForwardingStateBuilder.Domain.unassignedVNI ? nil : vni
  }
  public func domainIndex(vni: UInt32) -> UInt16? {
    let index = domain(vni: vni)
    return index == 0 ? nil : index
  }
  public func memberName(_ member: UInt16) -> String {
    guard Int(member) < memberCount, member > 0 else { return "?" }
    let name = interfaceNames[Int(memberInterface[Int(member)])]
    let vlan = memberVLAN[Int(member)]
    return vlan == 0 ? name : "\(name).\(vlan)"
  }
  public func memberDomainIndex(_ member: UInt16) -> UInt16 { memberDomain[Int(member)] }
  public func floodVTEPList(domain: UInt16) -> [IPAddress] {
    let start = Int(domainVTEPStart[Int(domain)])
    return (0..<Int(domainVTEPCount[Int(domain)])).map { vtepAddresses[Int(floodVTEPs[start + $0])] }
  }
  public func memberList(domain: UInt16) -> [UInt16] {
    let start = Int(domainMemberStart[Int(domain)])
    return (0..<Int(domainMemberCount[Int(domain)])).map { floodMembers[start + $0] }
  }
  public func learnFlags(domain: UInt16) -> UInt8 { domainLearnFlags[Int(domain)] }
  public func arpSuppression(domain: UInt16) -> Bool { domainARPSuppression[Int(domain)] }
  public func isResolved(vtep: Int) -> Bool { vtepResolved[vtep] }
}
