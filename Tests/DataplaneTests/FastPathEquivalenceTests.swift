import XCTest

@testable import Dataplane

/// The batch loops' fast paths (flow cache, source cache, one-probe FDB lookup, outer
/// header masks) must forward exactly as the general path does. Two switches get the
/// same mixed traffic, batch by batch, one with the fast paths off: after every batch
/// every port's output (bytes and order), every counter and, at the end, the FDB must
/// be the same. The traffic mixes repeated flows (so that the flow cache fills and
/// hits), moves, ARP, broadcast, unknown unicast, in-band and kernel-stripped VLAN tags,
/// oversize and malformed frames, several VTEPs and VNIs, clock ticks with aging, and
/// FDB flushes between batches.
final class FastPathEquivalenceTests: XCTestCase {
  typealias S = TestSite

  func testIPv4UnderlayFastPathsForwardAsTheGeneralPath() {
    run(config: S.config(agingTime: 4), ipv6: false, seed: 1)
  }

  func testIPv6UnderlayFastPathsForwardAsTheGeneralPath() {
    run(config: S.config(ipv6: true, agingTime: 4), ipv6: true, seed: 2)
  }

  func testARPSuppressionAndStaticMACsFastPathsForwardAsTheGeneralPath() {
    var config = S.config(agingTime: 4)
    config.bridgeDomains[0].arpSuppression = true
    config.staticMACs = [
      .init(vni: 100, mac: Traffic.remoteHost(7), target: .remote(S.remoteB)),
      .init(vni: 100, mac: Traffic.localHost(0), target: .port(.init(interface: "vm1"))),
    ]
    run(config: config, ipv6: false, seed: 3)
  }

  func testInheritedDSCPAndIPv4UDPChecksumFastPathsForwardAsTheGeneralPath() {
    var config = S.config(agingTime: 4)
    config.site.dscp = .inherit
    config.site.udpChecksumIPv4 = true
    run(config: config, ipv6: false, seed: 4)
  }

  /// Access ports behind a `virtio_net_hdr`: TCP segments (those of the cut-up TSO
  /// super-frames among them) are coalesced toward them, by both paths alike.
  func testCoalescingAccessPortsFastPathsForwardAsTheGeneralPath() {
    run(config: S.config(agingTime: 4), ipv6: false, seed: 5, virtioNetHeader: true)
  }

  /// The underlay behind a `virtio_net_hdr` too: runs of datagrams to one VTEP (the
  /// segments of cut-up TSO super-frames among them) leave as UDP GSO frames, built alike
  /// by both paths; IPv4 and IPv6 underlay.
  func testUnderlayGSOFastPathsForwardAsTheGeneralPath() {
    run(config: S.config(agingTime: 4), ipv6: false, seed: 6, virtioNetHeader: true, underlayGSO: true)
    run(
      config: S.config(ipv6: true, agingTime: 4), ipv6: true, seed: 7, virtioNetHeader: true,
      underlayGSO: true)
  }

  /// Frames received into a UMEM that every port's ring shares (`InPlaceTransmit`, as
  /// AF_XDP ports of one worker have it): the fast paths send them from where they are,
  /// encapsulated in their chunk's headroom or decapsulated by sending from the inner
  /// frame, and the output is byte for byte what the general path copies. IPv4 and IPv6.
  func testFramesSentInPlaceForwardAsTheGeneralPath() {
    run(config: S.config(agingTime: 4), ipv6: false, seed: 8, inPlace: true)
    run(config: S.config(ipv6: true, agingTime: 4), ipv6: true, seed: 9, inPlace: true)
    XCTAssertGreaterThan(sentInPlace, 5_000, "frames left in place")
  }

  // MARK: Driver

  /// Each configuration three times: the flow cache chosen batch by batch, always
  /// probed, and always bypassed (the loop variant for traffic with many flows).
  private func run(
    config: SiteConfig, ipv6: Bool, seed: UInt64, virtioNetHeader: Bool = false, underlayGSO: Bool = false,
    inPlace: Bool = false
  ) {
    for caching in [nil, true, false] as [Bool?] {
      run(
        config: config, ipv6: ipv6, seed: seed, caching: caching, virtioNetHeader: virtioNetHeader,
        underlayGSO: underlayGSO, inPlace: inPlace)
    }
  }

  private func run(
    config: SiteConfig, ipv6: Bool, seed: UInt64, caching: Bool?, virtioNetHeader: Bool, underlayGSO: Bool,
    inPlace: Bool, batches: Int = 400
  ) {
    let header: (String) -> Bool = { $0 == config.site.underlay ? underlayGSO : virtioNetHeader }
    let fast = OfflineSwitch(config: config, virtioNetHeader: header)
    let umem = inPlace ? ReceiveArea() : nil
    if let umem {
      for index in fast.core.interfaces.indices { fast.ports[index].transmitRing.pointee.inPlace = umem.view }
      receiveAreas[ObjectIdentifier(fast)] = umem
    }
    defer { receiveAreas[ObjectIdentifier(fast)] = nil }
    fast.pipeline.accessCaching.forced = caching
    fast.pipeline.decapCaching.forced = caching
    let general = OfflineSwitch(config: config, virtioNetHeader: header)
    general.pipeline.fastPathsEnabled = false
    if underlayGSO {
      // Joining in every batch: mixed traffic would mostly turn it off (the policy).
      fast.pipeline.underlayPolicy.forced = true
      general.pipeline.underlayPolicy.forced = true
    }
    var random = SplitMix64(seed: seed)
    var traffic = Traffic(ipv6: ipv6)
    var now: UInt32 = 1
    var fastFrames = 0
    for batch in 0..<batches {
      if random.next() % 8 == 0 { now &+= UInt32(random.next() % 3) }
      if batch % 97 == 50 {
        // Flushes between batches: the caches must notice.
        for sw in [fast, general] {
          sw.core.fdb.flush(bridgeDomain: 1)
          sw.core.fdb.flush(port: 1)
        }
      }
      let ingress = Traffic.ingressPorts[Int(random.next() % UInt64(Traffic.ingressPorts.count))]
      let count = 1 + Int(random.next() % 300)
      var frames: [Traffic.Frame] = []
      for _ in 0..<count { frames.append(traffic.frame(on: ingress, random: &random)) }
      for sw in [fast, general] { feed(sw, interface: ingress, frames: frames, now: now) }
      for port in fast.core.interfaces {
        let a = fast.takeOutput(port)
        let b = general.takeOutput(port)
        if a != b {
          XCTFail(
            "caching \(String(describing: caching)), batch \(batch) on \(ingress): \(port) output differs (\(a.count) vs \(b.count) frames)"
          )
          return
        }
        fastFrames += a.count
      }
      for index in 0..<Counter.count where fast.core.statistics[index] != general.core.statistics[index] {
        XCTFail(
          "batch \(batch) on \(ingress): counter \(index) is \(fast.core.statistics[index]) (fast) vs \(general.core.statistics[index])"
        )
        return
      }
    }
    XCTAssertEqual(fdbContents(fast), fdbContents(general))
    if let umem { sentInPlace += umem.claimed }
    if virtioNetHeader {
      let merged = fast.core.interfaces.indices.reduce(UInt64(0)) {
        $0 + fast.pipeline.coalescer(interface: UInt16($1)).mergedSegments
      }
      XCTAssertGreaterThan(merged, 100, "segments were coalesced")
    }
    if underlayGSO {
      XCTAssertGreaterThan(fast.core.statistics[Counter.underlayGSODatagrams], 100, "datagrams were joined")
    }
    // The traffic must have exercised the paths compared: frames went out, most of them
    // encapsulated or decapsulated, and the flow cache decided some.
    XCTAssertGreaterThan(fastFrames, batches * 20)
    XCTAssertGreaterThan(traffic.segmentFrames, 500, "segments of TSO super-frames went through both")
    XCTAssertGreaterThan(fast.core.statistics[Counter.encapsulated], 5_000)
    XCTAssertGreaterThan(fast.core.statistics[Counter.decapsulated], 5_000)
    XCTAssertGreaterThan(fast.core.statistics[Counter.floodCopies], 100)
    XCTAssertGreaterThan(fast.core.statistics[Counter.learnEventsQueued], 10)
  }

  private func feed(_ sw: OfflineSwitch, interface: String, frames: [Traffic.Frame], now: UInt32) {
    if now != lastAged[ObjectIdentifier(sw)] {
      sw.core.age(now: now)
      lastAged[ObjectIdentifier(sw)] = now
    }
    let index = sw.interfaceIndex(interface)!
    var start = 0
    while start < frames.count {
      let end = min(frames.count, start + FrameVector.capacity)
      var vector = FrameVector()
      var buffers: [UnsafeMutableRawPointer] = []
      vector.ingress = UInt16(index)
      vector.now = now
      let umem = receiveAreas[ObjectIdentifier(sw)]
      for (slot, frame) in frames[start..<end].enumerated() {
        if let umem, let chunk = umem.place(frame.bytes, chunk: slot) {
          vector.append(chunk, length: frame.bytes.count, vlanTag: frame.vlanTag, flags: frame.flags)
          continue
        }
        // Rounded up like ring and arena slots, so that a frame is readable to its slot end.
        let memory = UnsafeMutableRawPointer.allocate(
          byteCount: (frame.bytes.count + 64) & ~63, alignment: 64)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: (frame.bytes.count + 64) & ~63)
        frame.bytes.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: frame.bytes.count) }
        buffers.append(memory)
        vector.append(memory, length: frame.bytes.count, vlanTag: frame.vlanTag, flags: frame.flags)
      }
      sw.process(&vector)
      _ = sw.core.drainLearnQueues()
      sw.flush()
      // The batch released and every frame sent: the chunks go back to the kernel.
      umem?.releaseBatch()
      for buffer in buffers { buffer.deallocate() }
      start = end
    }
  }

  private var lastAged: [ObjectIdentifier: UInt32] = [:]
  private var receiveAreas: [ObjectIdentifier: ReceiveArea] = [:]
  private var sentInPlace = 0

  /// A UMEM's receive area as an AF_XDP port leaves it: a frame per chunk, past 256 bytes
  /// of headroom (XDP_PACKET_HEADROOM), the rest of the chunk filled with a pattern.
  private final class ReceiveArea {
    static let chunkShift = 14
    static let chunks = FrameVector.capacity
    static let headroom = 256
    let area: UnsafeMutableRawPointer
    let keep: UnsafeMutablePointer<UInt8>
    let view: UnsafeMutablePointer<InPlaceTransmit>
    /// Frames the pipeline claimed for sending in place.
    private(set) var claimed = 0

    init() {
      let bytes = Self.chunks << Self.chunkShift
      area = .allocate(byteCount: bytes, alignment: 4096)
      area.initializeMemory(as: UInt8.self, repeating: 0xA5, count: bytes)
      keep = .allocate(capacity: Self.chunks)
      keep.initialize(repeating: 0, count: Self.chunks)
      view = .allocate(capacity: 1)
      view.initialize(
        to: InPlaceTransmit(area: area, receiveBytes: bytes, chunkShift: Self.chunkShift, keep: keep))
    }

    deinit {
      area.deallocate()
      keep.deallocate()
      view.deallocate()
    }

    /// The frame's copy in chunk `chunk`, or nil when it does not fit one.
    func place(_ bytes: [UInt8], chunk: Int) -> UnsafeMutableRawPointer? {
      let size = 1 << Self.chunkShift
      guard Self.headroom + bytes.count <= size else { return nil }
      let start = area + (chunk << Self.chunkShift)
      start.initializeMemory(as: UInt8.self, repeating: 0xA5, count: size)
      let frame = start + Self.headroom
      bytes.withUnsafeBytes { frame.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
      return frame
    }

    func releaseBatch() {
      for chunk in 0..<Self.chunks where keep[chunk] != 0 {
        claimed += 1
        keep[chunk] = 0
      }
    }
  }

  private func fdbContents(_ sw: OfflineSwitch) -> [String] {
    var rows: [String] = []
    sw.core.fdb.forEach { key, entry in rows.append("\(key.rawValue) \(entry.rawValue)") }
    return rows.sorted()
  }
}

/// Mixed traffic for `FastPathEquivalenceTests`: hosts behind each access port, remote
/// hosts behind two VTEPs and an unknown one, in VNIs 100 and 200 (and an unknown VNI).
private struct Traffic {
  struct Frame {
    var bytes: [UInt8]
    var vlanTag: UInt32 = 0
    var flags: UInt8 = 0
  }

  static let ingressPorts = ["vm1", "vm2", "trunk0", "vm3", "eth1", "eth1", "vm1"]
  let ipv6: Bool
  var sequence: UInt16 = 0
  /// The rest of a TSO super-frame cut up as an access port does (`SuperFrame`), sent
  /// back to back on `segmentsPort` before anything else from that port.
  var segments: [Frame] = []
  var segmentsPort = ""
  var segmentFrames = 0

  init(ipv6: Bool) { self.ipv6 = ipv6 }

  static func localHost(_ index: Int) -> MACAddress {
    MACAddress(rawValue: 0x02_AA_00_00_00_00 | UInt64(index))
  }
  static func remoteHost(_ index: Int) -> MACAddress {
    MACAddress(rawValue: 0x02_CC_00_00_00_00 | UInt64(index))
  }

  /// Hosts 0-3 live on vm1, 4-5 on vm2, 6-7 on trunk0 VLAN 10 (VNI 100); 8-9 on vm3 and
  /// trunk0 VLAN 20 (VNI 200).
  static func home(of host: Int) -> (port: String, vlan: UInt16?) {
    switch host {
    case 0...3: return ("vm1", nil)
    case 4...5: return ("vm2", nil)
    case 6...7: return ("trunk0", 10)
    case 8: return ("vm3", nil)
    default: return ("trunk0", 20)
    }
  }

  mutating func frame(on port: String, random: inout SplitMix64) -> Frame {
    sequence &+= 1
    if port == segmentsPort && !segments.isEmpty {
      segmentFrames += 1
      return segments.removeFirst()
    }
    if port != "eth1" && pick(&random, 40) == 0, let first = superFrameSegments(on: port, &random) {
      return first
    }
    return port == "eth1" ? underlayFrame(&random) : accessFrame(on: port, &random)
  }

  /// A TCP super-frame from a host at home on `port` to a remote or local host, cut into
  /// segments of a random MSS; returns the first and keeps the rest for the next frames.
  private mutating func superFrameSegments(on port: String, _ random: inout SplitMix64) -> Frame? {
    let candidates = (0..<10).filter { Self.home(of: $0).port == port }
    guard !candidates.isEmpty else { return nil }
    let host = candidates[pick(&random, candidates.count)]
    let vlan = Self.home(of: host).vlan
    let destination =
      pick(&random, 2) == 0 ? Self.remoteHost(pick(&random, 8)) : Self.localHost(pick(&random, 10))
    let bytes = FrameBuilder.tcpFrame(
      link: .init(destination: destination, source: Self.localHost(host)),
      source: IPAddress("192.168.0.\(1 + host)")!, destination: IPAddress("192.168.1.9")!, sourcePort: 2000,
      destinationPort: 5201, sequenceNumber: UInt32(sequence) << 16, flags: [.ack, .psh],
      payload: Array(repeating: 0x33, count: 3000 + pick(&random, 6000)), ipv4: .init(dontFragment: true))
    let mss = [536, 1400, 1448][pick(&random, 3)]
    let header = VirtioNetHeader(
      flags: VirtioNetHeader.needsChecksum, gsoType: 1, headerLength: 54, gsoSize: UInt16(mss),
      checksumStart: 34, checksumOffset: 16)
    var cut: [Frame] = []
    bytes.withUnsafeBytes { raw in
      guard var superFrame = try? SuperFrame(frame: raw.baseAddress!, length: raw.count, header: header)
      else {
        return
      }
      var buffer = [UInt8](repeating: 0, count: 2048)
      while !superFrame.isFinished {
        let length = buffer.withUnsafeMutableBytes { superFrame.writeNext(to: $0.baseAddress!) }
        // Segments of a tagged host carry the tag as the kernel reports it.
        cut.append(
          Frame(
            bytes: Array(buffer[0..<length]),
            vlanTag: vlan.map { FrameVector.vlanTagPresent | UInt32($0) } ?? 0,
            flags: FrameFlags.checksumValid))
      }
    }
    guard !cut.isEmpty else { return nil }
    segments = Array(cut.dropFirst())
    segmentsPort = port
    segmentFrames += 1
    return cut[0]
  }

  private func pick(_ random: inout SplitMix64, _ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }

  private func inner(
    from source: MACAddress, to destination: MACAddress, vlan: UInt16?, _ random: inout SplitMix64
  )
    -> [UInt8]
  {
    let link = FrameBuilder.EthernetHeaderFields(
      destination: destination, source: source, vlan: vlan.map { .init(vlanID: $0) })
    let size = [0, 0, 0, 18, 200, 1400, 1460, 1480][pick(&random, 8)]
    switch pick(&random, 6) {
    case 0:
      return FrameBuilder.arpRequestFrame(
        senderMAC: source, senderIP: .v4(0x0A00_0000 | UInt32(pick(&random, 16))),
        targetIP: .v4(0x0A00_0000 | UInt32(pick(&random, 16))), vlan: vlan.map { .init(vlanID: $0) },
        padToMinimum: true)
    case 1:
      return FrameBuilder.tcpFrame(
        link: link, source: IPAddress("192.168.0.\(1 + pick(&random, 4))")!,
        destination: IPAddress("192.168.1.9")!,
        sourcePort: UInt16(1000 + pick(&random, 3)), destinationPort: 80, sequenceNumber: UInt32(sequence),
        flags: [.ack], payload: Array(repeating: 0x11, count: size),
        ipv4: .init(typeOfService: UInt8(pick(&random, 64)) << 2),
        padToMinimum: true)
    case 2:
      return FrameBuilder.udpFrame(
        link: link, source: IPAddress("fd00:1::\(1 + pick(&random, 3))")!,
        destination: IPAddress("fd00:1::99")!,
        sourcePort: 5000, destinationPort: UInt16(53 + pick(&random, 2)),
        payload: Array(repeating: 7, count: size),
        ipv6: .init(trafficClass: UInt8(pick(&random, 256))), padToMinimum: true)
    default:
      return FrameBuilder.udpFrame(
        link: link, source: IPAddress("10.1.0.\(1 + pick(&random, 4))")!, destination: IPAddress("10.2.0.1")!,
        sourcePort: UInt16(4000 + pick(&random, 3)), destinationPort: 4789 + UInt16(pick(&random, 2)),
        payload: Array(repeating: 0x22, count: size), padToMinimum: true)
    }
  }

  /// A destination: a local host, a remote host, broadcast, multicast or unknown.
  private func destination(_ random: inout SplitMix64) -> MACAddress {
    switch pick(&random, 20) {
    case 0: return .broadcast
    case 1: return MACAddress(rawValue: 0x01_00_5E_00_00_01)
    case 2: return MACAddress(rawValue: 0x02_EE_00_00_00_00 | UInt64(pick(&random, 1000)))
    case 3...9: return Self.localHost(pick(&random, 10))
    default: return Self.remoteHost(pick(&random, 8))
    }
  }

  private func accessFrame(on port: String, _ random: inout SplitMix64) -> Frame {
    // Mostly hosts at home; sometimes one elsewhere (a move) or a bad source.
    let candidates = (0..<10).filter { Self.home(of: $0).port == port }
    var host = candidates.isEmpty ? 0 : candidates[pick(&random, candidates.count)]
    if pick(&random, 25) == 0 { host = pick(&random, 10) }
    var vlan = Self.home(of: host).vlan
    if port == "trunk0" && pick(&random, 20) == 0 { vlan = [0, 30][pick(&random, 2)] }
    var source = Self.localHost(host)
    if pick(&random, 60) == 0 {
      source = [MACAddress(rawValue: 0x01_00_00_00_00_01), .zero][pick(&random, 2)]
    }
    let bytes = inner(from: source, to: destination(&random), vlan: vlan, &random)
    switch pick(&random, 30) {
    case 0: return Frame(bytes: Array(bytes.prefix(pick(&random, 14))))
    case 1 where vlan != nil && bytes.count > 18:
      // Tag stripped by the kernel, as AF_PACKET reports it.
      return Frame(bytes: S.untagged(bytes), vlanTag: FrameVector.vlanTagPresent | UInt32(vlan!))
    default:
      if let vlan, bytes.count > 18, pick(&random, 2) == 0 {
        return Frame(bytes: S.untagged(bytes), vlanTag: FrameVector.vlanTagPresent | UInt32(vlan))
      }
      return Frame(bytes: bytes)
    }
  }

  private typealias S = TestSite

  private func underlayFrame(_ random: inout SplitMix64) -> Frame {
    let remote = pick(&random, 8)
    var vni: UInt32 = [100, 100, 100, 200, 777][pick(&random, 5)]
    let innerFrame = inner(from: Self.remoteHost(remote), to: destination(&random), vlan: nil, &random)
    let sources: [IPAddress] =
      ipv6 ? [S.remote6, S.remote6, IPAddress("fd00::9")!] : [S.remoteA, S.remoteB, IPAddress("10.0.0.9")!]
    let source = remote < 6 ? sources[remote % 2] : sources[pick(&random, 3)]
    let local = ipv6 ? S.local6 : S.local4
    var checksum: FrameBuilder.UDPChecksum? = nil
    if !ipv6 && pick(&random, 10) == 0 { checksum = .computed }
    if pick(&random, 50) == 0 { vni = 300 }
    var bytes = S.vxlan(innerFrame, vni: vni, from: source, to: local, checksum: checksum)
    var flags: UInt8 = 0
    switch pick(&random, 40) {
    case 0: bytes[bytes.count > 30 ? 24 : 0] ^= 0x40  // IPv4 header checksum (or garbage)
    case 1: bytes = Array(bytes.prefix(pick(&random, bytes.count)))
    case 2: bytes[(ipv6 ? 62 : 42)] ^= 0x08  // the VXLAN I flag
    case 3: flags = FrameFlags.checksumValid
    case 4: bytes[(ipv6 ? 56 : 36)] ^= 0x01  // destination port
    case 5: bytes = S.tagged(bytes, vlan: 5)  // outer 802.1Q
    default: break
    }
    return Frame(bytes: bytes, flags: flags)
  }
}

/// Edge cases of the decap fast path's outer-header checks, each through a switch with
/// the fast paths on and one with them off: both must agree, and with the general
/// path's verdict.
final class DecapFastPathEdgeTests: XCTestCase {
  typealias S = TestSite

  private func twins() -> (OfflineSwitch, OfflineSwitch) {
    let fast = OfflineSwitch(config: S.config())
    let general = OfflineSwitch(config: S.config())
    general.pipeline.fastPathsEnabled = false
    for sw in [fast, general] {
      // hostA lives on vm1: known unicast for decapsulated frames.
      sw.forward(interface: "vm1", frames: [S.ping(from: S.hostA, to: .broadcast)])
      for port in sw.ports { _ = port.takeTransmitted() }
    }
    return (fast, general)
  }

  /// A VXLAN frame to 0.0.0.0, UDP port 0, otherwise well formed, is not for this VTEP:
  /// with the fast path on or off (an "off" that still compared against some address
  /// and port would take it).
  func testFrameToAnotherAddressAndPortIsDroppedWithTheFastPathOnOrOff() {
    let (fast, general) = twins()
    let frame = S.vxlan(
      S.ping(from: S.hostR, to: S.hostA), from: S.remoteA, to: IPAddress("0.0.0.0")!, destinationPort: 0)
    for sw in [fast, general] {
      sw.forward(interface: "eth1", frames: [frame])
      XCTAssertEqual(sw.drops(.notForLocalVTEP), 1)
      XCTAssertEqual(sw.takeOutput("vm1"), [])
    }
  }

  /// A frame longer than an IP length field can describe, whose IP datagram is followed
  /// by a trailer: the 16-bit lengths must not wrap into a match; both paths deliver the
  /// inner frame alone.
  func testFrameLongerThanItsLengthFieldsDeliversTheDatagramOnly() {
    let (fast, general) = twins()
    let inner = S.ping(from: S.hostR, to: S.hostA)
    let datagram = S.vxlan(inner)
    // Total length + 14 and frame length agree modulo 65536: a wrapped compare matches.
    let frame = datagram + [UInt8](repeating: 0xEE, count: 65536)
    for sw in [fast, general] {
      sw.forward(interface: "eth1", frames: [frame])
      XCTAssertEqual(sw.takeOutput("vm1"), [inner])
      XCTAssertEqual(sw.totalDrops(), 0)
    }
  }
}
