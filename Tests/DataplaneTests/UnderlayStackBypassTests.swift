import CPacket
import Foundation
import XCTest

@testable import Dataplane

/// The underlay's tc ingress program on a veth pair in throw-away namespaces: the
/// switch's packet socket still sees every VXLAN datagram, the host's stack no longer
/// does, and everything else (other UDP ports, ARP and neighbour discovery) still reaches
/// the stack; detaching gives the datagrams back to the stack.
final class UnderlayStackBypassTests: XCTestCase {
  var lab: NetnsLab!
  /// The switch's side (p0, 10.9.0.1 and fd09::1) and the far end (p1, .2 and ::2).
  var ns = ""
  var peer = ""

  override func setUpWithError() throws {
    lab = try NetnsLab.make(self)
    (ns, peer) = try lab.vethPair(ipv6: true)
  }

  override func tearDown() {
    lab?.destroy()
    lab = nil
  }

  func testVXLANDatagramsReachThePacketSocketButNotTheStack() throws {
    for (vtep, far) in [("10.9.0.1", "10.9.0.2"), ("fd09::1", "fd09::2")] {
      let address = IPAddress(vtep)!
      let capture = try NetworkNamespace.run(ns) { try AFPacketPort(interface: "p0", role: .access) }
      defer { capture.close() }
      let vxlanSocket = try NetworkNamespace.run(ns) { try UDPTestSocket(bindTo: address, port: 4789) }
      let otherSocket = try NetworkNamespace.run(ns) { try UDPTestSocket(bindTo: address, port: 4790) }
      let sender = try NetworkNamespace.run(peer) { try UDPTestSocket(bindTo: IPAddress(far)!, port: 0) }
      var bypass: UnderlayStackBypass? = try NetworkNamespace.run(ns) {
        try UnderlayStackBypass(interface: "p0", vtep: address, udpPort: 4789)
      }
      XCTAssertTrue(bypass?.isAttached ?? false)

      // Datagrams for the switch, then one for another port: once that one is in, the
      // earlier ones (same path, in order) have been through the hook too.
      for index in 0..<5 { sender.send([UInt8](repeating: UInt8(index), count: 60), to: address, port: 4789) }
      sender.send([0xAB], to: address, port: 4790)
      XCTAssertTrue(
        eventually { otherSocket.receive() == [0xAB] }, "\(vtep): other UDP ports reach the stack")
      XCTAssertNil(vxlanSocket.receive(), "\(vtep): a VXLAN datagram reached the host's stack")
      var frames: [(bytes: [UInt8], tag: UInt32, flags: UInt8)] = []
      let isVXLAN: ((bytes: [UInt8], tag: UInt32, flags: UInt8)) -> Bool = {
        let udp = address.isIPv4 ? 34 : 54
        return $0.bytes.count > udp + 4 && $0.bytes[udp + 2] == 0x12 && $0.bytes[udp + 3] == 0xB5
      }
      XCTAssertTrue(
        eventually {
          drain(capture, into: &frames); return frames.filter(isVXLAN).count == 5
        }, "\(vtep): the packet socket saw \(frames.filter(isVXLAN).count) of 5 datagrams")

      bypass?.detach()
      XCTAssertFalse(bypass?.isAttached ?? true)
      bypass = nil
      sender.send([0xCD], to: address, port: 4789)
      XCTAssertTrue(
        eventually { vxlanSocket.receive() == [0xCD] }, "\(vtep): detached, the stack has it again")
    }
  }

  func testAnInterfaceThatDoesNotExistIsAClearError() throws {
    try NetworkNamespace.run(ns) {
      XCTAssertThrowsError(
        try UnderlayStackBypass(interface: "nope0", vtep: IPAddress("10.9.0.1")!, udpPort: 4789)
      ) { error in
        XCTAssertTrue("\(error)".contains("nope0"), "\(error)")
      }
    }
  }
}

/// A non-blocking UDP socket for the tests above (it stays in the namespace it was made in).
final class UDPTestSocket {
  let fd: Int32
  let isIPv4: Bool

  init(bindTo address: IPAddress, port: UInt16) throws {
    isIPv4 = address.isIPv4
    fd = socket(isIPv4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    guard fd >= 0 else { throw AFPacketError.system(operation: "socket", interface: "udp", errno: errno) }
    let bound = Self.withAddress(address, port) { bind(fd, $0, $1) }
    guard bound == 0 else {
      let error = errno
      close(fd)
      throw AFPacketError.system(operation: "bind \(address) port \(port)", interface: "udp", errno: error)
    }
  }

  deinit { close(fd) }

  func send(_ payload: [UInt8], to address: IPAddress, port: UInt16) {
    let sent = Self.withAddress(address, port) { sa, length in
      payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, length) }
    }
    precondition(sent == payload.count, "sendto failed: errno \(errno)")
  }

  /// One datagram, or nil when none is queued.
  func receive() -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 2048)
    let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    return count < 0 ? nil : Array(buffer[0..<count])
  }

  /// `address` and `port` as a `sockaddr_in` or `sockaddr_in6`, in storage for either.
  private static func withAddress<T>(
    _ address: IPAddress, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T
  ) -> T {
    var storage = sockaddr_storage()
    let length = withUnsafeMutableBytes(of: &storage) { raw -> Int in
      let bytes = address.bytes
      // sin_family and sin6_family, then the port, sit at the same offsets.
      raw.storeBytes(of: sa_family_t(address.isIPv4 ? AF_INET : AF_INET6), as: sa_family_t.self)
      raw.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
      let offset =
        address.isIPv4
        ? MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!
        : MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!
      for index in bytes.indices { raw[offset + index] = bytes[index] }
      return address.isIPv4 ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
    }
    return withUnsafePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(length)) }
    }
  }
}
