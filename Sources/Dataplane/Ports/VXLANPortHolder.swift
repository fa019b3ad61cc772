import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A UDP socket bound to (local VTEP, VXLAN port) that is never read.
///
/// Why: an AF_PACKET tap does not consume frames. Every VXLAN frame the switch receives
/// also continues up the host's stack; with no socket on the port, UDP answers each one
/// with ICMP port-unreachable (rate-limited, but still noise toward the remote VTEP and
/// work for the host). Holding the port makes UDP deliver to this socket instead, where a
/// classic BPF filter `ret #0` discards the datagram before it is queued: no ICMP, no
/// memory held, nothing to read. SO_RCVBUF is set to the minimum as a second guard.
///
/// The socket is bound with IP_FREEBIND so the switch can start before the address is
/// configured. Binding fails with EADDRINUSE if a kernel vxlan device (or another switch)
/// already owns the port on that address.
public final class VXLANPortHolder {
  public let fd: Int32
  public let address: IPAddress
  public let port: UInt16

  /// UDP GRO for the port (`UDP_GRO`): with GRO on the underlay device, the kernel
  /// merges a flow's datagrams before the packet socket sees them (one UDP_L4 GSO frame,
  /// split again by the underlay port). Linux merges only datagrams for a socket that
  /// asked for it.
  public static let udpGRO: Int32 = 104

  public init(address: IPAddress, port: UInt16, receiveOffload: Bool = false) throws {
    self.address = address
    self.port = port
    let family = address.isIPv4 ? AF_INET : AF_INET6
    let label = "\(address)"
    let socketFD = try Syscall.libc("socket(UDP)", label) {
      socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }
    do {
      _ = try Syscall.cp("SO_ATTACH_FILTER(ret 0)", label) { cp_attach_drop_all_filter(socketFD) }
      var one: Int32 = 1
      var small: Int32 = 1
      _ = setsockopt(socketFD, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
      if receiveOffload {
        _ = setsockopt(socketFD, Int32(IPPROTO_UDP), Self.udpGRO, &one, socklen_t(MemoryLayout<Int32>.size))
      }
      if address.isIPv4 {
        _ = setsockopt(socketFD, Int32(IPPROTO_IP), IP_FREEBIND, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        if case .v4(let value) = address { sin.sin_addr.s_addr = value.bigEndian }
        let result = withUnsafePointer(to: &sin) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
          }
        }
        if result != 0 { throw AFPacketError.vxlanPort(address: label, port: port, errno: errno) }
      } else {
        _ = setsockopt(socketFD, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        // IPV6_FREEBIND (78) is not in every libc header set.
        _ = setsockopt(socketFD, Int32(IPPROTO_IPV6), 78, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        let bytes = address.bytes
        withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
          for index in 0..<16 { raw[index] = bytes[index] }
        }
        let result = withUnsafePointer(to: &sin6) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
          }
        }
        if result != 0 { throw AFPacketError.vxlanPort(address: label, port: port, errno: errno) }
      }
    } catch {
      Syscall.close(socketFD)
      throw error
    }
    fd = socketFD
  }

  private var closed = false

  public func close() {
    if !closed {
      closed = true
      Syscall.close(fd)
    }
  }

  deinit { close() }
}
