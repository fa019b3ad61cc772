import XCTest

@testable import Dataplane

/// Coalescing of decapsulated TCP segments into super-frames toward access ports that
/// transmit behind a `virtio_net_hdr`: byte-exact against frames this file builds with
/// its own checksum routine, cut back into the original segments by `SuperFrame`, and
/// every rule that ends a run (order, flow, flags, size, IPv4 identification, options,
/// checksums, batch end, the 64 KiB bound).
final class TCPCoalescerTests: XCTestCase {
  typealias S = TestSite
  static let vmMAC = S.hostA
  static let trunkMAC = S.hostB
  static let plainMAC = MACAddress("02:aa:00:00:00:07")!

  /// vm1 and trunk0 (VLAN 10) take super-frames, vm2 does not.
  func makeSwitch(ipv6Underlay: Bool = false) -> OfflineSwitch {
    var config = S.config(ipv6: ipv6Underlay)
    config.staticMACs = [
      .init(vni: 100, mac: Self.vmMAC, target: .port(.init(interface: "vm1"))),
      .init(vni: 100, mac: Self.trunkMAC, target: .port(.init(interface: "trunk0", vlan: 10))),
      .init(vni: 100, mac: Self.plainMAC, target: .port(.init(interface: "vm2"))),
    ]
    return OfflineSwitch(config: config, virtioNetHeader: { $0 == "vm1" || $0 == "trunk0" })
  }

  // MARK: Frames, built here

  struct Segment {
    var sequence: UInt32 = 1000
    var payload = 1000
    var flags: UInt8 = 0x10
    var identification: UInt16 = 7
    var options: [UInt8] = []
    var ttl: UInt8 = 64
    var window: UInt16 = 5000
    var ipv6 = false
    var vlan: UInt16? = nil
    var sourcePort: UInt16 = 40000
    var destination = TCPCoalescerTests.vmMAC
    var badChecksum = false

    /// The next segment of the same stream.
    func next(payload: Int? = nil, flags: UInt8 = 0x10) -> Segment {
      var segment = self
      segment.sequence = sequence &+ UInt32(self.payload)
      segment.identification = identification &+ 1
      segment.payload = payload ?? self.payload
      segment.flags = flags
      return segment
    }
  }

  static func stream(_ first: Segment, count: Int) -> [Segment] {
    var segments = [first]
    while segments.count < count { segments.append(segments.last!.next()) }
    return segments
  }

  /// The RFC 1071 sum of `bytes`, folded, by the book (one 16-bit word at a time).
  static func sum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
    var total = initial
    var index = 0
    while index + 1 < bytes.count {
      total += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
      index += 2
    }
    if index < bytes.count { total += UInt32(bytes[index]) << 8 }
    while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
    return UInt16(total)
  }

  static func be16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }
  static func be32(_ value: UInt32) -> [UInt8] {
    [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
  }

  static let source4: [UInt8] = [192, 168, 1, 9]
  static let destination4: [UInt8] = [192, 168, 1, 1]
  static let source6: [UInt8] = [0xFD, 0x10] + Array(repeating: 0, count: 13) + [9]
  static let destination6: [UInt8] = [0xFD, 0x10] + Array(repeating: 0, count: 13) + [1]

  /// The segment as a frame; with `pseudoHeaderChecksum` the TCP checksum field holds
  /// the folded pseudo-header sum (what a super-frame leaves to be finished).
  static func frame(_ s: Segment, pseudoHeaderChecksum: Bool = false) -> [UInt8] {
    let payload = (0..<s.payload).map { UInt8(truncatingIfNeeded: s.sequence &+ UInt32($0)) }
    var tcp = be16(Int(s.sourcePort)) + be16(5201) + be32(s.sequence) + be32(0x0102_0304)
    tcp +=
      [UInt8((20 + s.options.count) / 4) << 4, s.flags] + be16(Int(s.window)) + [0, 0, 0, 0] + s.options
    tcp += payload
    let pseudoSource = s.ipv6 ? source6 : source4
    let pseudoDestination = s.ipv6 ? destination6 : destination4
    let pseudo = pseudoSource + pseudoDestination + [0, 6] + be16(tcp.count)
    let pseudoSum = sum(pseudo)
    var checksum = pseudoHeaderChecksum ? pseudoSum : ~sum(tcp, initial: UInt32(pseudoSum))
    if s.badChecksum { checksum ^= 0x0101 }
    tcp[16] = UInt8(checksum >> 8)
    tcp[17] = UInt8(checksum & 0xFF)
    var ip: [UInt8]
    if s.ipv6 {
      ip = [0x60, 0, 0, 0] + be16(tcp.count) + [6, 64] + source6 + destination6
    } else {
      ip = [0x45, 0] + be16(20 + tcp.count) + be16(Int(s.identification)) + [0x40, 0, s.ttl, 6, 0, 0]
      ip += source4 + destination4
      let headerChecksum = ~sum(ip)
      ip[10] = UInt8(headerChecksum >> 8)
      ip[11] = UInt8(headerChecksum & 0xFF)
    }
    var ethernet = macBytes(s.destination) + macBytes(S.hostR)
    if let vlan = s.vlan { ethernet += [0x81, 0x00] + be16(Int(vlan)) }
    ethernet += s.ipv6 ? [0x86, 0xDD] : [0x08, 0x00]
    return ethernet + ip + tcp
  }

  /// What a port with the header transmits for a run of segments: one frame behind a
  /// plain header, or the super-frame behind its gso header.
  static func expected(_ run: [Segment]) -> [UInt8] {
    if run.count == 1 { return S.plainHeader(frame(run[0]).count) + frame(run[0]) }
    var whole = run[0]
    whole.payload = run.reduce(0) { $0 + $1.payload }
    whole.flags = 0x10 | (run.last!.flags & 0x08)
    let bytes = frame(whole, pseudoHeaderChecksum: true)
    let network = whole.vlan == nil ? 14 : 18
    let transport = network + (whole.ipv6 ? 40 : 20)
    let headerLength = transport + 20 + whole.options.count
    let header: [UInt8] =
      [1, whole.ipv6 ? 4 : 1] + le16(headerLength) + le16(run[0].payload) + le16(transport) + le16(16)
    return header + bytes
  }

  static func macBytes(_ mac: MACAddress) -> [UInt8] {
    (0..<6).map { UInt8(truncatingIfNeeded: mac.rawValue >> (40 - 8 * $0)) }
  }

  static func le16(_ value: Int) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }

  /// Decapsulated by the switch as one batch; returns what `port` sent.
  func deliver(
    _ sw: OfflineSwitch, _ segments: [Segment], port: String = "vm1", ipv6Underlay: Bool = false
  ) -> [[UInt8]] {
    let frames = segments.map { segment -> [UInt8] in
      var inner = segment
      inner.vlan = nil
      return ipv6Underlay
        ? S.vxlan(Self.frame(inner), from: S.remote6, to: S.local6) : S.vxlan(Self.frame(inner))
    }
    sw.forward(interface: "eth1", frames: frames)
    return sw.takeOutput(port)
  }

  /// Runs of `segments` (indices) as the port must send them.
  func check(
    _ segments: [Segment], runs: [[Int]], port: String = "vm1", file: StaticString = #filePath,
    line: UInt = #line
  ) {
    let sw = makeSwitch()
    let output = deliver(sw, segments, port: port)
    let wanted = runs.map { Self.expected($0.map { segments[$0] }) }
    XCTAssertEqual(output.count, wanted.count, "frames sent", file: file, line: line)
    for (index, (got, want)) in zip(output, wanted).enumerated() where got != want {
      XCTFail(
        "frame \(index) (run \(runs[index])) differs: \(got.count) vs \(want.count) bytes", file: file,
        line: line)
    }
    XCTAssertEqual(
      sw.core.statistics[Counter.txFrames(sw.interfaceIndex(port)!)], UInt64(segments.count), file: file,
      line: line)
  }

  // MARK: Golden

  func testIPv4RunIsOneSuperFrameThatCutsBackIntoItsSegments() {
    var segments = Self.stream(Segment(), count: 10)
    segments[9].flags = 0x18
    let sw = makeSwitch()
    let output = deliver(sw, segments)
    XCTAssertEqual(output, [Self.expected(segments)])
    assertCutsBack(output[0], into: segments.map { Self.frame($0) })
    let vm1 = sw.interfaceIndex("vm1")!
    XCTAssertEqual(sw.core.statistics[Counter.txFrames(vm1)], 10, "inner frames counted")
    XCTAssertEqual(
      sw.core.statistics[Counter.txBytes(vm1)], UInt64(segments.reduce(0) { $0 + Self.frame($1).count }))
    XCTAssertEqual(sw.pipeline.coalescer(interface: UInt16(vm1)).superFrames, 1)
    XCTAssertEqual(sw.pipeline.coalescer(interface: UInt16(vm1)).mergedSegments, 10)
    XCTAssertEqual(sw.core.statistics[Counter.coalescedSuperFrames], 1, "exported with the batch")
    XCTAssertEqual(sw.core.statistics[Counter.coalescedSegments], 10)
    // The IPv4 header checksum verifies by the book.
    XCTAssertEqual(Self.sum(Array(output[0][24..<44])), 0xFFFF)
  }

  func testIPv6RunOverAnIPv6Underlay() {
    let segments = Self.stream(Segment(payload: 1200, ipv6: true), count: 6)
    let sw = makeSwitch(ipv6Underlay: true)
    let output = deliver(sw, segments, ipv6Underlay: true)
    XCTAssertEqual(output, [Self.expected(segments)])
    assertCutsBack(output[0], into: segments.map { Self.frame($0) })
  }

  func testTaggedAccessPortCarriesTheTagInTheSuperFrame() {
    var first = Segment(destination: Self.trunkMAC)
    first.options = [1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 9]
    let segments = Self.stream(first, count: 5)
    let sw = makeSwitch()
    let output = deliver(sw, segments, port: "trunk0")
    let emitted = segments.map { segment -> Segment in
      var tagged = segment
      tagged.vlan = 10
      return tagged
    }
    XCTAssertEqual(output, [Self.expected(emitted)])
    assertCutsBack(output[0], into: emitted.map { Self.frame($0) })
  }

  func testPortWithoutTheHeaderGetsEverySegmentUnchanged() {
    let segments = Self.stream(Segment(destination: Self.plainMAC), count: 4)
    let sw = makeSwitch()
    XCTAssertEqual(deliver(sw, segments, port: "vm2"), segments.map { Self.frame($0) })
  }

  func testOtherFramesGoBehindAPlainHeader() {
    let sw = makeSwitch()
    let ping = S.ping(from: S.hostR, to: Self.vmMAC)
    sw.forward(interface: "eth1", frames: [S.vxlan(ping)])
    XCTAssertEqual(sw.takeOutput("vm1"), [S.plainHeader(ping.count) + ping])
  }

  /// A slot that held a super-frame holds a plain frame behind a plain header later.
  func testSlotsAreReusedWithAFreshHeader() {
    let sw = makeSwitch()
    for round in 0..<300 {
      let first = Segment(sequence: UInt32(round) * 100_000, payload: 500)
      let segments = round % 2 == 0 ? Self.stream(first, count: 3) : [first]
      XCTAssertEqual(deliver(sw, segments), [Self.expected(segments)], "round \(round)")
    }
  }

  // MARK: What ends a run

  func testOutOfOrderSegmentEndsTheRun() {
    let s = Self.stream(Segment(), count: 4)
    check([s[0], s[1], s[3], s[2]], runs: [[0, 1], [2], [3]])
  }

  func testInterleavedFlowsKeepTheirOwnRuns() {
    let a = Self.stream(Segment(), count: 3)
    let b = Self.stream(Segment(sourcePort: 40001), count: 2)
    // Each super-frame leaves from the slot of its first segment.
    check([a[0], a[1], b[0], b[1], a[2]], runs: [[0, 1, 4], [2, 3]])
    // A flow whose address differs but whose ports match is another flow.
    var c = Self.stream(Segment(), count: 2)
    c[0].ipv6 = true
    c[1].ipv6 = true
    check([a[0], c[0], a[1], c[1]], runs: [[0, 2], [1, 3]])
  }

  func testEightFlowsAtOnce() {
    let flows = (0..<TCPCoalescer.runCapacity).map {
      Self.stream(Segment(sourcePort: 41000 + UInt16($0)), count: 3)
    }
    let segments = (0..<3).flatMap { round in flows.map { $0[round] } }
    let n = flows.count
    check(segments, runs: (0..<n).map { [$0, $0 + n, $0 + 2 * n] })
  }

  /// With every run taken, a new flow hands over the run opened first; nothing is lost
  /// and each flow keeps its order.
  func testOneFlowTooManyHandsOverTheOldestRun() {
    let flows = (0...TCPCoalescer.runCapacity).map {
      Self.stream(Segment(sourcePort: 42000 + UInt16($0)), count: 2)
    }
    let n = flows.count
    // Flow 0's second segment comes after the ninth flow took its run.
    let segments = flows.map { $0[0] } + [flows[0][1], flows[n - 1][1]]
    var runs = (0..<n).map { [$0] }
    runs[n - 1] = [n - 1, n + 1]
    runs.append([n])
    // Flow 0 reopened a run and so took flow 1's: flow 1 was handed over as it came.
    check(segments, runs: runs)
    XCTAssertEqual(makeSwitchAndDeliverCounts(segments), 1)
  }

  func makeSwitchAndDeliverCounts(_ segments: [Segment]) -> UInt64 {
    let sw = makeSwitch()
    _ = deliver(sw, segments)
    return sw.pipeline.coalescer(interface: UInt16(sw.interfaceIndex("vm1")!)).superFrames
  }

  /// What a ring of `slotCount` slots with its own coalescer sends for `segments`
  /// committed straight to it, without the pipeline; whether the ring was full after
  /// them, and the super-frames counted.
  func commitStraight(_ segments: [Segment], slotCount: Int, flowLimit: Int = TCPCoalescer.runCapacity)
    -> (frames: [[UInt8]], wasFull: Bool, superFrames: UInt64)
  {
    let storage = TxRingStorage(
      slotCount: slotCount, maxFrameLength: 65536, framePrefix: VirtioNetHeader.length)
    let state = UnsafeMutablePointer<TCPCoalescer>.allocate(capacity: 1)
    state.initialize(to: TCPCoalescer(flowLimit: flowLimit))
    defer { state.deallocate() }
    storage.ring.pointee.coalescer = state
    for segment in segments {
      let bytes = Self.frame(segment)
      guard let output = storage.ring.pointee.reserve() else {
        XCTFail("the ring is full before the last segment")
        break
      }
      bytes.withUnsafeBytes { output.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
      storage.ring.pointee.commit(length: bytes.count)
    }
    let wasFull = storage.ring.pointee.reserve() == nil
    storage.ring.pointee.publishAllCoalesced(state)
    var frames: [[UInt8]] = []
    storage.drain { frames.append(Array($0)) }
    return (frames, wasFull, state.pointee.superFrames)
  }

  /// Limited to one flow (the measuring switch `VXSWITCH_TCP_COALESCING=single-flow`),
  /// each flow ends the other's run.
  func testFlowLimitOfOne() {
    let a = Self.stream(Segment(), count: 3)
    let b = Self.stream(Segment(sourcePort: 40001), count: 2)
    let segments = [a[0], a[1], b[0], b[1], a[2]]
    let sent = commitStraight(segments, slotCount: 16, flowLimit: 1)
    XCTAssertEqual(sent.frames, [[0, 1], [2, 3], [4]].map { Self.expected($0.map { segments[$0] }) })
    XCTAssertEqual(sent.superFrames, 2)
  }

  /// A batch that comes round the ring finds it full rather than writing over a run's
  /// claimed slot.
  func testRunsAreHandedOverBeforeTheRingComesRound() {
    let a = Self.stream(Segment(), count: 2)
    let others = (1...3).map { Segment(sourcePort: 40000 + UInt16($0)) }
    let segments = [a[0], others[0], a[1], others[1], others[2]]
    let sent = commitStraight(segments, slotCount: 4)
    XCTAssertTrue(sent.wasFull, "four slots, all handed over")
    XCTAssertEqual(sent.frames, [[0, 2], [1], [3], [4]].map { Self.expected($0.map { segments[$0] }) })
  }

  /// Datagrams built on this host (their outer UDP checksum the one left unfinished, so
  /// the inner ones were finished by the sender) are merged without verifying the TCP
  /// checksum again, as the kernel trusts them: a deliberately wrong one shows it. The
  /// same datagrams from anywhere else are verified.
  func testSegmentsBuiltOnThisHostAreTrusted() {
    var s = Self.stream(Segment(), count: 3)
    s[1].badChecksum = true
    let frames = s.map { S.vxlan(Self.frame($0)) }
    let trusted = makeSwitch()
    trusted.forward(
      interface: "eth1", frames: frames, flags: FrameFlags.checksumValid | FrameFlags.builtOnThisHost)
    XCTAssertEqual(trusted.takeOutput("vm1"), [Self.expected(s)], "one super-frame")
    let verified = makeSwitch()
    verified.forward(interface: "eth1", frames: frames, flags: FrameFlags.checksumValid)
    XCTAssertEqual(verified.takeOutput("vm1"), [[0], [1], [2]].map { Self.expected($0.map { s[$0] }) })
    // Toward a tagged member (the general path) alike.
    var t = Self.stream(Segment(destination: Self.trunkMAC), count: 3)
    t[1].badChecksum = true
    let tagged = t.map { segment -> Segment in
      var copy = segment
      copy.vlan = 10
      return copy
    }
    let general = makeSwitch()
    general.forward(
      interface: "eth1", frames: t.map { S.vxlan(Self.frame($0)) },
      flags: FrameFlags.checksumValid | FrameFlags.builtOnThisHost)
    XCTAssertEqual(general.takeOutput("trunk0"), [Self.expected(tagged)])
  }

  /// A gap in one flow ends that flow's run only.
  func testOutOfOrderSegmentEndsOnlyItsFlowsRun() {
    let a = Self.stream(Segment(), count: 3)
    let b = Self.stream(Segment(sourcePort: 40001), count: 2)
    check([a[0], b[0], a[2], b[1]], runs: [[0], [1, 3], [2]])
  }

  /// A frame the coalescer does not take may belong to any open run: every run is handed
  /// over before it.
  func testOtherFramesHandOverEveryRunFirst() {
    let a = Self.stream(Segment(), count: 3)
    let b = Self.stream(Segment(sourcePort: 40001), count: 3)
    var fin = b[2]
    fin.flags = 0x11
    check([a[0], b[0], a[1], b[1], fin, a[2]], runs: [[0, 2], [1, 3], [4], [5]])
  }

  func testPushEndsTheRunAndFinIsNotMerged() {
    var s = Self.stream(Segment(), count: 6)
    s[1].flags = 0x18
    s[5].flags = 0x11
    check(s, runs: [[0, 1], [2, 3, 4], [5]])
  }

  func testSynRstUrgAreNeverMerged() {
    for flags: UInt8 in [0x12, 0x14, 0x30, 0x50, 0x90] {
      var s = Self.stream(Segment(), count: 3)
      s[1].flags = flags
      check(s, runs: [[0], [1], [2]])
    }
  }

  func testLongerSegmentEndsTheRunAndShorterOneClosesIt() {
    let s = Self.stream(Segment(), count: 2)
    check([s[0], s[0].next(payload: 1200)], runs: [[0], [1]])
    let short = s[0].next(payload: 300)
    check([s[0], short, short.next(payload: 1000)], runs: [[0, 1], [2]])
  }

  func testIPv4IdentificationGapEndsTheRun() {
    var s = Self.stream(Segment(), count: 3)
    s[2].identification &+= 1
    check(s, runs: [[0, 1], [2]])
  }

  func testDifferentTimestampsEndTheRun() {
    var first = Segment()
    first.options = [1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 9]
    var s = Self.stream(first, count: 4)
    s[2].options[7] = 6
    s[3].options[7] = 6
    check(s, runs: [[0, 1], [2, 3]])
  }

  func testHeaderDifferencesEndTheRun() {
    var s = Self.stream(Segment(), count: 3)
    s[1].ttl = 63
    s[2].ttl = 63
    check(s, runs: [[0], [1, 2]])
    var w = Self.stream(Segment(), count: 3)
    w[2].window = 6000
    check(w, runs: [[0, 1], [2]])
  }

  func testBadChecksumIsNotMerged() {
    var s = Self.stream(Segment(), count: 4)
    s[1].badChecksum = true
    check(s, runs: [[0], [1], [2, 3]])
  }

  func testRunsEndWithTheBatch() {
    let sw = makeSwitch()
    let s = Self.stream(Segment(), count: 4)
    XCTAssertEqual(deliver(sw, Array(s[0..<2])), [Self.expected(Array(s[0..<2]))])
    XCTAssertEqual(deliver(sw, Array(s[2..<4])), [Self.expected(Array(s[2..<4]))])
  }

  func testSuperFrameStaysWithin64KiB() {
    let s = Self.stream(Segment(payload: 1400), count: 50)
    // 14 + 40 + 46 x 1400 = 64454 bytes; a 47th segment would not fit the slot.
    check(s, runs: [Array(0..<46), Array(46..<50)])
  }

  // MARK: Fast path and general path

  /// Interleaved streams (some perturbed) through a switch with the fast paths and one
  /// without: the same bytes on every port, the same counters.
  func testFastAndGeneralPathsCoalesceAlike() {
    let fast = makeSwitch()
    let general = makeSwitch()
    general.pipeline.fastPathsEnabled = false
    var random = SplitMix64(seed: 13)
    var streams = (0..<3).map { Segment(sequence: UInt32($0) * 1_000_000, sourcePort: 40000 + UInt16($0)) }
    streams[2].destination = Self.trunkMAC
    for _ in 0..<200 {
      var frames: [[UInt8]] = []
      for _ in 0..<Int(random.next() % 40) {
        let pick = Int(random.next() % 3)
        let run = 1 + Int(random.next() % 8)
        for _ in 0..<run {
          var segment = streams[pick]
          switch random.next() % 20 {
          case 0: segment.flags = 0x18
          case 1: segment.payload = 1 + Int(random.next() % 999)
          case 2: segment.identification &+= 3
          default: break
          }
          frames.append(S.vxlan(Self.frame(segment)))
          streams[pick] = segment.next()
        }
      }
      for sw in [fast, general] { sw.forward(interface: "eth1", frames: frames) }
      for port in ["vm1", "vm2", "trunk0"] {
        XCTAssertEqual(fast.takeOutput(port), general.takeOutput(port), port)
      }
    }
    for index in 0..<Counter.count {
      XCTAssertEqual(fast.core.statistics[index], general.core.statistics[index])
    }
    XCTAssertGreaterThan(
      fast.pipeline.coalescer(interface: UInt16(fast.interfaceIndex("vm1")!)).superFrames, 100)
  }

  // MARK: Helpers

  /// Cuts a transmitted super-frame (header first) back up with `SuperFrame`, which
  /// computes every checksum in full, and compares with the segments sent.
  func assertCutsBack(
    _ output: [UInt8], into segments: [[UInt8]], file: StaticString = #filePath, line: UInt = #line
  ) {
    output.withUnsafeBytes { raw in
      let header = VirtioNetHeader(at: raw.baseAddress!)
      XCTAssertEqual(header.flags, VirtioNetHeader.needsChecksum, file: file, line: line)
      guard
        var superFrame = try? SuperFrame(frame: raw.baseAddress! + 10, length: raw.count - 10, header: header)
      else { return XCTFail("not a valid super-frame", file: file, line: line) }
      var cut: [[UInt8]] = []
      let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 64)
      defer { buffer.deallocate() }
      while !superFrame.isFinished {
        let length = superFrame.writeNext(to: buffer)
        cut.append(Array(UnsafeRawBufferPointer(start: buffer, count: length)))
      }
      XCTAssertEqual(cut, segments, file: file, line: line)
    }
  }
}
