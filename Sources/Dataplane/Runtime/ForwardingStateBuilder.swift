/// The mutable, Swift-array form of a `ForwardingState`, assembled by the control side
/// (configuration, VTEP registry, neighbour resolution) and frozen with `build()`.
public struct ForwardingStateBuilder {
  public struct Member {
    public var interface: UInt16
    public var vlan: UInt16
    public var domain: UInt16
  }
  public struct Domain {
    public var vni: UInt32
    /// `LearnFlags` bits.
    public var learnFlags: UInt8
    public var members: [UInt16]
    public var floodVTEPs: [UInt16]
    /// Answer ARP requests for IPs bound in the ARP table locally (`arp_suppression`).
    public var arpSuppression: Bool = false

    /// The VNI of an index no bridge domain holds (freed by a reload, below the highest
    /// index in use): outside the 24-bit VNI space, so no frame and no lookup finds it.
    public static let unassignedVNI = UInt32.max
    /// What an unused index holds.
    public static let unassigned = Domain(vni: unassignedVNI, learnFlags: 0, members: [], floodVTEPs: [])
  }
  public struct VTEP {
    public var address: IPAddress
    public var nextHopMAC: MACAddress?
  }

  public var interfaceNames: [String]
  public var underlayInterface: UInt16 = 0
  var memberByVLAN: [UInt16]
  /// Index 0 is a placeholder ("no member").
  public var members: [Member] = [Member(interface: 0, vlan: 0, domain: 0)]
  /// Index 0 is a placeholder ("no bridge domain").
  public var domains: [Domain] = [.unassigned]
  public var vteps: [VTEP] = []

  public var localVTEP: IPAddress
  public var underlayMAC: MACAddress
  public var udpPort: UInt16
  public var sourcePorts: ClosedRange<UInt16>
  public var mtu: Int
  public var ttl: UInt8
  public var dscp: SiteConfig.DSCP
  public var ipv4UDPChecksum: Bool
  public var acceptsOnlyKnownVTEPs: Bool

  public init(site: SiteConfig.Site, interfaces: [String], underlayMAC: MACAddress) {
    interfaceNames = interfaces
    underlayInterface = UInt16(interfaces.firstIndex(of: site.underlay) ?? 0)
    memberByVLAN = Array(repeating: 0, count: interfaces.count * ForwardingState.vlanColumns)
    localVTEP = site.vtep
    self.underlayMAC = underlayMAC
    udpPort = site.udpPort
    sourcePorts = site.udpSourcePorts
    mtu = site.mtu
    ttl = site.ttl
    dscp = site.dscp
    ipv4UDPChecksum = site.udpChecksumIPv4
    acceptsOnlyKnownVTEPs = site.acceptedVTEPs == .known
  }

  /// Adds a bridge domain and returns its index.
  public mutating func addDomain(vni: UInt32, learnFlags: UInt8) -> UInt16 {
    domains.append(Domain(vni: vni, learnFlags: learnFlags, members: [], floodVTEPs: []))
    return UInt16(domains.count - 1)
  }

  /// Adds a port member (an interface, untagged when `vlan` is 0) to a domain.
  public mutating func addMember(interface: UInt16, vlan: UInt16, domain: UInt16) -> UInt16 {
    members.append(Member(interface: interface, vlan: vlan, domain: domain))
    let member = UInt16(members.count - 1)
    let column = vlan == 0 ? ForwardingState.untaggedColumn : Int(vlan)
    memberByVLAN[Int(interface) * ForwardingState.vlanColumns + column] = member
    domains[Int(domain)].members.append(member)
    return member
  }

  public func build() -> ForwardingState { ForwardingState(self) }
}

/// Which data-plane learning a bridge domain does.
public enum LearnFlags {
  /// Learn source MACs of frames from local access ports.
  public static let local: UInt8 = 1
  /// Learn inner source MACs of decapsulated frames (off where EVPN supplies them).
  public static let decap: UInt8 = 2
}
