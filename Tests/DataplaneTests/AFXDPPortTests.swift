import CPacket
import Foundation
import XCTest

@testable import Dataplane

/// AF_XDP ports on veth pairs inside throw-away network namespaces: what the steering
/// program takes and what it leaves to the kernel, byte-exact receive and transmit, and
/// the program removed on detach.
final class AFXDPPortTests: XCTestCase {
  var lab: NetnsLab!
  /// The switch's side (p0) and the wire's far end (p1), in namespaces of their own so
  /// that traffic between their addresses crosses the veth.
  var ns = ""
  var peer = ""

  override func setUpWithError() throws {
    lab = try NetnsLab.make(self)
    (ns, peer) = try lab.vethPair()
  }

  /// A frame injector on p1, opened in the peer namespace (a socket keeps its namespace).
  func peerSender() throws -> RawSender { try NetworkNamespace.run(peer) { try RawSender(interface: "p1") } }
  func peerCapture() throws -> AFPacketPort {
    try NetworkNamespace.run(peer) { try AFPacketPort(interface: "p1", role: .access) }
  }

  override func tearDown() {
    lab?.destroy()
    lab = nil
  }

  /// Commits `frame` to the port's transmit ring, as the pipeline does; when the ring is
  /// full, kicks the port instead and returns false (try again).
  static func write(_ frame: [UInt8], to port: AFXDPPort) -> Bool {
    guard let slot = port.transmitRing.pointee.reserve() else {
      port.flushTransmit()
      return false
    }
    frame.withUnsafeBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
    port.transmitRing.pointee.commit(length: frame.count)
    return true
  }

  let hostA = MACAddress("02:00:00:00:00:0a")!
  let hostB = MACAddress("02:00:00:00:00:0b")!

  func testTheVerifierAcceptsEveryProgramShape() throws {
    try NetworkNamespace.run(ns) {
      for match in [
        XDPSteeringProgram.Match.everything, .vxlan(vtep: IPAddress("10.9.0.1")!, udpPort: 4789),
        .vxlan(vtep: IPAddress("fd00::1")!, udpPort: 8472),
      ] {
        for sockets in [1, 2, 3] {
          let attachment = try XDPAttachment(
            interface: "p0", program: XDPSteeringProgram(match: match, socketsPerQueue: sockets), queues: 1)
          XCTAssertNotEqual(XDPAttachment.attachedProgramID(interface: "p0"), 0, "\(match) \(sockets)")
          attachment.detach()
          XCTAssertEqual(XDPAttachment.attachedProgramID(interface: "p0"), 0, "\(match) still attached")
        }
      }
    }
  }

  func testAccessPortReceivesAndTransmitsByteExact() throws {
    try NetworkNamespace.run(ns) {
      let attachment = try XDPAttachment(
        interface: "p0", program: XDPSteeringProgram(match: .everything), queues: 1)
      let port = try AFXDPPort(interface: "p0", isUnderlay: false, attachment: attachment)
      defer { port.close() }
      let sender = try peerSender()
      var sent: [[UInt8]] = []
      var received: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
      // In rounds of 100: a veth holds at most 256 frames for its XDP program.
      for index in 0..<1500 {
        let frame = Frames.ethernet(
          destination: hostA, source: hostB, etherType: 0x88B5,
          payload: [UInt8(index & 0xFF), UInt8(index >> 8)]
            + (0..<(44 + index % 1400)).map { UInt8($0 & 0xFF) })
        sender.send(frame)
        sent.append(frame)
        if index % 100 == 99 {
          XCTAssertTrue(
            eventually {
              drain(port, into: &received); return received.count >= sent.count
            })
        }
      }
      XCTAssertEqual(received.map(\.bytes), sent)
      XCTAssertEqual(port.statistics.receivedFrames, UInt64(sent.count))

      // Transmit: three times more frames than the ring has slots, so slots come back
      // through the completion ring and are reused.
      let capture = try peerCapture()
      var transmitted: [[UInt8]] = []
      var captured: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
      var index = 0
      while index < 3000 {
        let frame = Frames.ethernet(
          destination: hostB, source: hostA, etherType: 0x88B5,
          payload: [UInt8(index & 0xFF), UInt8(index >> 8)]
            + (0..<(60 + index % 900)).map { UInt8($0 & 0xFF) })
        guard Self.write(frame, to: port) else {
          drain(capture, into: &captured)
          continue
        }
        transmitted.append(frame)
        index += 1
        if index % 128 == 0 {
          port.flushTransmit()
          drain(capture, into: &captured)
        }
      }
      XCTAssertTrue(
        eventually {
          port.flushTransmit()
          drain(capture, into: &captured)
          return captured.filter { $0.bytes[12] == 0x88 }.count >= transmitted.count
        })
      XCTAssertEqual(captured.map(\.bytes).filter { $0[12] == 0x88 }, transmitted)
      XCTAssertEqual(port.statistics.transmitErrors, 0)
    }
  }

  func testUnderlayProgramTakesOnlyVXLANToTheVTEP() throws {
    try NetworkNamespace.run(ns) {
      let vtep = IPAddress("10.9.0.1")!
      let attachment = try XDPAttachment(
        interface: "p0", program: XDPSteeringProgram(match: .vxlan(vtep: vtep, udpPort: 4789)), queues: 1)
      let port = try AFXDPPort(interface: "p0", isUnderlay: true, attachment: attachment)
      defer { port.close() }
      let p0 = try lab.mac(ns, "p0")
      let p1 = try lab.mac(peer, "p1")
      let sender = try peerSender()
      let inner = Frames.ethernet(
        destination: hostA, source: hostB, etherType: 0x88B5, payload: [1, 2, 3, 4])
      let other = IPAddress("10.9.0.2")!
      func udp(to destination: IPAddress, port: UInt16) -> [UInt8] {
        Frames.ethernet(
          destination: p0, source: p1, etherType: 0x0800,
          payload: Frames.ipv4UDP(
            source: other, destination: destination, sourcePort: 50000, destinationPort: port,
            payload: Frames.vxlan(vni: 100, inner: inner)))
      }
      let vxlan = udp(to: vtep, port: 4789)
      sender.send(udp(to: vtep, port: 4790))  // another UDP port: the kernel's
      sender.send(udp(to: IPAddress("10.9.0.77")!, port: 4789))  // another address
      sender.send(vxlan)
      var received: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
      XCTAssertTrue(
        eventually {
          drain(port, into: &received); return !received.isEmpty
        })
      XCTAssertEqual(received.map(\.bytes), [vxlan])
      // The host keeps working through the same interface: ARP and ICMP reach the kernel.
      let ping = try NetnsLab.run(
        ["ip", "netns", "exec", peer, "ping", "-c", "3", "-i", "0.05", "-W", "1", "10.9.0.1"],
        allowFailure: true)
      XCTAssertTrue(ping.contains(" 0% packet loss"), ping)
      drain(port, into: &received)
      XCTAssertEqual(received.count, 1, "the port took traffic that is not VXLAN to its VTEP")
    }
  }

  /// Two sockets on the veth's one queue, sharing its UMEM: every frame reaches exactly
  /// one of them, byte-exact, all frames of a flow (a pair of Ethernet addresses on an
  /// access interface, a UDP source port on the underlay) the same one, and both get
  /// flows. Then both transmit three rings' worth each, so slots come back through the
  /// shared completion ring to whichever port reaps them.
  func testTwoSocketsShareOneQueue() throws {
    let vtep = IPAddress("10.9.0.1")!
    for match in [XDPSteeringProgram.Match.everything, .vxlan(vtep: vtep, udpPort: 4789)] {
      try NetworkNamespace.run(ns) {
        let attachment = try XDPAttachment(
          interface: "p0", program: XDPSteeringProgram(match: match, socketsPerQueue: 2), queues: 1)
        defer { attachment.detach() }
        var options = AFXDPPort.Options()
        options.ringSize = 256
        let ports = try AFXDPPort.open(
          interface: "p0", queue: 0, sockets: 2, isUnderlay: match != .everything, attachment: attachment,
          options: options)
        defer { ports.forEach { $0.close() } }
        let p0 = try lab.mac(ns, "p0")
        let p1 = try lab.mac(peer, "p1")
        let sender = try peerSender()
        // 32 flows of 3 frames, in rounds that fit the veth's XDP queue.
        var sent: [[UInt8]] = []
        var flowOfFrame: [[UInt8]: Int] = [:]
        for flow in 0..<32 {
          for copy in 0..<3 {
            let inner = Frames.ethernet(
              destination: hostA, source: MACAddress((2, 0, 0, 0, UInt8(flow), 0x1b)), etherType: 0x88B5,
              payload: [UInt8(flow), UInt8(copy)] + (0..<60).map { UInt8($0) })
            let frame =
              match == .everything
              ? inner
              : Frames.ethernet(
                destination: p0, source: p1, etherType: 0x0800,
                payload: Frames.ipv4UDP(
                  source: IPAddress("10.9.0.2")!, destination: vtep, sourcePort: 49152 + UInt16(flow) * 257,
                  destinationPort: 4789, payload: Frames.vxlan(vni: 100, inner: inner)))
            sender.send(frame)
            sent.append(frame)
            flowOfFrame[frame] = flow
          }
        }
        var received: [[(bytes: [UInt8], tag: UInt32, flags: UInt8)]] = [[], []]
        XCTAssertTrue(
          eventually {
            for index in 0..<2 { drain(ports[index], into: &received[index]) }
            return received[0].count + received[1].count >= sent.count
          }, "\(match): \(received[0].count) + \(received[1].count) of \(sent.count)")
        XCTAssertEqual(Set(received.joined().map(\.bytes)), Set(sent), "\(match)")
        XCTAssertEqual(received[0].count + received[1].count, sent.count, "\(match)")
        let flows = received.map { Set($0.compactMap { flowOfFrame[$0.bytes] }) }
        XCTAssertEqual(flows[0].intersection(flows[1]), [], "\(match): a flow on both sockets")
        XCTAssertFalse(flows[0].isEmpty || flows[1].isEmpty, "\(match): flows per socket \(flows)")

        let capture = try peerCapture()
        var captured: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
        var transmitted: [[UInt8]] = []
        var next = [0, 0]
        let perPort = 3 * options.ringSize
        while next[0] < perPort || next[1] < perPort {
          for (index, port) in ports.enumerated() where next[index] < perPort {
            let frame = Frames.ethernet(
              destination: hostB, source: hostA, etherType: 0x88B5,
              payload: [UInt8(index), UInt8(next[index] & 0xFF), UInt8(next[index] >> 8)]
                + (0..<60).map { UInt8($0) })
            guard Self.write(frame, to: port) else {
              drain(capture, into: &captured)
              continue
            }
            transmitted.append(frame)
            next[index] += 1
            if next[index] % 64 == 0 { port.flushTransmit() }
          }
          drain(capture, into: &captured)
        }
        XCTAssertTrue(
          eventually {
            ports.forEach { $0.flushTransmit() }
            drain(capture, into: &captured)
            return captured.filter { $0.bytes[12] == 0x88 }.count >= transmitted.count
          }, "\(match)")
        XCTAssertEqual(
          captured.map(\.bytes).filter { $0[12] == 0x88 }.sorted { $0.lexicographicallyPrecedes($1) },
          transmitted.sorted { $0.lexicographicallyPrecedes($1) }, "\(match)")
        XCTAssertEqual(ports.map(\.statistics.transmitErrors), [0, 0])
      }
    }
  }

  /// Two interfaces' sockets in one UMEM (`openSharingMemory`): frames received on p0 leave
  /// q0 from the chunk they were received in, behind 14 bytes written in its headroom
  /// (`InPlaceTransmit.claim`, `TxRing.commitInPlace`), byte-exact. Three times as many
  /// frames as p0's queue has receive chunks: a chunk sent in place must come back to
  /// p0's fill ring through q0's completion ring, or p0 runs dry and frames are lost.
  func testFramesLeaveAnotherInterfaceFromWhereTheyWereReceived() throws {
    try lab.sh(
      ns, "ip link add q0 type veth peer name q1 netns \(peer) && ip link set q0 up")
    try lab.sh(peer, "ip link set q1 up")
    try NetworkNamespace.run(ns) {
      let attachments = try ["p0", "q0"].map {
        try XDPAttachment(interface: $0, program: XDPSteeringProgram(match: .everything), queues: 1)
      }
      defer { attachments.forEach { $0.detach() } }
      var options = AFXDPPort.Options()
      options.ringSize = 128
      let ports = try AFXDPPort.openSharingMemory(
        [("p0", false, attachments[0]), ("q0", false, attachments[1])], options: options)
      defer { ports.forEach { $0.close() } }
      let ring = ports[1].transmitRing
      XCTAssertNotNil(ring.pointee.inPlace)
      let sender = try peerSender()
      let capture = try NetworkNamespace.run(peer) { try AFPacketPort(interface: "q1", role: .access) }
      let outer = Frames.ethernet(destination: hostB, source: hostA, etherType: 0x88B6, payload: [])
      var expected: [[UInt8]] = []
      var captured: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
      var vector = FrameVector()
      // 2 x 128 receive chunks on p0's queue: 768 frames, in rounds that fit the veth's
      // XDP queue.
      for round in 0..<12 {
        var sent = 0
        for index in 0..<64 {
          let number = round * 64 + index
          let frame = Frames.ethernet(
            destination: hostA, source: hostB, etherType: 0x88B5,
            payload: [UInt8(number & 0xFF), UInt8(number >> 8)]
              + (0..<(46 + number % 700)).map { UInt8($0 & 0xFF) })
          sender.send(frame)
          expected.append(outer + frame)
          sent += 1
        }
        var received = 0
        XCTAssertTrue(
          eventually {
            vector.count = 0
            let count = ports[0].receive(into: &vector)
            for index in 0..<count {
              let frame = vector.frames[index]
              let length = Int(vector.lengths[index])
              guard ring.pointee.reserve() != nil,
                let offset = ring.pointee.inPlace?.pointee.claim(frame, headroom: outer.count)
              else { continue }
              outer.withUnsafeBytes {
                (frame - outer.count).copyMemory(from: $0.baseAddress!, byteCount: outer.count)
              }
              ring.pointee.commitInPlace(offset: offset, length: outer.count + length)
            }
            received += count
            if ring.pointee.pending > 0 { ports[1].flushTransmit() }
            ports[0].releaseReceived()
            drain(capture, into: &captured)
            return received >= sent
          }, "round \(round): \(received) of \(sent) received")
      }
      XCTAssertTrue(
        eventually {
          ports[1].flushTransmit()
          drain(capture, into: &captured)
          return captured.filter { $0.bytes[12] == 0x88 && $0.bytes[13] == 0xB6 }.count >= expected.count
        })
      XCTAssertEqual(captured.map(\.bytes).filter { $0[12] == 0x88 && $0[13] == 0xB6 }, expected)
      XCTAssertEqual(ports[1].statistics.sentInPlace, UInt64(expected.count))
      XCTAssertEqual(ports[0].statistics.kernelDrops, 0)
      XCTAssertEqual(ports[1].statistics.transmitErrors, 0)
    }
  }
}
