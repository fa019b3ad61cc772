import XCTest

@testable import Dataplane

/// UDP GSO on the underlay (`UnderlaySegmenter`): a VM's TSO super-frame, cut up by the
/// switch as an access port does (`SuperFrame`) and switched toward one VTEP, leaves as
/// one UDP_L4 GSO frame. Byte-exact: the frame's header fields and `virtio_net_hdr` are
/// checked with this file's own checksum routine, and the frame cut up here as the
/// kernel's `__udp_gso_segment` / `inet_gso_segment` do (its checksum finished as a
/// device or `skb_checksum_help` would) equals, datagram by datagram, what the
/// per-datagram path sends. Then the rules that end a run.
final class UnderlaySegmenterTests: XCTestCase {
  typealias S = TestSite
  typealias C = TCPCoalescerTests
  static let remoteVM = MACAddress("02:bb:00:00:00:05")!
  static let otherRemoteVM = MACAddress("02:bb:00:00:00:06")!
  static let mss = 1398

  /// remoteVM is behind remoteA (remote6 over IPv6), otherRemoteVM behind remoteB.
  static func makeSwitch(ipv6: Bool = false, gso: Bool, udpChecksum: Bool = false) -> OfflineSwitch {
    var config = S.config(ipv6: ipv6)
    config.site.udpChecksumIPv4 = udpChecksum
    config.staticMACs = [.init(vni: 100, mac: Self.remoteVM, target: .remote(ipv6 ? S.remote6 : S.remoteA))]
    if !ipv6 {
      config.staticMACs.append(.init(vni: 100, mac: Self.otherRemoteVM, target: .remote(S.remoteB)))
    }
    return OfflineSwitch(config: config, virtioNetHeader: { gso && $0 == config.site.underlay })
  }

  /// A VM's TSO super-frame of `payload` bytes cut into segments of `mss` bytes, as the
  /// access port does before the pipeline sees them.
  static func segments(
    payload: Int, mss: Int = mss, destination: MACAddress = remoteVM, sequence: UInt32 = 1000,
    sourcePort: UInt16 = 40000
  ) -> [[UInt8]] {
    let (bytes, header) = superFrame(
      payload: payload, mss: mss, destination: destination, sequence: sequence, sourcePort: sourcePort)
    var output: [[UInt8]] = []
    bytes.withUnsafeBytes { raw in
      guard var frame = try? SuperFrame(frame: raw.baseAddress!, length: raw.count, header: header) else {
        return XCTFail("super-frame refused")
      }
      let scratch = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 64)
      defer { scratch.deallocate() }
      while !frame.isFinished {
        let length = frame.writeNext(to: scratch)
        output.append(Array(UnsafeRawBufferPointer(start: scratch, count: length)))
      }
    }
    return output
  }

  /// The VM's TSO super-frame itself, and its `virtio_net_hdr`.
  static func superFrame(
    payload: Int, mss: Int = mss, destination: MACAddress = remoteVM, sequence: UInt32 = 1000,
    sourcePort: UInt16 = 40000
  ) -> (bytes: [UInt8], header: VirtioNetHeader) {
    var whole = C.Segment(sequence: sequence, payload: payload, identification: 40, destination: destination)
    whole.flags = 0x18
    whole.sourcePort = sourcePort
    let header = VirtioNetHeader(
      flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.SegmentationType.tcpIPv4.rawValue,
      headerLength: 54, gsoSize: UInt16(mss), checksumStart: 34, checksumOffset: 16)
    return (C.frame(whole, pseudoHeaderChecksum: true), header)
  }

  static func be16(_ bytes: [UInt8], _ offset: Int) -> Int {
    Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
  }
  static func setBE16(_ bytes: inout [UInt8], _ offset: Int, _ value: Int) {
    bytes[offset] = UInt8(value >> 8 & 0xFF)
    bytes[offset + 1] = UInt8(value & 0xFF)
  }
  static func le16(_ bytes: [UInt8], _ offset: Int) -> Int {
    Int(bytes[offset]) | Int(bytes[offset + 1]) << 8
  }

  /// One's-complement addition of two 16-bit values (the kernel's `csum16_add`).
  static func add16(_ a: Int, _ b: Int) -> Int {
    let sum = a + b
    return (sum & 0xFFFF) + (sum >> 16)
  }

  /// The GSO frame cut into datagrams as the kernel does: the outer Ethernet, IP and UDP
  /// header copied in front of every `gsoSize` bytes of payload; the UDP length replaced
  /// and the pseudo-header sum in the checksum field adjusted for it (`csum16_add(
  /// csum16_sub(check, old length), new length)`), then the checksum finished over the
  /// datagram with that sum in place (0 sent as 0xFFFF); the IP length set, the IPv4
  /// identification counted up from the frame's and the header checksum recomputed.
  static func kernelSegments(_ gso: [UInt8]) -> [[UInt8]] {
    let header = Array(gso[0..<VirtioNetHeader.length])
    let frame = Array(gso[VirtioNetHeader.length...])
    let headerLength = le16(header, 2)
    let gsoSize = le16(header, 4)
    let checksumStart = le16(header, 6)
    let checksumField = checksumStart + le16(header, 8)
    let ipv6 = be16(frame, 12) == 0x86DD
    let oldLength = be16(frame, checksumStart + 4)
    let seed = be16(frame, checksumField)
    let identification = be16(frame, 18)
    var output: [[UInt8]] = []
    var offset = headerLength
    var index = 0
    while offset < frame.count {
      let payload = min(gsoSize, frame.count - offset)
      var datagram = Array(frame[0..<headerLength]) + Array(frame[offset..<(offset + payload)])
      let udpLength = 8 + payload
      setBE16(&datagram, checksumStart + 4, udpLength)
      setBE16(&datagram, checksumField, add16(add16(seed, 0xFFFF - oldLength), udpLength))
      var checksum = Int(~C.sum(Array(datagram[checksumStart...])))
      if checksum == 0 { checksum = 0xFFFF }
      setBE16(&datagram, checksumField, checksum)
      if ipv6 {
        setBE16(&datagram, 18, udpLength)
      } else {
        setBE16(&datagram, 16, datagram.count - 14)
        setBE16(&datagram, 18, (identification + index) & 0xFFFF)
        setBE16(&datagram, 24, 0)
        setBE16(&datagram, 24, Int(~C.sum(Array(datagram[14..<34]))))
      }
      output.append(datagram)
      offset += payload
      index += 1
    }
    return output
  }

  /// The per-datagram frame as the kernel's segmentation of a GSO frame starting with it
  /// at `index` would number it: IPv4 identification + `index`, header checksum redone.
  static func numbered(_ frame: [UInt8], _ index: Int) -> [UInt8] {
    guard be16(frame, 12) == 0x0800 else { return frame }
    var copy = frame
    setBE16(&copy, 18, (be16(frame, 18) + index) & 0xFFFF)
    setBE16(&copy, 24, 0)
    setBE16(&copy, 24, Int(~C.sum(Array(copy[14..<34]))))
    return copy
  }

  // MARK: Golden

  func checkGolden(ipv6: Bool, file: StaticString = #filePath, line: UInt = #line) {
    // Segments that fit the underlay MTU with 50 (70) bytes of encapsulation.
    let mss = ipv6 ? Self.mss - 20 : Self.mss
    let segments = Self.segments(payload: mss * 10 + 500, mss: mss)
    XCTAssertEqual(segments.count, 11, file: file, line: line)
    // Today's path, outer UDP checksums on, so that every byte can be compared.
    let plain = Self.makeSwitch(ipv6: ipv6, gso: false, udpChecksum: true)
    plain.forward(interface: "vm1", frames: segments)
    let datagrams = plain.takeOutput("eth1")
    XCTAssertEqual(datagrams.count, 11, file: file, line: line)

    let sw = Self.makeSwitch(ipv6: ipv6, gso: true)
    sw.forward(interface: "vm1", frames: segments)
    let sent = sw.takeOutput("eth1")
    XCTAssertEqual(sent.count, 1, "one GSO frame", file: file, line: line)
    // Every datagram after the first was encapsulated in the GSO frame itself.
    XCTAssertEqual(sw.pipeline.segmenter.pointee.joinedInPlace, 10, file: file, line: line)
    guard let gso = sent.first, datagrams.count == 11 else { return }
    let frame = Array(gso[VirtioNetHeader.length...])
    let transport = ipv6 ? 54 : 34
    let segmentSize = datagrams[0].count - transport - 8

    // The virtio_net_hdr: NEEDS_CSUM at the UDP checksum, UDP_L4, the datagram size.
    XCTAssertEqual(
      Array(gso[0..<VirtioNetHeader.length]),
      [1, 5] + C.le16(transport + 8) + C.le16(segmentSize) + C.le16(transport) + C.le16(6), file: file,
      line: line)
    // Outer header once, then every datagram's VXLAN header and inner frame.
    XCTAssertEqual(
      frame.count, transport + 8 + datagrams.reduce(0) { $0 + $1.count - transport - 8 }, file: file,
      line: line)
    XCTAssertEqual(
      Array(frame[(transport + 8)...]), datagrams.flatMap { $0[(transport + 8)...] }, file: file, line: line)
    // Lengths for the whole frame, the UDP checksum field the folded pseudo-header sum.
    let udpLength = frame.count - transport
    XCTAssertEqual(Self.be16(frame, transport + 4), udpLength, file: file, line: line)
    let pseudo: [UInt8]
    if ipv6 {
      XCTAssertEqual(Self.be16(frame, 18), udpLength, file: file, line: line)
      pseudo = Array(frame[22..<54]) + [0, 17] + C.be16(udpLength)
    } else {
      XCTAssertEqual(Self.be16(frame, 16), frame.count - 14, file: file, line: line)
      XCTAssertEqual(C.sum(Array(frame[14..<34])), 0xFFFF, "IPv4 header checksum", file: file, line: line)
      pseudo = Array(frame[26..<34]) + [0, 17] + C.be16(udpLength)
    }
    XCTAssertEqual(Self.be16(frame, transport + 6), Int(C.sum(pseudo)), file: file, line: line)
    // The rest of the outer header is the first datagram's.
    let varying: Set<Int> = ipv6 ? [18, 19, 58, 59, 60, 61] : [16, 17, 24, 25, 38, 39, 40, 41]
    for offset in 0..<(transport + 8) where !varying.contains(offset) {
      XCTAssertEqual(
        frame[offset], datagrams[0][offset], "outer header byte \(offset)", file: file, line: line)
    }

    // Cut up as the kernel does: what the per-datagram path sends, byte for byte.
    let cut = Self.kernelSegments(gso)
    XCTAssertEqual(cut.count, datagrams.count, file: file, line: line)
    for (index, (got, want)) in zip(cut, datagrams).enumerated() {
      XCTAssertEqual(got, Self.numbered(want, index), "datagram \(index)", file: file, line: line)
    }

    // Counters as the wire sees it: eleven datagrams either way, one GSO frame.
    let underlay = sw.interfaceIndex("eth1")!
    for s in [plain, sw] {
      XCTAssertEqual(s.core.statistics[Counter.txFrames(underlay)], 11, file: file, line: line)
      XCTAssertEqual(s.core.statistics[Counter.encapsulated], 11, file: file, line: line)
    }
    XCTAssertEqual(
      sw.core.statistics[Counter.txBytes(underlay)], plain.core.statistics[Counter.txBytes(underlay)],
      file: file, line: line)
    XCTAssertEqual(sw.core.statistics[Counter.underlayGSOFrames], 1, file: file, line: line)
    XCTAssertEqual(sw.core.statistics[Counter.underlayGSODatagrams], 11, file: file, line: line)
    XCTAssertEqual(plain.core.statistics[Counter.underlayGSOFrames], 0, file: file, line: line)
  }

  func testIPv4SuperFrameLeavesAsOneGSOFrameThatCutsIntoTheSameDatagrams() {
    checkGolden(ipv6: false)
  }

  func testIPv6SuperFrameLeavesAsOneGSOFrameThatCutsIntoTheSameDatagrams() {
    checkGolden(ipv6: true)
  }

  /// `continuesRun` compares the outer header in pieces laid out after the encapsulation's
  /// stores; every byte but the lengths and checksums must still count. Each byte of a
  /// second datagram's outer header changed in turn: the datagram continues the run
  /// only when the byte is one the kernel's segmentation sets per datagram.
  func checkEveryOuterHeaderByteCounts(ipv6: Bool, file: StaticString = #filePath, line: UInt = #line) {
    let mss = ipv6 ? Self.mss - 20 : Self.mss
    let plain = Self.makeSwitch(ipv6: ipv6, gso: false, udpChecksum: true)
    plain.forward(interface: "vm1", frames: Self.segments(payload: mss * 2, mss: mss))
    let datagrams = plain.takeOutput("eth1")
    XCTAssertEqual(datagrams.count, 2, file: file, line: line)
    guard datagrams.count == 2 else { return }
    let transport = ipv6 ? 54 : 34
    let datagram = OuterDatagram(frame: datagrams[0], length: datagrams[0].count)
    XCTAssertEqual(datagram?.transportOffset, transport, file: file, line: line)
    var state = UnderlaySegmenter()
    state.length = datagrams[0].count
    state.segments = 1
    state.transportOffset = transport
    state.isIPv6 = ipv6
    state.segmentSize = datagrams[0].count - transport - 8
    state.limit = 65535
    let perDatagram: Set<Int> = ipv6 ? [18, 19, 60, 61] : [16, 17, 24, 25, 40, 41]
    for offset in 0..<(transport + 8) {
      var second = datagrams[1]
      second[offset] ^= 0x5A
      let continues = datagrams[0].withUnsafeBytes { open in
        second.withUnsafeBytes { frame in
          TxRing.continuesRun(state, open.baseAddress!, frame.baseAddress!, second.count)
        }
      }
      XCTAssertEqual(
        continues, perDatagram.contains(offset), "outer header byte \(offset)", file: file, line: line)
    }
    let unchanged = datagrams[0].withUnsafeBytes { open in
      datagrams[1].withUnsafeBytes { frame in
        TxRing.continuesRun(state, open.baseAddress!, frame.baseAddress!, datagrams[1].count)
      }
    }
    XCTAssertTrue(unchanged, "the flow's next datagram continues the run", file: file, line: line)
  }

  func testEveryIPv4OuterHeaderByteButLengthsAndChecksumsMustMatch() {
    checkEveryOuterHeaderByteCounts(ipv6: false)
  }

  func testEveryIPv6OuterHeaderByteButLengthsAndChecksumsMustMatch() {
    checkEveryOuterHeaderByteCounts(ipv6: true)
  }

  // MARK: Deferred payloads

  /// What every port sent, and the switch's counters, after `run`.
  static func outcome(_ sw: OfflineSwitch, _ run: (OfflineSwitch) -> Void) -> ([String: [[UInt8]]], [UInt64])
  {
    run(sw)
    var sent: [String: [[UInt8]]] = [:]
    for name in sw.core.interfaces { sent[name] = sw.takeOutput(name) }
    let counters = (0..<Counter.count).map { sw.core.statistics[$0] }
    return (sent, counters)
  }

  /// A VM's super-frame cut with its segments' payloads left in it (`DeferredPayload`, as
  /// an AF_PACKET access port cuts it) leaves exactly as when every segment is copied
  /// whole: toward a VTEP through GSO frames (batches that join, whole or split over
  /// batches, and batches that do not), without GSO, to a local VM, and flooded (the
  /// general path), over IPv4 and IPv6 underlays.
  func checkDeferredPayloads(
    ipv6: Bool, gso: Bool, destination: MACAddress, batch: Int = FrameVector.capacity, joining: Bool = true,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    let mss = ipv6 ? Self.mss - 20 : Self.mss
    let (bytes, header) = Self.superFrame(payload: mss * 20 + 333, mss: mss, destination: destination)
    let localVM = MACAddress("02:aa:00:00:00:77")!
    var outcomes: [([String: [[UInt8]]], [UInt64])] = []
    for deferring in [true, false] {
      let sw = Self.makeSwitch(ipv6: ipv6, gso: gso)
      sw.pipeline.segmentsUnderlay = joining
      sw.forward(interface: "vm2", frames: [S.ping(from: localVM, to: Self.remoteVM)])
      _ = sw.takeOutput("eth1")
      outcomes.append(
        Self.outcome(sw) {
          XCTAssertTrue(
            $0.forward(
              interface: "vm1", superFrame: bytes, header: header, deferring: deferring, batch: batch),
            file: file, line: line)
        })
    }
    let (deferred, copied) = (outcomes[0], outcomes[1])
    XCTAssertEqual(deferred.0, copied.0, "frames sent", file: file, line: line)
    XCTAssertEqual(deferred.1, copied.1, "counters", file: file, line: line)
    XCTAssertGreaterThanOrEqual(
      deferred.0.values.reduce(0) { $0 + $1.count }, 1, "something was sent", file: file, line: line)
  }

  func testDeferredPayloadsJoinTheGSOFrameAsCopiedSegmentsDo() {
    for ipv6 in [false, true] {
      checkDeferredPayloads(ipv6: ipv6, gso: true, destination: Self.remoteVM)
      checkDeferredPayloads(ipv6: ipv6, gso: true, destination: Self.remoteVM, batch: 7)
      checkDeferredPayloads(ipv6: ipv6, gso: true, destination: Self.remoteVM, joining: false)
      checkDeferredPayloads(ipv6: ipv6, gso: false, destination: Self.remoteVM)
    }
  }

  func testDeferredPayloadsReachALocalVMAndTheFloodAsCopiedSegmentsDo() {
    for gso in [true, false] {
      checkDeferredPayloads(ipv6: false, gso: gso, destination: MACAddress("02:aa:00:00:00:77")!)
      checkDeferredPayloads(ipv6: false, gso: gso, destination: MACAddress("02:aa:00:00:00:99")!, batch: 5)
    }
  }

  /// The GSO frames built from deferred segments are the golden ones: the whole payload,
  /// joined in place.
  func testDeferredSegmentsAreJoinedInPlace() {
    let (bytes, header) = Self.superFrame(payload: Self.mss * 10 + 500)
    let sw = Self.makeSwitch(gso: true)
    XCTAssertTrue(sw.forward(interface: "vm1", superFrame: bytes, header: header))
    let sent = sw.takeOutput("eth1")
    XCTAssertEqual(Self.runLengths(sent), [11])
    XCTAssertEqual(sw.pipeline.segmenter.pointee.joinedInPlace, 10)
    let plain = Self.makeSwitch(gso: false)
    plain.forward(interface: "vm1", frames: Self.segments(payload: Self.mss * 10 + 500))
    let datagrams = plain.takeOutput("eth1")
    XCTAssertEqual(
      sent.first.map { Array($0[(VirtioNetHeader.length + 42)...]) }, datagrams.flatMap { $0[42...] })
  }

  // MARK: Runs

  /// Frames sent for `segments` (one batch each), and the per-datagram frames.
  func send(_ batches: [[[UInt8]]], udpChecksum: Bool = false, ipv6: Bool = false) -> (
    gso: [[UInt8]], plain: [[UInt8]]
  ) {
    let sw = Self.makeSwitch(ipv6: ipv6, gso: true, udpChecksum: udpChecksum)
    let plain = Self.makeSwitch(ipv6: ipv6, gso: false, udpChecksum: udpChecksum)
    var gso: [[UInt8]] = []
    var datagrams: [[UInt8]] = []
    for batch in batches {
      sw.forward(interface: "vm1", frames: batch)
      plain.forward(interface: "vm1", frames: batch)
      gso += sw.takeOutput("eth1")
      datagrams += plain.takeOutput("eth1")
    }
    return (gso, datagrams)
  }

  /// Each GSO frame's datagram count (1 for a frame behind a plain header).
  static func runLengths(_ frames: [[UInt8]]) -> [Int] {
    frames.map { frame in
      if frame[1] == 0 { return 1 }
      let size = le16(frame, 4)
      return (frame.count - VirtioNetHeader.length - le16(frame, 2) + size - 1) / size
    }
  }

  func testRunOfOneLeavesAsWrittenBehindAPlainHeader() {
    let segment = Self.segments(payload: 700)
    let (gso, plain) = send([segment])
    XCTAssertEqual(gso, [S.plainHeader(plain[0].count) + plain[0]])
  }

  func testAnotherVTEPEndsTheRun() {
    let a = Self.segments(payload: Self.mss * 3)
    let b = Self.segments(payload: Self.mss * 2, destination: Self.otherRemoteVM)
    let (gso, plain) = send([a + b + a], udpChecksum: true)
    XCTAssertEqual(Self.runLengths(gso), [3, 2, 3])
    // The first datagram to B and the second run to A were written in the run being
    // built, then moved to a slot of their own: the same bytes all the same.
    let cut = gso.flatMap(Self.kernelSegments)
    XCTAssertEqual(cut.count, plain.count)
    let positions = [0, 1, 2, 0, 1, 0, 1, 2]
    for (index, (got, want)) in zip(cut, plain).enumerated()
    where got != Self.numbered(want, positions[index]) {
      XCTFail("datagram \(index) differs")
    }
  }

  /// Datagrams staged in a run are encapsulated without their UDP checksum; those that
  /// turn out not to continue it (another flow, here) get it summed as they leave the run:
  /// every datagram byte for byte as sent one by one, over IPv6 and over IPv4 with UDP
  /// checksums on.
  func testAnotherFlowLeavesTheRunWithItsChecksumSummed() {
    for ipv6 in [false, true] {
      let mss = ipv6 ? Self.mss - 20 : Self.mss
      let a = Self.segments(payload: mss * 3, mss: mss)
      // One datagram of B: it leaves alone, with the checksum summed for it.
      let b = Self.segments(payload: mss, mss: mss, sourcePort: 40001)
      let (gso, plain) = send([a + b + a], udpChecksum: true, ipv6: ipv6)
      XCTAssertEqual(Self.runLengths(gso), [3, 1, 3], "ipv6: \(ipv6)")
      // A run of one leaves as written, behind a plain header.
      let cut = gso.flatMap { $0[1] == 0 ? [Array($0[VirtioNetHeader.length...])] : Self.kernelSegments($0) }
      XCTAssertEqual(cut.count, plain.count)
      let positions = [0, 1, 2, 0, 0, 1, 2]
      for (index, (got, want)) in zip(cut, plain).enumerated()
      where got != Self.numbered(want, positions[index]) {
        XCTFail("datagram \(index) differs, ipv6: \(ipv6)")
      }
    }
  }

  func testInterleavedVTEPsAreNotJoined() {
    let a = Self.segments(payload: Self.mss * 2)
    let b = Self.segments(payload: Self.mss * 2, destination: Self.otherRemoteVM)
    let (gso, plain) = send([[a[0], b[0], a[1], b[1]]])
    XCTAssertEqual(gso, plain.map { S.plainHeader($0.count) + $0 })
  }

  func testShorterDatagramClosesTheRunAndLongerOneStartsANewOne() {
    // 3 full + 1 short, then the next super-frame's full ones: a new run.
    let first = Self.segments(payload: Self.mss * 3 + 100)
    let second = Self.segments(payload: Self.mss * 2, sequence: 1000 + UInt32(Self.mss * 3 + 100))
    let (gso, _) = send([first + second])
    XCTAssertEqual(Self.runLengths(gso), [4, 2])
  }

  func testSuperFramesOfOneFlowContinueTheRun() {
    let first = Self.segments(payload: Self.mss * 3)
    let second = Self.segments(payload: Self.mss * 2 + 10, sequence: 1000 + UInt32(Self.mss * 3))
    let (gso, _) = send([first + second])
    XCTAssertEqual(Self.runLengths(gso), [6])
  }

  func testRunsEndWithTheBatch() {
    let first = Self.segments(payload: Self.mss * 3)
    let second = Self.segments(payload: Self.mss * 2, sequence: 1000 + UInt32(Self.mss * 3))
    let (gso, _) = send([first, second])
    XCTAssertEqual(Self.runLengths(gso), [3, 2])
  }

  func testGSOFrameStaysWithin64KiB() {
    // Two super-frames of one flow, 60 full segments.
    let segments =
      Self.segments(payload: Self.mss * 30)
      + Self.segments(payload: Self.mss * 30, sequence: 1000 + UInt32(Self.mss * 30))
    let (gso, plain) = send([segments], udpChecksum: true)
    // 44 datagrams of 1460 bytes fit an IPv4 length of 65535, the 45th does not.
    XCTAssertEqual(Self.runLengths(gso), [44, 16])
    XCTAssertTrue(gso.allSatisfy { $0.count - VirtioNetHeader.length - 14 <= 0xFFFF })
    let cut = gso.flatMap(Self.kernelSegments)
    XCTAssertEqual(cut.count, plain.count)
    for (index, (got, want)) in zip(cut, plain).enumerated() where got != Self.numbered(want, index % 44) {
      XCTFail("datagram \(index) differs")
    }
  }

  func testSmallDatagramsRunUpToTheSegmentLimit() {
    // Pure ACK-sized frames of one flow: same size, joined, at most `maxSegments`.
    let frames = (0..<100).map { index -> [UInt8] in
      var segment = C.Segment(sequence: 1000 + UInt32(index) * 8, payload: 8, destination: Self.remoteVM)
      segment.identification = UInt16(index)
      return C.frame(segment)
    }
    let (gso, plain) = send([frames], udpChecksum: true)
    XCTAssertEqual(
      Self.runLengths(gso), [UnderlaySegmenter.maxSegments, 100 - UnderlaySegmenter.maxSegments])
    let cut = gso.flatMap(Self.kernelSegments)
    XCTAssertEqual(cut.count, plain.count)
    for (index, (got, want)) in zip(cut, plain).enumerated()
    where got != Self.numbered(want, index % UnderlaySegmenter.maxSegments) {
      XCTFail("datagram \(index) differs")
    }
  }

  func testSlotsAreReusedWithAFreshHeader() {
    // More batches than the ring has slots: a slot that held a GSO frame later holds a
    // run of one, which must go out behind a zeroed header.
    let sw = Self.makeSwitch(gso: true)
    sw.pipeline.underlayPolicy.forced = true
    let pair = Self.segments(payload: Self.mss * 2)
    let single = Self.segments(payload: 300)
    for round in 0..<300 {
      sw.forward(interface: "vm1", frames: round % 2 == 0 ? pair : single)
      let sent = sw.takeOutput("eth1")
      XCTAssertEqual(sent.count, 1)
      XCTAssertEqual(sent.first?[1], round % 2 == 0 ? 5 : 0, "round \(round)")
      if round % 2 == 1 {
        XCTAssertEqual(sent.first.map { Array($0[0..<10]) }, sent.first.map { S.plainHeader($0.count - 10) })
      }
    }
  }

  func testMergingOffSendsEveryDatagramBehindAPlainHeader() {
    var config = S.config()
    config.staticMACs = [.init(vni: 100, mac: Self.remoteVM, target: .remote(S.remoteA))]
    let core = SwitchCore(config: config)
    let pipeline = core.makePipeline()
    pipeline.segmentsUnderlay = false
    let ports = core.interfaces.map {
      MemoryPort(name: $0, virtioNetHeader: $0 == config.site.underlay)
    }
    for (index, port) in ports.enumerated() {
      pipeline.attach(interface: UInt16(index), ring: port.transmitRing, underlay: port.name == "eth1")
    }
    defer { core.retire(pipeline) }
    let segments = Self.segments(payload: Self.mss * 3)
    var vector = FrameVector()
    let memory = segments.map { frame -> UnsafeMutableRawPointer in
      let pointer = UnsafeMutableRawPointer.allocate(byteCount: frame.count, alignment: 64)
      frame.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
      return pointer
    }
    defer { for pointer in memory { pointer.deallocate() } }
    vector.ingress = UInt16(core.interfaces.firstIndex(of: "vm1")!)
    vector.now = 1
    for (pointer, frame) in zip(memory, segments) { vector.append(pointer, length: frame.count) }
    pipeline.process(&vector)
    for port in ports { port.flushTransmit() }
    let sent = ports[core.interfaces.firstIndex(of: "eth1")!].takeTransmitted()
    XCTAssertEqual(sent.count, 3)
    XCTAssertTrue(sent.allSatisfy { Array($0[0..<10]) == S.plainHeader($0.count - 10) })
  }

  /// Batches whose datagrams do not join (mixed flows) turn joining off, so that they
  /// cost what they did before; after 64 batches without it one tries again, and a batch that joins
  /// keeps it on.
  func testBatchesThatDoNotJoinTurnJoiningOffUntilATryFindsRunsAgain() {
    let sw = Self.makeSwitch(gso: true)
    let a = Self.segments(payload: Self.mss * 2)
    let b = Self.segments(payload: Self.mss * 2, destination: Self.otherRemoteVM)
    let mixed = [a[0], b[0], a[1], b[1]]
    // Too few to judge by: joining stays on.
    sw.forward(interface: "vm1", frames: mixed)
    _ = sw.takeOutput("eth1")
    XCTAssertTrue(sw.pipeline.underlayPolicy.segmentsNextBatch, "four frames: still on")
    sw.forward(interface: "vm1", frames: Array(repeating: mixed, count: 8).flatMap { $0 })
    _ = sw.takeOutput("eth1")
    XCTAssertFalse(sw.pipeline.underlayPolicy.segmentsNextBatch, "32 frames, nothing joined: off")
    // Runs are there, but joining is off: each datagram alone, behind a plain header.
    for _ in 0..<64 {
      sw.forward(interface: "vm1", frames: a)
      XCTAssertEqual(Self.runLengths(sw.takeOutput("eth1")), [1, 1])
    }
    XCTAssertTrue(
      sw.pipeline.underlayPolicy.segmentsNextBatch, "after 64 batches without, the next tries again")
    sw.forward(interface: "vm1", frames: a)
    XCTAssertEqual(Self.runLengths(sw.takeOutput("eth1")), [2])
    XCTAssertTrue(sw.pipeline.underlayPolicy.segmentsNextBatch, "runs found: stays on")
  }

  // MARK: Receive

  func testOuterUDPChecksumLeftUnfinishedIsRecognised() {
    let plain = Self.makeSwitch(gso: false, udpChecksum: true)
    plain.forward(interface: "vm1", frames: Self.segments(payload: 500))
    let frame = plain.takeOutput("eth1")[0]
    func check(start: Int, offset: Int, flags: UInt8 = 1, _ bytes: [UInt8]? = nil) -> Bool {
      let frame = bytes ?? frame
      var header = [UInt8](repeating: 0, count: 10)
      header.withUnsafeMutableBytes {
        VirtioNetHeader(flags: flags, checksumStart: UInt16(start), checksumOffset: UInt16(offset))
          .store(to: $0.baseAddress!)
      }
      return header.withUnsafeBytes { h in
        frame.withUnsafeBytes {
          AFPacketPort.unfinishedChecksum(frame: $0.baseAddress!, length: frame.count, header: h.baseAddress!)
            == .outerUDP(34)
        }
      }
    }
    XCTAssertTrue(check(start: 34, offset: 6))
    // The inner TCP checksum (a kernel vxlan sender's), or no NEEDS_CSUM: not the outer.
    XCTAssertFalse(check(start: 50 + 34, offset: 16))
    XCTAssertFalse(check(start: 34, offset: 6, flags: 0))
    XCTAssertFalse(check(start: 34, offset: 6, Array(frame[0..<20])))
  }
}
