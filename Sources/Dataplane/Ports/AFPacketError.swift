import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Everything the live I/O layer can fail with, with the interface concerned and, for
/// system calls, the errno. Descriptions are written for an operator.
public enum AFPacketError: Error, Equatable, CustomStringConvertible {
  /// `if_nametoindex` found nothing (in the current network namespace).
  case noSuchInterface(String)
  /// EPERM/EACCES on an operation that needs CAP_NET_RAW / CAP_NET_ADMIN.
  case permissionDenied(operation: String, interface: String, errno: Int32)
  /// The same interface used twice in one configuration, or already owned by another
  /// running `LiveSwitch` in this process and namespace.
  case interfaceClaimedTwice(String)
  /// A system call failed.
  case system(operation: String, interface: String, errno: Int32)
  /// libpcap rejected a filter expression.
  case filter(interface: String, expression: String, message: String)
  /// Binding the VXLAN UDP port failed, usually because something else (a kernel vxlan
  /// device, another vxswitch) listens on it.
  case vxlanPort(address: String, port: UInt16, errno: Int32)
  /// The configuration cannot be run (e.g. zero workers).
  case invalidConfiguration(String)
  /// Netlink (libnl) failed.
  case netlink(operation: String, errno: Int32)
  /// An AF_XDP port could not be set up (no native XDP in the driver, a verifier refusal,
  /// a queue the device does not have); the switch falls back to AF_PACKET.
  case afXDP(interface: String, reason: String)
  /// The underlay's tc ingress program could not be attached (`UnderlayStackBypass`); the
  /// switch runs without it.
  case underlayBypass(interface: String, reason: String)
  /// A tap redirected to an interface could not be set up (`RedirectingTap`); the switch
  /// sends through that interface's packet socket alone.
  case redirectingTap(name: String, reason: String)

  public var errno: Int32? {
    switch self {
    case .permissionDenied(_, _, let e), .system(_, _, let e), .vxlanPort(_, _, let e), .netlink(_, let e):
      return e
    default: return nil
    }
  }

  public var interface: String? {
    switch self {
    case .noSuchInterface(let name), .interfaceClaimedTwice(let name), .afXDP(let name, _),
      .underlayBypass(let name, _), .redirectingTap(let name, _):
      return name
    case .permissionDenied(_, let name, _), .system(_, let name, _), .filter(let name, _, _): return name
    default: return nil
    }
  }

  public var description: String {
    switch self {
    case .noSuchInterface(let name):
      return "interface \(name) does not exist"
    case .permissionDenied(let operation, let name, _):
      return "\(operation) on \(name): operation needs CAP_NET_RAW (run as root)"
    case .interfaceClaimedTwice(let name):
      return "interface \(name) is claimed twice (used by two ports or by another running switch)"
    case .system(let operation, let name, let e):
      return "\(operation) on \(name) failed: \(Self.text(e)) (errno \(e))"
    case .afXDP(let name, let reason):
      return "AF_XDP on \(name): \(reason)"
    case .underlayBypass(let name, let reason):
      return "underlay stack bypass on \(name): \(reason)"
    case .redirectingTap(let name, let reason):
      return "tap \(name): \(reason)"
    case .filter(let name, let expression, let message):
      return "BPF filter for \(name) does not compile: \(message) [\(expression)]"
    case .vxlanPort(let address, let port, let e):
      let hint = e == EADDRINUSE ? " (a kernel vxlan device or another switch holds it?)" : ""
      return "cannot bind UDP \(address) port \(port): \(Self.text(e))\(hint)"
    case .invalidConfiguration(let message):
      return "invalid configuration: \(message)"
    case .netlink(let operation, let e):
      return "netlink \(operation) failed: \(Self.text(e)) (errno \(e))"
    }
  }

  static func text(_ e: Int32) -> String { String(cString: strerror(e)) }

  /// Classifies a failed call: EPERM/EACCES become `permissionDenied`, ENODEV
  /// `noSuchInterface`, the rest `system`.
  static func from(errno e: Int32, operation: String, interface: String) -> AFPacketError {
    switch e {
    case EPERM, EACCES: return .permissionDenied(operation: operation, interface: interface, errno: e)
    case ENODEV, ENXIO: return .noSuchInterface(interface)
    default: return .system(operation: operation, interface: interface, errno: e)
    }
  }
}

/// System-call wrappers in the manner of swift-nio's `System.swift`: each call is made
/// once here, EINTR is retried, failures become typed errors.
enum Syscall {
  /// For cp_* helpers, which return a value >= 0 or -errno.
  @inline(__always)
  static func cp(_ operation: String, _ interface: String, _ body: () -> Int32) throws -> Int32 {
    while true {
      let result = body()
      if result >= 0 { return result }
      if result == -EINTR { continue }
      throw AFPacketError.from(errno: -result, operation: operation, interface: interface)
    }
  }

  /// For libc calls, which return -1 and set errno.
  @inline(__always)
  static func libc(_ operation: String, _ interface: String, _ body: () -> Int32) throws -> Int32 {
    while true {
      let result = body()
      if result >= 0 { return result }
      let e = Glibc.errno
      if e == EINTR { continue }
      throw AFPacketError.from(errno: e, operation: operation, interface: interface)
    }
  }

  /// The interface index, or `noSuchInterface`.
  static func interfaceIndex(_ name: String) throws -> Int32 {
    guard name.utf8.count < Int(IFNAMSIZ) else { throw AFPacketError.noSuchInterface(name) }
    let index = if_nametoindex(name)
    guard index != 0 else { throw AFPacketError.noSuchInterface(name) }
    return Int32(bitPattern: index)
  }

  /// close() without retrying EINTR (on Linux the descriptor is gone either way).
  static func close(_ fd: Int32) {
    if fd >= 0 { _ = Glibc.close(fd) }
  }
}
