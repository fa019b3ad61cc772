@testable import Dataplane

/// The frame pipeline: access and underlay ingress, through the fast paths (flow cache
/// forced on or off, chosen by the input) on one switch and the general path on a twin.
/// Both get the same frames, so every input also checks that the fast paths forward
/// exactly as the general path does (outputs and every counter), besides output lengths.
///
/// Input: one control byte, two bytes of kernel VLAN tag, then the frame. Control bits
/// 0-1 pick the ingress port (eth1, vm1, trunk0, vm3), bit 2 forces the flow caches on,
/// bits 3-5 are the receive flags, bit 6 marks the VLAN tag as stripped by the kernel, bit
/// 7 advances the clock by a second (aging). Each frame goes through alone, then twice in
/// one batch after learning, so the second copy can hit a cached flow.
final class PipelineFuzzTarget: FuzzTarget {
  static let ingressPorts = ["eth1", "vm1", "trunk0", "vm3"]
  static let underlayMAC = MACAddress("02:00:00:00:00:01")!
  static let remoteA = IPAddress("10.0.0.2")!
  static let remoteB = IPAddress("10.0.0.3")!
  static let mtu = 1500

  let fast: OfflineSwitch
  let general: OfflineSwitch
  var now: UInt32 = 1
  /// Reused receive memory; a frame is readable up to the next 64-byte boundary, as in
  /// ring and arena slots.
  let memory = UnsafeMutableRawPointer.allocate(byteCount: 3 * 16_448, alignment: 64)

  init() {
    let config = Self.config()
    fast = OfflineSwitch(config: config)
    general = OfflineSwitch(config: config)
    general.pipeline.fastPathsEnabled = false
    // Learned MACs on both sides, so that unicast lookups hit: hosts on vm1, vm2 and
    // trunk0 VLAN 10, and one behind each remote VTEP.
    for sw in [fast, general] {
      sw.forward(interface: "vm1", frames: [Self.ping(from: "02:aa:00:00:00:01")])
      sw.forward(interface: "vm2", frames: [Self.ping(from: "02:aa:00:00:00:02")])
      sw.forward(interface: "trunk0", frames: [Self.ping(from: "02:aa:00:00:00:03", vlan: 10)])
      sw.forward(
        interface: "eth1", frames: [Self.vxlan(Self.ping(from: "02:cc:00:00:00:09"), from: Self.remoteA)])
      sw.forward(
        interface: "eth1", frames: [Self.vxlan(Self.ping(from: "02:cc:00:00:00:0a"), from: Self.remoteB)])
      for port in sw.ports { _ = port.takeTransmitted() }
    }
  }

  static func config() -> SiteConfig {
    var site = SiteConfig.Site(name: "fuzz", vtep: IPAddress("10.0.0.1")!, underlay: "eth1")
    site.underlayMAC = underlayMAC
    site.mtu = mtu
    site.agingTime = 30
    site.fdbCapacity = 1 << 12
    var config = SiteConfig(site: site)
    config.neighbors = [
      .init(ip: remoteA, mac: MACAddress("02:00:00:00:00:02")!),
      .init(ip: remoteB, mac: MACAddress("02:00:00:00:00:03")!),
    ]
    var blue = SiteConfig.BridgeDomain(vni: 100)
    blue.ports = [.init(interface: "vm1"), .init(interface: "vm2"), .init(interface: "trunk0", vlan: 10)]
    blue.flood = [remoteA, remoteB]
    blue.arpSuppression = true
    var green = SiteConfig.BridgeDomain(vni: 200)
    green.ports = [.init(interface: "vm3"), .init(interface: "trunk0", vlan: 20)]
    green.flood = [remoteB]
    config.bridgeDomains = [blue, green]
    config.staticMACs = [
      .init(vni: 100, mac: MACAddress("02:bb:00:00:00:07")!, target: .remote(remoteB)),
      .init(vni: 200, mac: MACAddress("02:bb:00:00:00:08")!, target: .port(.init(interface: "vm3"))),
    ]
    return config
  }

  static func ping(from source: String, vlan: UInt16? = nil) -> [UInt8] {
    FrameBuilder.icmpEchoFrame(
      link: .init(destination: .broadcast, source: MACAddress(source)!, vlan: vlan.map { .init(vlanID: $0) }),
      source: IPAddress("192.168.1.1")!, destination: IPAddress("192.168.1.2")!, kind: .request,
      identifier: 7, sequenceNumber: 1, payload: Array(repeating: 0x5A, count: 18))
  }

  static func vxlan(_ inner: [UInt8], from source: IPAddress) -> [UInt8] {
    FrameBuilder.vxlanFrame(
      inner: inner, vni: 100,
      underlay: .init(
        link: .init(destination: underlayMAC, source: MACAddress("02:00:00:00:00:02")!), source: source,
        destination: IPAddress("10.0.0.1")!, sourcePort: 50000, destinationPort: 4789,
        ipv4: .init(dontFragment: true)))
  }

  func run(_ input: UnsafeRawBufferPointer) {
    guard input.count >= 3 else { return }
    let control = input[0]
    let frame = UnsafeRawBufferPointer(rebasing: input[3...])
    // Frames longer than the largest receive slot never reach the pipeline.
    guard frame.count <= 16_384 else { return }
    let ingress = Self.ingressPorts[Int(control & 3)]
    fast.pipeline.accessCaching.forced = control & 4 != 0
    fast.pipeline.decapCaching.forced = control & 4 != 0
    let flags = (control >> 3) & 7
    let vlanTag =
      control & 0x40 != 0 ? FrameVector.vlanTagPresent | UInt32(input[1]) << 8 | UInt32(input[2]) : 0
    if control & 0x80 != 0 {
      // The ager runs when the clock moves, as in the daemon (not per batch: it scans the FDB).
      now &+= 1
      for sw in [fast, general] { _ = sw.core.age(now: now) }
    }
    for copies in [1, 2] {
      for sw in [fast, general] {
        feed(sw, ingress: ingress, frame: frame, copies: copies, vlanTag: vlanTag, flags: flags)
      }
      compareAndCheckOutputs()
    }
  }

  private func feed(
    _ sw: OfflineSwitch, ingress: String, frame: UnsafeRawBufferPointer, copies: Int, vlanTag: UInt32,
    flags: UInt8
  ) {
    var vector = FrameVector()
    vector.ingress = UInt16(sw.interfaceIndex(ingress)!)
    vector.now = now
    let stride = 16_448
    for copy in 0..<copies {
      let slot = memory + copy * stride
      slot.initializeMemory(as: UInt8.self, repeating: 0, count: stride)
      if let base = frame.baseAddress { slot.copyMemory(from: base, byteCount: frame.count) }
      vector.append(slot, length: frame.count, vlanTag: vlanTag, flags: flags)
    }
    sw.process(&vector)
    _ = sw.core.drainLearnQueues()
    sw.flush()
  }

  private func compareAndCheckOutputs() {
    for (index, port) in fast.ports.enumerated() {
      let fastOut = port.takeTransmitted()
      let generalOut = general.ports[index].takeTransmitted()
      fuzzCheck(
        fastOut == generalOut, "\(port.name): the fast paths emitted other frames than the general path")
      let limit = port.name == "eth1" ? Self.mtu + 14 : port.transmitRing.pointee.maxFrameLength
      for frame in fastOut {
        fuzzCheck(
          frame.count >= 14 && frame.count <= limit, "\(port.name): emitted a \(frame.count)-byte frame")
      }
    }
    for index in 0..<Counter.count {
      fuzzCheck(
        fast.core.statistics[index] == general.core.statistics[index],
        "counter \(index): \(fast.core.statistics[index]) on the fast paths, \(general.core.statistics[index]) on the general path"
      )
    }
  }
}
