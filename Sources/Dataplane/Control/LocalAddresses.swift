/// What local hosts hold, typed, for the control plane to advertise (the `show` rows are
/// for people and JSON clients, not for other modules).
extension SwitchCore {
  /// A MAC learnt on a local port.
  public struct LocalMAC: Sendable, Hashable {
    public var vni: UInt32
    public var mac: MACAddress
    /// The access port it was learnt on ("ifname" or "ifname.VLAN").
    public var port: String = ""

    public init(vni: UInt32, mac: MACAddress, port: String = "") {
      self.vni = vni
      self.mac = mac
      self.port = port
    }
  }

  /// An IP binding learnt from a local ARP or neighbour-discovery packet.
  public struct LocalBinding: Sendable, Hashable {
    public var vni: UInt32
    public var ip: IPAddress
    public var mac: MACAddress

    public init(vni: UInt32, ip: IPAddress, mac: MACAddress) {
      self.vni = vni
      self.ip = ip
      self.mac = mac
    }
  }

  /// Current entries of origin `.local` in the VNIs `vnis`, sorted by VNI then MAC. Read
  /// like `fdbRows`: lock-free pages, not a snapshot.
  public func localMACs(in vnis: Set<UInt32>) -> [LocalMAC] {
    let state = self.state
    var found = Set<LocalMAC>()
    var cursor: Int? = 0
    while let from = cursor {
      cursor = fdb.scan(from: from, maxEntries: Self.fdbPageScan) { key, entry in
        guard let vni = listedVNI(key, entry, state: state, domain: nil, origin: .local) else { return }
        if vnis.contains(vni) {
          found.insert(LocalMAC(vni: vni, mac: key.mac, port: state.memberName(entry.index)))
        }
      }
    }
    return found.sorted { ($0.vni, $0.mac.rawValue) < ($1.vni, $1.mac.rawValue) }
  }

  /// The ARP table's bindings that are not the control plane's, in the VNIs `vnis`,
  /// sorted by VNI then IP.
  public func localBindings(in vnis: Set<UInt32>) -> [LocalBinding] {
    let state = self.state
    var found: [LocalBinding] = []
    arp.forEach { domain, ip, value in
      guard value & ARPTable.controlBit == 0, let vni = state.vni(ofDomain: domain), vnis.contains(vni)
      else { return }
      found.append(LocalBinding(vni: vni, ip: ip, mac: MACAddress(rawValue: value & ARPTable.macMask)))
    }
    return found.sorted { $0.vni != $1.vni ? $0.vni < $1.vni : $0.ip < $1.ip }
  }
}
