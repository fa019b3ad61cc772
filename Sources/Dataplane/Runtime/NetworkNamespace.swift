import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Runs code with the calling thread inside a named network namespace
/// (`/run/netns/NAME`, as made by `ip netns add`). Sockets keep the namespace they were
/// created in, so `LiveSwitch.start()` called inside `run` serves that namespace's
/// interfaces from any thread afterwards. Only the calling thread moves (setns affects
/// one thread for network namespaces); it is moved back before returning.
public enum NetworkNamespace {
  public static func run<T>(_ name: String, _ body: () throws -> T) throws -> T {
    let path = name.hasPrefix("/") ? name : "/run/netns/\(name)"
    let target = open(path, O_RDONLY | O_CLOEXEC)
    guard target >= 0 else {
      throw AFPacketError.system(operation: "open \(path)", interface: name, errno: errno)
    }
    defer { close(target) }
    let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
    guard original >= 0 else {
      throw AFPacketError.system(operation: "open /proc/thread-self/ns/net", interface: name, errno: errno)
    }
    defer { close(original) }
    let entered = cp_setns_net(target)
    guard entered == 0 else { throw AFPacketError.from(errno: -entered, operation: "setns", interface: name) }
    defer {
      let back = cp_setns_net(original)
      if back != 0 {
        fatalError("cannot return to the original network namespace: errno \(-back)")
      }
    }
    return try body()
  }

  /// Identifies the calling thread's network namespace (its inode number).
  public static var currentIdentifier: UInt64 {
    var info = stat()
    guard stat("/proc/thread-self/ns/net", &info) == 0 else { return 0 }
    return UInt64(info.st_ino)
  }
}
