import XCTest

@testable import Dataplane

#if canImport(Glibc)
  import Glibc
#endif

/// A VM's super-frame handed to the kernel whole through the tunnel tap (`TunnelRun`,
/// `TunnelSegmentationFrame`), and the receiving side of such frames (inner checksums
/// left unfinished, `FrameFlags.innerChecksumPartial`). Byte-exact: the tap's frame is
/// cut up here as the kernel's UDP-tunnel segmentation does (`skb_udp_tunnel_segment`,
/// then `tcp_gso_segment`, the inner checksum finished as a device would), with this
/// file's own checksum routine, and must equal what the switch sends when it cuts the
/// super-frame itself; the tap is a socket pair that keeps each write one message.
final class TunnelSegmentationTests: XCTestCase {
  typealias U = UnderlaySegmenterTests
  typealias C = TCPCoalescerTests
  typealias S = TestSite

  /// Stands in for the tap: every write one message, read back in order.
  final class MessageTap {
    let writer: Int32
    let reader: Int32

    init() {
      var pair: [Int32] = [-1, -1]
      // SOCK_SEQPACKET (5; not in every Swift view of the libc headers).
      let result = socketpair(AF_UNIX, 5, 0, &pair)
      precondition(result == 0, "socketpair: \(errno)")
      writer = pair[0]
      reader = pair[1]
      var size: Int32 = 8 << 20
      _ = setsockopt(writer, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
      _ = setsockopt(reader, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit {
      close(writer)
      close(reader)
    }

    func messages() -> [[UInt8]] {
      var output: [[UInt8]] = []
      var buffer = [UInt8](repeating: 0, count: 1 << 17)
      while true {
        let count = buffer.withUnsafeMutableBytes {
          recv(reader, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
        }
        if count <= 0 { break }
        output.append(Array(buffer[0..<count]))
      }
      return output
    }
  }

  static func makeSwitch(tap: MessageTap?, ipv6: Bool = false, udpChecksum: Bool = false) -> OfflineSwitch {
    let sw = U.makeSwitch(ipv6: ipv6, gso: tap != nil, udpChecksum: udpChecksum)
    if let tap { sw.pipeline.useTunnelTap(tap.writer, ringSocket: -1) }
    return sw
  }

  /// The tap's frame (its 24-byte header first) cut as the kernel does: per `gso_size`
  /// bytes of payload the headers copied; outer IPv4 total length, identification
  /// counted up and header checksum, or IPv6 payload length; UDP length; inner IP length
  /// and IPv4 identification counted up, its header checksum; the TCP sequence number
  /// advanced, CWR on the first segment only, PSH and FIN on the last only; then the TCP
  /// checksum finished over the segment as a device would (the field holds the segment's
  /// pseudo-header sum before), and the outer UDP checksum over the datagram when the
  /// header asks for it (`VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`; else a 0 stays 0). A frame
  /// that is not a GSO frame only gets its inner checksum, or nothing when the header
  /// leaves nothing to do.
  static func kernelSegments(_ message: [UInt8]) -> [[UInt8]] {
    let header = Array(message[0..<TunnelSegmentationFrame.headerLength])
    let frame = Array(message[TunnelSegmentationFrame.headerLength...])
    let flags = header[0]
    let gsoType = Int(header[1])
    if gsoType == 0 && flags & VirtioNetHeader.needsChecksum == 0 { return [frame] }
    let outerIPv6 = U.be16(frame, 12) == 0x86DD
    let headerLength = U.le16(header, 2)
    let gsoSize = gsoType == 0 ? frame.count : U.le16(header, 4)
    let transport = U.le16(header, 6)
    let udp = gsoType == 0 ? (outerIPv6 ? 54 : 34) : U.le16(header, 20)
    let network = gsoType == 0 ? udp + 30 : U.le16(header, 22)
    let ipv6 = U.be16(frame, network - 2) == 0x86DD
    let outerIdentification = U.be16(frame, 18)
    let innerIdentification = ipv6 ? 0 : U.be16(frame, network + 4)
    let sequence = UInt32(U.be16(frame, transport + 4)) << 16 | UInt32(U.be16(frame, transport + 6))
    var output: [[UInt8]] = []
    var offset = headerLength
    var index = 0
    while offset < frame.count {
      let payload = min(gsoSize, frame.count - offset)
      let last = offset + payload >= frame.count
      var segment = Array(frame[0..<headerLength]) + Array(frame[offset..<(offset + payload)])
      if outerIPv6 {
        U.setBE16(&segment, 18, segment.count - 54)
      } else {
        U.setBE16(&segment, 16, segment.count - 14)
        if gsoType != 0 { U.setBE16(&segment, 18, (outerIdentification + index) & 0xFFFF) }
        U.setBE16(&segment, 24, 0)
        U.setBE16(&segment, 24, Int(~C.sum(Array(segment[14..<34]))))
      }
      U.setBE16(&segment, udp + 4, segment.count - udp)
      if ipv6 {
        U.setBE16(&segment, network + 4, segment.count - network - 40)
      } else {
        U.setBE16(&segment, network + 2, segment.count - network)
        U.setBE16(&segment, network + 4, (innerIdentification + index) & 0xFFFF)
        U.setBE16(&segment, network + 10, 0)
        U.setBE16(&segment, network + 10, Int(~C.sum(Array(segment[network..<transport]))))
      }
      let next = sequence &+ UInt32(offset - headerLength)
      segment[transport + 4] = UInt8(next >> 24)
      segment[transport + 5] = UInt8(next >> 16 & 0xFF)
      segment[transport + 6] = UInt8(next >> 8 & 0xFF)
      segment[transport + 7] = UInt8(next & 0xFF)
      if index > 0 { segment[transport + 13] &= ~0x80 }
      if !last { segment[transport + 13] &= ~0x09 }
      let addresses =
        ipv6
        ? Array(segment[(network + 8)..<(network + 40)]) : Array(segment[(network + 12)..<(network + 20)])
      let tcpLength = segment.count - transport
      U.setBE16(&segment, transport + 16, 0)
      let pseudo = addresses + [0, 6] + C.be16(tcpLength)
      U.setBE16(
        &segment, transport + 16, Int(~C.sum(Array(segment[transport...]), initial: UInt32(C.sum(pseudo)))))
      if flags & TunnelSegmentationFrame.outerChecksumFlag != 0 {
        let outerAddresses = outerIPv6 ? Array(segment[22..<54]) : Array(segment[26..<34])
        let udpLength = segment.count - udp
        U.setBE16(&segment, udp + 6, 0)
        let checksum = ~C.sum(
          Array(segment[udp...]), initial: UInt32(C.sum(outerAddresses + [0, 17] + C.be16(udpLength))))
        U.setBE16(&segment, udp + 6, Int(checksum == 0 ? 0xFFFF : checksum))
      }
      output.append(segment)
      offset += payload
      index += 1
    }
    return output
  }

  // MARK: Sending

  func checkSuperFrameThroughTheTap(
    payload: Int, frames expectedFrames: Int, ipv6: Bool = false, udpChecksum: Bool = false,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    let mss = ipv6 ? U.mss - 20 : U.mss
    let (bytes, header) = U.superFrame(payload: payload, mss: mss)
    let cut = Self.makeSwitch(tap: nil, ipv6: ipv6, udpChecksum: udpChecksum)
    XCTAssertTrue(cut.forward(interface: "vm1", superFrame: bytes, header: header), file: file, line: line)
    let datagrams = cut.takeOutput("eth1")
    XCTAssertEqual(datagrams.count, (payload + mss - 1) / mss, file: file, line: line)

    let tap = MessageTap()
    let sw = Self.makeSwitch(tap: tap, ipv6: ipv6, udpChecksum: udpChecksum)
    XCTAssertTrue(sw.forward(interface: "vm1", superFrame: bytes, header: header), file: file, line: line)
    XCTAssertEqual(sw.takeOutput("eth1"), [], "nothing through the ring", file: file, line: line)
    let messages = tap.messages()
    XCTAssertEqual(messages.count, expectedFrames, file: file, line: line)
    guard let first = messages.first else { return }

    // The tap's header: NEEDS_CSUM at the inner TCP checksum (and the outer UDP
    // checksum's flag where there is one), TCPV4 over an IPv4 or IPv6 UDP tunnel, all
    // headers, the segment size, the outer UDP and inner IP offsets. One segment with
    // an outer checksum leaves nothing unfinished: a plain frame.
    let udp = ipv6 ? 54 : 34
    let outerChecksum = ipv6 || udpChecksum
    let innerNetwork = udp + 16 + 14
    let innerTransport = innerNetwork + 20
    let isGSO = datagrams.count > 1
    let frame = Array(first[24...])
    if !isGSO && outerChecksum {
      XCTAssertEqual(Array(first[0..<24]), [UInt8](repeating: 0, count: 24), file: file, line: line)
    } else {
      XCTAssertEqual(
        Array(first[0..<24]),
        [isGSO && outerChecksum ? 9 : 1, isGSO ? (ipv6 ? 0x41 : 0x21) : 0] + C.le16(innerTransport + 20)
          + C.le16(isGSO ? mss : 0) + C.le16(innerTransport) + C.le16(16) + [UInt8](repeating: 0, count: 10)
          + (isGSO ? C.le16(udp) + C.le16(innerNetwork) : [0, 0, 0, 0]),
        file: file, line: line)
      let pseudo =
        Array(frame[(innerNetwork + 12)..<(innerNetwork + 20)]) + [0, 6]
        + C.be16(frame.count - innerTransport)
      XCTAssertEqual(
        U.be16(frame, innerTransport + 16), Int(C.sum(pseudo)), "partial TCP checksum", file: file, line: line
      )
    }
    if ipv6 {
      XCTAssertEqual(U.be16(frame, 18), frame.count - 54, file: file, line: line)
    } else {
      XCTAssertEqual(
        C.sum(Array(frame[14..<34])), 0xFFFF, "outer IPv4 header checksum", file: file, line: line)
      XCTAssertEqual(U.be16(frame, 16), frame.count - 14, file: file, line: line)
    }
    XCTAssertEqual(U.be16(frame, udp + 4), frame.count - udp, file: file, line: line)
    let outerAddresses = ipv6 ? Array(frame[22..<54]) : Array(frame[26..<34])
    if isGSO {
      XCTAssertEqual(
        U.be16(frame, udp + 6),
        outerChecksum ? Int(C.sum(outerAddresses + [0, 17] + C.be16(frame.count - udp))) : 0,
        "outer UDP checksum: the pseudo-header sum, or none", file: file, line: line)
    } else if outerChecksum {
      XCTAssertEqual(
        C.sum(
          Array(frame[udp...]), initial: UInt32(C.sum(outerAddresses + [0, 17] + C.be16(frame.count - udp)))),
        0xFFFF, "outer UDP checksum summed", file: file, line: line)
    }

    // Cut up as the kernel does: what the switch sends when it cuts, byte for byte but
    // for the outer IPv4 identification (counted up per tap frame, constant per switch
    // datagram: DF is set, nobody reads it) and so the outer header checksum.
    let segments = messages.flatMap { Self.kernelSegments($0) }
    XCTAssertEqual(segments.count, datagrams.count, file: file, line: line)
    func masked(_ frame: [UInt8]) -> [UInt8] {
      var copy = frame
      if !ipv6 {
        for offset in [18, 19, 24, 25] { copy[offset] = 0 }
      }
      return copy
    }
    for (index, (got, want)) in zip(segments, datagrams).enumerated() {
      XCTAssertEqual(masked(got), masked(want), "datagram \(index)", file: file, line: line)
      if !ipv6 { XCTAssertEqual(C.sum(Array(got[14..<34])), 0xFFFF, file: file, line: line) }
    }

    // Counters as the wire sees it: every segment encapsulated and sent either way.
    let underlay = sw.interfaceIndex("eth1")!
    for s in [cut, sw] {
      XCTAssertEqual(
        s.core.statistics[Counter.txFrames(underlay)], UInt64(datagrams.count), file: file, line: line)
      XCTAssertEqual(s.core.statistics[Counter.encapsulated], UInt64(datagrams.count), file: file, line: line)
    }
    XCTAssertEqual(
      sw.core.statistics[Counter.txBytes(underlay)], cut.core.statistics[Counter.txBytes(underlay)],
      file: file,
      line: line)
    XCTAssertEqual(
      sw.core.statistics[Counter.underlayTunnelFrames], UInt64(expectedFrames), file: file, line: line)
    XCTAssertEqual(
      sw.core.statistics[Counter.underlayTunnelSegments], UInt64(datagrams.count), file: file, line: line)
    XCTAssertEqual(sw.core.statistics[Counter.tapRefusals], 0, file: file, line: line)
  }

  func testSuperFrameLeavesThroughTheTapAndCutsIntoTheDatagramsTheSwitchSends() {
    checkSuperFrameThroughTheTap(payload: U.mss * 10 + 500, frames: 1)
  }

  /// A 64 KiB super-frame does not fit one outer IPv4 datagram once encapsulated: two
  /// frames, the second starting where the first ends.
  func testLargestSuperFrameTakesTwoFrames() {
    checkSuperFrameThroughTheTap(payload: 65535 - 40, frames: 2)
  }

  /// One segment: no GSO, only the inner checksum left to finish.
  func testOneSegmentLeavesWithItsChecksumUnfinished() {
    checkSuperFrameThroughTheTap(payload: 700, frames: 1)
  }

  /// Outer UDP checksums (always over IPv6, configured over IPv4): the kernel sums them
  /// per datagram from the pseudo-header sum; a frame of one segment has both summed.
  func testOuterUDPChecksumsAreLeftToTheKernel() {
    let mss = U.mss - 20
    checkSuperFrameThroughTheTap(payload: mss * 4 + 100, frames: 1, ipv6: true)
    checkSuperFrameThroughTheTap(payload: 65535 - 60, frames: 2, ipv6: true)
    checkSuperFrameThroughTheTap(payload: 700, frames: 1, ipv6: true)
    checkSuperFrameThroughTheTap(payload: U.mss * 3, frames: 1, udpChecksum: true)
    checkSuperFrameThroughTheTap(payload: 701, frames: 1, udpChecksum: true)
  }

  /// A write the kernel refuses (here a closed tap) is counted; the switch goes on.
  func testRefusedWriteIsCounted() {
    let tap = MessageTap()
    let sw = Self.makeSwitch(tap: tap)
    shutdown(tap.writer, Int32(SHUT_WR))
    let (bytes, header) = U.superFrame(payload: U.mss * 3)
    XCTAssertTrue(sw.forward(interface: "vm1", superFrame: bytes, header: header))
    XCTAssertEqual(sw.core.statistics[Counter.tapRefusals], 1)
    XCTAssertEqual(sw.core.statistics[Counter.underlayTunnelFrames], 0)
    XCTAssertEqual(sw.pipeline.segmenter.pointee.tunnel.lastRefusal, EPIPE)
  }

  /// Other frames go through the ring; a run ends with its batch (the payload's receive
  /// block is the port's only until then).
  func testRunsEndWithTheBatch() {
    let tap = MessageTap()
    let sw = Self.makeSwitch(tap: tap)
    let segments = U.segments(payload: U.mss * 4)
    let ping = S.ping(from: MACAddress("02:aa:00:00:00:77")!, to: U.remoteVM)
    sw.forward(interface: "vm1", frames: [ping])
    XCTAssertEqual(sw.takeOutput("eth1").count, 1, "the ping through the ring")
    let (bytes, header) = U.superFrame(payload: U.mss * 4)
    XCTAssertTrue(sw.forward(interface: "vm1", superFrame: bytes, header: header, batch: 2))
    let messages = tap.messages()
    XCTAssertEqual(messages.count, 2, "two batches of two segments")
    XCTAssertEqual(messages.flatMap { Self.kernelSegments($0) }.count, segments.count)
  }

  // MARK: Receiving

  /// Segments whose inner TCP checksum the sender left unfinished (trusted, as the
  /// kernel trusts CHECKSUM_PARTIAL) merge into a super-frame as finished ones do; one
  /// left alone carries its checksum unfinished behind a NEEDS_CSUM header; toward a
  /// tagged member (the general path) they are finished first. With an access port that
  /// has no coalescer, every such frame takes the general path and is finished there.
  func testInnerChecksumsLeftUnfinishedAreTrustedAndPassedOn() {
    checkInnerChecksumsLeftUnfinished(everyPortCoalesces: true)
    checkInnerChecksumsLeftUnfinished(everyPortCoalesces: false)
  }

  func checkInnerChecksumsLeftUnfinished(
    everyPortCoalesces: Bool, file: StaticString = #filePath, line: UInt = #line
  ) {
    let flags = FrameFlags.checksumValid | FrameFlags.builtOnThisHost | FrameFlags.innerChecksumPartial
    let s = C.stream(C.Segment(), count: 3)
    var config = S.config(ipv6: false)
    config.staticMACs = [
      .init(vni: 100, mac: C.vmMAC, target: .port(.init(interface: "vm1"))),
      .init(vni: 100, mac: C.trunkMAC, target: .port(.init(interface: "trunk0", vlan: 10))),
      .init(vni: 100, mac: C.plainMAC, target: .port(.init(interface: "vm2"))),
    ]
    let sw = OfflineSwitch(
      config: config,
      virtioNetHeader: {
        $0 == "vm1" || $0 == "trunk0" || (everyPortCoalesces && ($0 == "vm2" || $0 == "vm3"))
      })
    sw.forward(
      interface: "eth1", frames: s.map { S.vxlan(C.frame($0, pseudoHeaderChecksum: true)) }, flags: flags)
    XCTAssertEqual(sw.takeOutput("vm1"), [C.expected(s)], "one super-frame", file: file, line: line)

    let alone = C.frame(s[0], pseudoHeaderChecksum: true)
    sw.forward(interface: "eth1", frames: [S.vxlan(alone)], flags: flags)
    let header = VirtioNetHeader(
      flags: VirtioNetHeader.needsChecksum, headerLength: UInt16(min(alone.count, 256)), checksumStart: 34,
      checksumOffset: 16)
    var headerBytes = [UInt8](repeating: 0, count: VirtioNetHeader.length)
    headerBytes.withUnsafeMutableBytes { header.store(to: $0.baseAddress!) }
    XCTAssertEqual(
      sw.takeOutput("vm1"),
      everyPortCoalesces ? [headerBytes + alone] : [C.expected([s[0]])],
      everyPortCoalesces ? "unfinished, behind NEEDS_CSUM" : "finished by the general path", file: file,
      line: line)

    let tagged = C.stream(C.Segment(destination: C.trunkMAC), count: 2)
    sw.forward(
      interface: "eth1", frames: tagged.map { S.vxlan(C.frame($0, pseudoHeaderChecksum: true)) }, flags: flags
    )
    let expectedTagged = tagged.map { segment -> C.Segment in
      var copy = segment
      copy.vlan = 10
      return copy
    }
    XCTAssertEqual(
      sw.takeOutput("trunk0"), [C.expected(expectedTagged)], "finished, then merged", file: file, line: line)
    // Toward vm2: merged when it coalesces; finished by the general path when it does not.
    let plain = C.stream(C.Segment(destination: C.plainMAC), count: 2)
    sw.forward(
      interface: "eth1", frames: plain.map { S.vxlan(C.frame($0, pseudoHeaderChecksum: true)) }, flags: flags)
    XCTAssertEqual(
      sw.takeOutput("vm2"), everyPortCoalesces ? [C.expected(plain)] : plain.map { C.frame($0) }, file: file,
      line: line)
  }

  /// The underlay port tells the inner checksum left unfinished (the checksum start past
  /// the outer headers) from the outer UDP one and from nonsense.
  func testUnfinishedInnerChecksumIsRecognised() {
    let inner = C.frame(C.Segment(), pseudoHeaderChecksum: true)
    let datagram = S.vxlan(inner)
    func check(_ start: Int, _ offset: Int, _ flags: UInt8 = VirtioNetHeader.needsChecksum) -> Bool {
      var header = [UInt8](repeating: 0, count: VirtioNetHeader.length)
      header.withUnsafeMutableBytes {
        VirtioNetHeader(flags: flags, checksumStart: UInt16(start), checksumOffset: UInt16(offset)).store(
          to: $0.baseAddress!)
      }
      return datagram.withUnsafeBytes { frame in
        header.withUnsafeBytes {
          AFPacketPort.unfinishedChecksum(
            frame: frame.baseAddress!, length: datagram.count, header: $0.baseAddress!) == .inner
        }
      }
    }
    XCTAssertTrue(check(50 + 34, 16), "the inner TCP checksum")
    XCTAssertFalse(check(34, 6), "the outer UDP checksum")
    XCTAssertFalse(check(50 + 34, 16, 0), "no NEEDS_CSUM")
    XCTAssertFalse(check(datagram.count - 1, 16), "past the frame")
    XCTAssertFalse(check(50 + 10, 16), "inside the inner IP header")
  }
}

/// Super-frames toward a VM through its port's tap (`TCPCoalescer.tap`): the same bytes
/// the ring would have carried, one write per super-frame, the payload written from
/// where the underlay port received it; everything else through the ring.
final class VMTapTests: XCTestCase {
  typealias C = TCPCoalescerTests
  typealias S = TestSite
  typealias Tap = TunnelSegmentationTests.MessageTap

  func makeSwitch(_ tap: Tap) -> OfflineSwitch {
    var config = S.config(ipv6: false)
    config.staticMACs = [
      .init(vni: 100, mac: C.vmMAC, target: .port(.init(interface: "vm1"))),
      .init(vni: 100, mac: C.trunkMAC, target: .port(.init(interface: "trunk0", vlan: 10))),
      .init(vni: 100, mac: C.plainMAC, target: .port(.init(interface: "vm2"))),
    ]
    // Every access port coalesces, so that unfinished checksums take the fast path.
    let sw = OfflineSwitch(config: config, virtioNetHeader: { $0 != "eth1" })
    sw.pipeline.useAccessTap(interface: UInt16(sw.interfaceIndex("vm1")!), tap.writer, ringSocket: -1)
    return sw
  }

  func testSuperFramesGoThroughTheTapAndEverythingElseThroughTheRing() {
    let tap = Tap()
    let sw = makeSwitch(tap)
    let a = C.stream(C.Segment(), count: 3)
    let b = C.stream(C.Segment(sourcePort: 40001), count: 2)
    // Two flows interleaved, then a lone segment, all verified (not built on this host).
    let segments = [a[0], b[0], a[1], b[1], a[2]]
    sw.forward(
      interface: "eth1", frames: segments.map { S.vxlan(C.frame($0)) }, flags: FrameFlags.checksumValid)
    XCTAssertEqual(
      tap.messages(), [C.expected(a), C.expected(b)], "one write per super-frame, in opening order")
    XCTAssertEqual(sw.takeOutput("vm1"), [], "nothing through the ring")
    let lone = C.Segment(sequence: 90000)
    sw.forward(interface: "eth1", frames: [S.vxlan(C.frame(lone))], flags: FrameFlags.checksumValid)
    XCTAssertEqual(tap.messages(), [C.expected([lone])], "a run of one, as it came")
    XCTAssertEqual(sw.core.statistics[Counter.coalescedSuperFrames], 2)
    XCTAssertEqual(sw.pipeline.coalescer(interface: UInt16(sw.interfaceIndex("vm1")!)).tapWrites, 3)

    // A frame that is no TCP segment goes through the ring, after the runs.
    let ping = S.ping(from: MACAddress("02:bb:00:00:00:09")!, to: C.vmMAC)
    let c = C.stream(C.Segment(sourcePort: 40002), count: 2)
    sw.forward(
      interface: "eth1", frames: [S.vxlan(C.frame(c[0])), S.vxlan(C.frame(c[1])), S.vxlan(ping)],
      flags: FrameFlags.checksumValid)
    XCTAssertEqual(tap.messages(), [C.expected(c)])
    XCTAssertEqual(sw.takeOutput("vm1"), [S.plainHeader(ping.count) + ping])

    // A segment with a bad checksum is not merged and leaves through the ring.
    var bad = C.Segment(sequence: 5000, sourcePort: 40003)
    bad.badChecksum = true
    sw.forward(interface: "eth1", frames: [S.vxlan(C.frame(bad))], flags: FrameFlags.checksumValid)
    XCTAssertEqual(tap.messages(), [])
    XCTAssertEqual(sw.takeOutput("vm1"), [S.plainHeader(C.frame(bad).count) + C.frame(bad)])
  }

  /// A sender's unfinished checksums (trusted): the super-frame as from finished ones, a
  /// lone segment behind NEEDS_CSUM, through the tap.
  func testUnfinishedChecksumsThroughTheTap() {
    let tap = Tap()
    let sw = makeSwitch(tap)
    let flags = FrameFlags.checksumValid | FrameFlags.builtOnThisHost | FrameFlags.innerChecksumPartial
    let s = C.stream(C.Segment(), count: 4)
    sw.forward(
      interface: "eth1", frames: s.map { S.vxlan(C.frame($0, pseudoHeaderChecksum: true)) }, flags: flags)
    XCTAssertEqual(tap.messages(), [C.expected(s)])
    let alone = C.frame(C.Segment(sequence: 77777), pseudoHeaderChecksum: true)
    sw.forward(interface: "eth1", frames: [S.vxlan(alone)], flags: flags)
    var header = [UInt8](repeating: 0, count: VirtioNetHeader.length)
    header.withUnsafeMutableBytes {
      VirtioNetHeader(
        flags: VirtioNetHeader.needsChecksum, headerLength: UInt16(min(alone.count, 256)), checksumStart: 34,
        checksumOffset: 16
      ).store(to: $0.baseAddress!)
    }
    XCTAssertEqual(tap.messages(), [header + alone])
  }

  /// A write the kernel refuses is counted; nothing is left held.
  func testRefusedWriteIsCounted() {
    let tap = Tap()
    let sw = makeSwitch(tap)
    shutdown(tap.writer, Int32(SHUT_WR))
    let s = C.stream(C.Segment(), count: 3)
    for _ in 0..<20 {
      sw.forward(interface: "eth1", frames: s.map { S.vxlan(C.frame($0)) }, flags: FrameFlags.checksumValid)
    }
    XCTAssertEqual(sw.core.statistics[Counter.tapRefusals], 20, "every write refused, every buffer freed")
    XCTAssertEqual(sw.pipeline.coalescer(interface: UInt16(sw.interfaceIndex("vm1")!)).lastTapRefusal, EPIPE)
  }
}
