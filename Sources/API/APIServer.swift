import Foundation
import Hummingbird
import Logging
import Management
import NIOCore
import ServiceLifecycle

/// The API's listeners as services for the daemon's `ServiceGroup`: always the Unix control
/// socket (mode 0660: file permissions guard it), and TCP behind a bearer token when
/// `[api] listen` is set.
public enum APIServer {
  /// The control-socket listener. A socket file that still answers belongs to a running
  /// daemon and is refused; a stale one is replaced. The file is removed on shutdown.
  public static func unixSocket(
    path: String, router: APIRouter, logger: Logger, onRunning: @escaping @Sendable () -> Void = {}
  ) throws(APIStartupError) -> some Service {
    let directory = (path as NSString).deletingLastPathComponent
    if !directory.isEmpty {
      try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    if FileManager.default.fileExists(atPath: path) {
      if UnixSocketProbe.answers(path) {
        throw APIStartupError("control socket \(path) is in use by another vxswitch")
      }
      unlink(path)
    }
    let application = Application(
      router: router.makeRouter(),
      configuration: .init(address: .unixDomainSocket(path: path), serverName: "vxswitch"),
      onServerRunning: { _ in
        chmod(path, 0o660)
        onRunning()
      },
      logger: logger)
    return SocketFileService(application: application, path: path)
  }

  /// The TCP listener; every request needs `Authorization: Bearer TOKEN`, and each client
  /// address is held to `limiter`'s rate (`[api] rate_limit`) when there is one.
  public static func tcp(
    host: String, port: Int, token: [UInt8], router: APIRouter, logger: Logger,
    limiter: RequestRateLimiter? = nil, onRunning: @escaping @Sendable (Int) -> Void = { _ in }
  ) -> some Service {
    Application(
      router: router.makeRouter(token: token, limiter: limiter),
      configuration: .init(address: .hostname(host, port: port), serverName: "vxswitch"),
      onServerRunning: { channel in onRunning(channel.localAddress?.port ?? port) },
      logger: logger)
  }
}

/// Runs an application on a Unix socket and removes the socket file when it stops.
struct SocketFileService<Wrapped: Service>: Service {
  let application: Wrapped
  let path: String

  func run() async throws {
    defer { unlink(path) }
    try await application.run()
  }
}

enum UnixSocketProbe {
  /// True when something accepts connections on the socket at `path`.
  static func answers(_ path: String) -> Bool {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    return withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
      }
    }
  }
}
