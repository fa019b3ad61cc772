@testable import Dataplane

/// A two-domain site used by the golden pipeline tests:
/// VNI 100 = vm1, vm2, trunk0 VLAN 10, flooding to 10.0.0.2 and 10.0.0.3;
/// VNI 200 = vm3 and trunk0 VLAN 20, no remote VTEPs.
enum TestSite {
  /// The `virtio_net_hdr` in front of a frame of `length` bytes with nothing left to do,
  /// as a port with the header sends it: all zero but the header length, which asks the
  /// kernel to copy the frame (up to 256 bytes) into its socket buffer.
  static func plainHeader(_ length: Int) -> [UInt8] {
    let copied = min(length, 256)
    return [0, 0, UInt8(copied & 0xFF), UInt8(copied >> 8), 0, 0, 0, 0, 0, 0]
  }

  static let underlayMAC = MACAddress("02:00:00:00:00:01")!
  static let remoteA = IPAddress("10.0.0.2")!
  static let remoteB = IPAddress("10.0.0.3")!
  /// A VTEP the configuration does not name.
  static let stranger = IPAddress("10.0.0.9")!
  static let remoteAMAC = MACAddress("02:00:00:00:00:02")!
  static let remoteBMAC = MACAddress("02:00:00:00:00:03")!
  static let local4 = IPAddress("10.0.0.1")!
  static let local6 = IPAddress("fd00::1")!
  static let remote6 = IPAddress("fd00::2")!

  static let hostA = MACAddress("02:aa:00:00:00:01")!
  static let hostB = MACAddress("02:aa:00:00:00:02")!
  static let hostR = MACAddress("02:cc:00:00:00:09")!

  static func config(ipv6: Bool = false, mtu: Int = 1500, agingTime: Int = 300) -> SiteConfig {
    var site = SiteConfig.Site(name: "test", vtep: ipv6 ? local6 : local4, underlay: "eth1")
    site.underlayMAC = underlayMAC
    site.mtu = mtu
    site.agingTime = agingTime
    site.fdbCapacity = 1 << 16
    var config = SiteConfig(site: site)
    if ipv6 {
      config.neighbors = [.init(ip: remote6, mac: remoteAMAC)]
    } else {
      config.neighbors = [.init(ip: remoteA, mac: remoteAMAC), .init(ip: remoteB, mac: remoteBMAC)]
    }
    var blue = SiteConfig.BridgeDomain(vni: 100)
    blue.ports = [.init(interface: "vm1"), .init(interface: "vm2"), .init(interface: "trunk0", vlan: 10)]
    blue.flood = ipv6 ? [remote6] : [remoteA, remoteB]
    var green = SiteConfig.BridgeDomain(vni: 200)
    green.ports = [.init(interface: "vm3"), .init(interface: "trunk0", vlan: 20)]
    config.bridgeDomains = [blue, green]
    return config
  }

  static func ping(
    from source: MACAddress, to destination: MACAddress, vlan: UInt16? = nil, payload: Int = 18,
    sequence: UInt16 = 1
  ) -> [UInt8] {
    FrameBuilder.icmpEchoFrame(
      link: .init(destination: destination, source: source, vlan: vlan.map { .init(vlanID: $0) }),
      source: IPAddress("192.168.1.1")!, destination: IPAddress("192.168.1.2")!, kind: .request,
      identifier: 7, sequenceNumber: sequence, payload: Array(repeating: 0x5A, count: payload))
  }

  /// What a remote VTEP sends us: `inner` in VXLAN from `source` to our VTEP.
  static func vxlan(
    _ inner: [UInt8], vni: UInt32 = 100, from source: IPAddress = remoteA, to destination: IPAddress = local4,
    sourcePort: UInt16 = 50000, destinationPort: UInt16 = 4789, checksum: FrameBuilder.UDPChecksum? = nil
  ) -> [UInt8] {
    FrameBuilder.vxlanFrame(
      inner: inner, vni: vni,
      underlay: .init(
        link: .init(destination: underlayMAC, source: remoteAMAC), source: source, destination: destination,
        sourcePort: sourcePort, destinationPort: destinationPort, udpChecksum: checksum,
        ipv4: .init(dontFragment: true)))
  }

  /// The frame vxswitch must emit to `vtep` for `inner` (source port taken from `emitted`).
  static func expectedEncap(
    _ inner: [UInt8], vni: UInt32 = 100, to vtep: IPAddress, nextHop: MACAddress, emitted: [UInt8],
    from local: IPAddress = local4
  ) -> [UInt8] {
    let portOffset = local.isIPv4 ? 34 : 54
    let sourcePort = UInt16(emitted[portOffset]) << 8 | UInt16(emitted[portOffset + 1])
    var flowLabel: UInt32 = 0
    if !local.isIPv4 {
      flowLabel = (UInt32(emitted[15] & 0x0F) << 16) | UInt32(emitted[16]) << 8 | UInt32(emitted[17])
    }
    return FrameBuilder.vxlanFrame(
      inner: inner, vni: vni,
      underlay: .init(
        link: .init(destination: nextHop, source: underlayMAC), source: local, destination: vtep,
        sourcePort: sourcePort, ipv4: .init(dontFragment: true), ipv6: .init(flowLabel: flowLabel)))
  }

  /// The same frame with its 802.1Q tag removed, or added.
  static func untagged(_ frame: [UInt8]) -> [UInt8] { Array(frame[0..<12]) + Array(frame[16...]) }
  static func tagged(_ frame: [UInt8], vlan: UInt16) -> [UInt8] {
    Array(frame[0..<12]) + [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] + Array(frame[12...])
  }
}

extension OfflineSwitch {
  func drops(_ reason: DropReason) -> UInt64 { core.statistics[Counter.drop(reason)] }
  func totalDrops() -> UInt64 { DropReason.allCases.reduce(0) { $0 + drops($1) } }
}
