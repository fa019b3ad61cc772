import CPacket
import Foundation
import XCTest

@testable import Dataplane

/// UDP GSO through a real kernel: a run of VXLAN datagrams written to the underlay
/// port's ring leaves as one GSO frame, the kernel cuts it up at the veth (TSO, GSO and
/// USO off, as on a wire), and the peer receives MTU-sized datagrams, each byte for byte
/// what the per-datagram path sends (IPv4 identification counted up from the frame's,
/// as `UnderlaySegmenterTests.kernelSegments` models it). Also the receive side: the
/// datagrams a vxswitch peer sends this way arrive with the outer UDP checksum left
/// unfinished (CHECKSUM_PARTIAL across the veth), and the underlay port takes them as
/// verified rather than completing the inner checksum.
final class UnderlayGSOLiveTests: XCTestCase {
  typealias U = UnderlaySegmenterTests
  var lab: NetnsLab!
  var sw = ""
  var peer = ""

  override func setUpWithError() throws {
    lab = try NetnsLab.make(self)
    sw = try lab.namespace("sw")
    peer = try lab.namespace("peer")
    try lab.sh(
      sw,
      "ip link add p0 type veth peer name p1 netns \(peer) && ip addr add 10.79.0.1/24 dev p0 && ip link set p0 up"
    )
    try lab.sh(peer, "ip addr add 10.79.0.2/24 dev p1 && ip link set p1 up")
  }

  override func tearDown() {
    lab?.destroy()
    lab = nil
  }

  /// Writes `datagrams` (complete VXLAN frames) to the port's ring through a segmenter,
  /// hands the run over and kicks the kernel.
  func send(_ datagrams: [[UInt8]], on port: AFPacketPort) {
    let segmenter = UnsafeMutablePointer<UnderlaySegmenter>.allocate(capacity: 1)
    segmenter.initialize(to: UnderlaySegmenter())
    defer { segmenter.deallocate() }
    port.transmitRing.pointee.segmenter = segmenter
    for datagram in datagrams {
      guard let output = port.transmitRing.pointee.reserve() else { return XCTFail("ring full") }
      datagram.withUnsafeBytes { output.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
      port.transmitRing.pointee.commitEncapsulated(length: datagram.count)
    }
    port.transmitRing.pointee.publishSegmented(segmenter)
    port.transmitRing.pointee.segmenter = nil
    XCTAssertEqual(segmenter.pointee.frames, 1, "one GSO frame")
    port.flushTransmit()
  }

  func testKernelCutsTheGSOFrameIntoTheSameDatagramsAsThePerDatagramPath() throws {
    // Checksums finished in software at the sender, so the peer sees final bytes.
    try lab.sh(
      sw,
      "ethtool -K p0 tso off gso off tx-udp-segmentation off tx-udp_tnl-segmentation off tx off >/dev/null")
    let plain = U.makeSwitch(gso: false, udpChecksum: true)
    plain.forward(interface: "vm1", frames: U.segments(payload: U.mss * 10 + 500))
    let datagrams = plain.takeOutput("eth1")
    XCTAssertEqual(datagrams.count, 11)

    let capture = try NetworkNamespace.run(peer) { try AFPacketPort(interface: "p1", role: .access) }
    try NetworkNamespace.run(sw) {
      let port = try AFPacketPort(
        interface: "p0", role: .underlay(vtep: IPAddress("10.79.0.1")!, udpPort: 4789))
      XCTAssertTrue(port.hasVirtioNetHeader)
      XCTAssertNil(port.segmentationRefusal)
      send(datagrams, on: port)
      XCTAssertEqual(port.statistics.transmitErrors, 0)
    }
    var seen: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
    XCTAssertTrue(
      eventually {
        drain(capture, into: &seen); return seen.count >= 11
      })
    let received = seen.map(\.bytes).filter { $0.count > 100 }
    XCTAssertEqual(received.count, 11, "MTU-sized datagrams on the wire")
    for (index, (got, want)) in zip(received, datagrams).enumerated() {
      XCTAssertLessThanOrEqual(got.count, 1514)
      XCTAssertEqual(got, U.numbered(want, index), "datagram \(index)")
    }
  }

  func testUnfinishedOuterChecksumIsTakenAsVerifiedOnTheUnderlay() throws {
    // Checksum offload on (the veth default): the datagrams cross with CHECKSUM_PARTIAL.
    try lab.sh(sw, "ethtool -K p0 tso off gso off tx-udp-segmentation off >/dev/null")
    let plain = U.makeSwitch(gso: false)
    plain.forward(interface: "vm1", frames: U.segments(payload: U.mss * 3))
    let datagrams = plain.takeOutput("eth1").map { frame -> [UInt8] in
      // Addressed to the peer's VTEP, so that its underlay filter takes them.
      var copy = frame
      copy.replaceSubrange(30..<34, with: [10, 79, 0, 2])
      UnderlaySegmenterTests.setBE16(&copy, 24, 0)
      UnderlaySegmenterTests.setBE16(&copy, 24, Int(~TCPCoalescerTests.sum(Array(copy[14..<34]))))
      return copy
    }
    let underlay = try NetworkNamespace.run(peer) {
      try AFPacketPort(interface: "p1", role: .underlay(vtep: IPAddress("10.79.0.2")!, udpPort: 4789))
    }
    try NetworkNamespace.run(sw) {
      let port = try AFPacketPort(
        interface: "p0", role: .underlay(vtep: IPAddress("10.79.0.1")!, udpPort: 4789))
      send(datagrams, on: port)
    }
    var seen: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
    XCTAssertTrue(
      eventually {
        drain(underlay, into: &seen); return seen.count >= 3
      })
    XCTAssertEqual(seen.count, 3)
    for (index, frame) in seen.enumerated() {
      // Verified, and built on this host: the inner TCP checksum is trusted too.
      XCTAssertEqual(frame.flags, FrameFlags.checksumValid | FrameFlags.builtOnThisHost, "datagram \(index)")
      // As sent, but for the outer UDP checksum: never computed (the pseudo-header sum),
      // so cleared to "none" for the decap fast path.
      var expected = U.numbered(datagrams[index], index)
      expected[40] = 0
      expected[41] = 0
      XCTAssertEqual(frame.bytes, expected, "datagram \(index)")
    }
  }

  func testProbeFindsUDPGSOAcceptedOnThisKernel() throws {
    let refusal = try NetworkNamespace.run(sw) { UDPSegmentationProbe.refusal() }
    XCTAssertNil(refusal)
  }
}
