import CPacket
import Foundation
import XCTest

@testable import Dataplane

/// The underlay side: no ICMP port-unreachable for VXLAN frames while the port is held,
/// and checksum completion of frames a local stack sent with CHECKSUM_PARTIAL.
final class AFPacketUnderlayTests: XCTestCase {
  var lab: NetnsLab!
  var sw = ""
  var peer = ""

  override func setUpWithError() throws {
    lab = try NetnsLab.make(self)
    sw = try lab.namespace("sw")
    peer = try lab.namespace("peer")
    try lab.sh(
      sw,
      "ip link add p0 type veth peer name p1 netns \(peer) && ip addr add 10.78.0.1/24 dev p0 && ip link set p0 up"
    )
    try lab.sh(peer, "ip addr add 10.78.0.2/24 dev p1 && ip link set p1 up")
  }

  override func tearDown() {
    lab?.destroy()
    lab = nil
  }

  func isPortUnreachable(_ frame: [UInt8]) -> Bool {
    frame.count >= 36 && frame[12] == 0x08 && frame[13] == 0x00 && frame[23] == 1 && frame[34] == 3
      && frame[35] == 3
  }

  func testNoICMPPortUnreachableWhileVXLANPortIsHeld() throws {
    let vtep = IPAddress("10.78.0.1")!
    let swMAC = try lab.mac(sw, "p0")
    let peerMAC = try lab.mac(peer, "p1")
    let frame = Frames.ethernet(
      destination: swMAC, source: peerMAC, etherType: 0x0800,
      payload: Frames.ipv4UDP(
        source: IPAddress("10.78.0.2")!, destination: vtep, sourcePort: 50001, destinationPort: 4789,
        payload: Frames.vxlan(vni: 5, inner: [UInt8](repeating: 0, count: 60))))
    let (capture, sender) = try NetworkNamespace.run(peer) {
      (try AFPacketPort(interface: "p1", role: .access), try RawSender(interface: "p1"))
    }
    var seen: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []

    // Phase 1, port held (as LiveSwitch does): the underlay port sees the frames, the
    // host answers nothing.
    try NetworkNamespace.run(sw) {
      let holder = try VXLANPortHolder(address: vtep, port: 4789)
      let underlay = try AFPacketPort(interface: "p0", role: .underlay(vtep: vtep, udpPort: 4789))
      for _ in 0..<5 { sender.send(frame) }
      var got: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
      XCTAssertTrue(
        eventually {
          drain(underlay, into: &got); return got.count >= 5
        })
      // The ICMP, if any, would follow within microseconds; give it 300 ms.
      _ = eventually(timeout: 0.3) {
        drain(capture, into: &seen); return seen.contains { isPortUnreachable($0.bytes) }
      }
      XCTAssertFalse(
        seen.contains { isPortUnreachable($0.bytes) }, "ICMP port unreachable emitted while the port was held"
      )
      holder.close()
    }

    // Phase 2, control: without the holder the kernel does answer, so phase 1 meant it.
    seen.removeAll()
    sender.send(frame)
    XCTAssertTrue(
      eventually(timeout: 3) {
        drain(capture, into: &seen); return seen.contains { isPortUnreachable($0.bytes) }
      },
      "control: expected ICMP port unreachable without the holder")
  }

  func testVXLANPortInUseIsReported() throws {
    try NetworkNamespace.run(sw) {
      let first = try VXLANPortHolder(address: IPAddress("10.78.0.1")!, port: 4789)
      XCTAssertThrowsError(try VXLANPortHolder(address: IPAddress("10.78.0.1")!, port: 4789)) { error in
        guard case .vxlanPort(_, 4789, EADDRINUSE)? = error as? AFPacketError else {
          return XCTFail("\(error)")
        }
      }
      first.close()
    }
  }

  func testChecksumCompletedForLocallyGeneratedFrames() throws {
    let port = try NetworkNamespace.run(sw) { try AFPacketPort(interface: "p0", role: .access) }
    // A UDP datagram from the peer's own stack crosses the veth with CHECKSUM_PARTIAL.
    try NetworkNamespace.run(peer) {
      let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
      defer { close(fd) }
      var address = sockaddr_in()
      address.sin_family = sa_family_t(AF_INET)
      address.sin_port = UInt16(9999).bigEndian
      address.sin_addr.s_addr = UInt32(0x0A4E_0001).bigEndian
      let payload = [UInt8](repeating: 0x42, count: 101)
      let sent = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
          payload.withUnsafeBytes {
            sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size))
          }
        }
      }
      XCTAssertEqual(sent, 101)
    }
    var frames: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
    XCTAssertTrue(
      eventually {
        drain(port, into: &frames); return frames.contains { $0.bytes.count > 23 && $0.bytes[23] == 17 }
      })
    guard let udp = frames.first(where: { $0.bytes.count > 23 && $0.bytes[23] == 17 }) else { return }
    let segment = Array(udp.bytes[34..<(34 + 8 + 101)])
    XCTAssertTrue(
      AFPacketChecksumTests.verifies(
        source: Array(udp.bytes[26..<30]), destination: Array(udp.bytes[30..<34]), proto: 17, segment: segment
      ),
      "UDP checksum must verify after completion")
    XCTAssertEqual(
      port.statistics.checksumsCompleted, 1, "the veth peer's stack left the checksum to 'hardware'")
    XCTAssertEqual(udp.flags & FrameFlags.checksumValid, 0)
  }
}
