import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A request on the control socket: one JSON object per line, e.g.
/// `{"command":"show-fdb","vni":100}`. The reply is one JSON object per line: the
/// command's result, or `{"error":"..."}`.
public struct ControlRequest: Codable, Sendable, Equatable {
  public var command: String
  public var vni: UInt32?
  /// A MAC address ("02:00:00:00:00:01"), for commands about one MAC (`clear-dup-mac`).
  public var mac: String?
  public init(command: String, vni: UInt32? = nil, mac: String? = nil) {
    self.command = command
    self.vni = vni
    self.mac = mac
  }
}

public struct ControlSocketError: Error, CustomStringConvertible {
  public var description: String
  init(_ description: String) { self.description = description }
  static func errno(_ what: String, _ path: String) -> ControlSocketError {
    ControlSocketError("\(what) \(path): \(String(cString: strerror(Glibc.errno)))")
  }
}

/// The daemon's local control socket (a Unix stream socket). One thread accepts and
/// serves clients one request at a time: introspection is rare and cheap, and a slow
/// client only delays other clients, never forwarding.
///
/// Thread-safety: `start` and `stop` from one thread; the handler runs on the server's
/// thread and must be thread-safe with respect to the rest of the daemon.
public final class ControlServer: @unchecked Sendable {
  public let path: String
  private let handler: @Sendable (ControlRequest) -> Data
  private var listener: Int32 = -1
  private var thread: Thread?
  private let finished = DispatchSemaphore(value: 0)
  static let maximumRequest = 65_536

  public init(path: String, handler: @escaping @Sendable (ControlRequest) -> Data) {
    self.path = path
    self.handler = handler
  }

  public func start() throws {
    let directory = (path as NSString).deletingLastPathComponent
    if !directory.isEmpty {
      try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    // A socket file that still answers belongs to a running daemon: refuse to steal it.
    if FileManager.default.fileExists(atPath: path) {
      if (try? ControlClient.connect(path)).map({ close($0) }) != nil {
        throw ControlSocketError("control socket \(path) is in use by another vxswitch")
      }
      unlink(path)
    }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw ControlSocketError.errno("socket for", path) }
    var address = try ControlClient.address(path)
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard bound == 0, listen(fd, 16) == 0 else {
      let error = ControlSocketError.errno("cannot listen on", path)
      close(fd)
      throw error
    }
    chmod(path, 0o660)
    listener = fd
    let thread = Thread { [self] in serve(fd) }
    thread.name = "vxswitch-control"
    self.thread = thread
    thread.start()
  }

  public func stop() {
    guard listener >= 0 else { return }
    shutdown(listener, Int32(SHUT_RDWR))
    finished.wait()
    close(listener)
    listener = -1
    unlink(path)
  }

  private func serve(_ fd: Int32) {
    defer { finished.signal() }
    while true {
      let client = accept(fd, nil, nil)
      if client < 0 {
        if errno == EINTR || errno == ECONNABORTED { continue }
        return
      }
      var timeout = timeval(tv_sec: 5, tv_usec: 0)
      setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
      setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
      while let line = ControlClient.readLine(client, limit: Self.maximumRequest) {
        var reply: Data
        switch line {
        case .success(let bytes):
          if let request = try? JSONDecoder().decode(ControlRequest.self, from: bytes) {
            reply = handler(request)
          } else {
            reply = Self.error(
              "malformed request: expected one JSON object like {\"command\":\"show-stats\"}")
          }
        case .failure(let message):
          reply = Self.error(message)
        }
        reply.append(0x0A)
        if !ControlClient.writeAll(client, reply) { break }
        if case .failure = line { break }
      }
      close(client)
    }
  }

  public static func error(_ message: String) -> Data {
    (try? JSONEncoder().encode(["error": message])) ?? Data("{\"error\":\"internal\"}".utf8)
  }
}

/// The client side used by `vxswitch show ...`.
public enum ControlClient {
  public static func request(_ request: ControlRequest, socket path: String) throws -> Data {
    let fd = try connect(path)
    defer { close(fd) }
    var payload = try JSONEncoder().encode(request)
    payload.append(0x0A)
    guard writeAll(fd, payload) else { throw ControlSocketError.errno("cannot write to", path) }
    switch readLine(fd, limit: 64 << 20) {
    case .success(let reply): return reply
    case .failure(let message): throw ControlSocketError("\(path): \(message)")
    case nil: throw ControlSocketError("\(path): the daemon closed the connection without replying")
    }
  }

  static func address(_ path: String) throws -> sockaddr_un {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
      throw ControlSocketError("control socket path too long: \(path)")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    return address
  }

  static func connect(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw ControlSocketError.errno("socket for", path) }
    var address = try address(path)
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard result == 0 else {
      let error = ControlSocketError.errno("cannot connect to vxswitch control socket", path)
      close(fd)
      throw error
    }
    return fd
  }

  enum LineResult {
    case success(Data)
    case failure(String)
  }

  /// Reads bytes up to a newline; nil at end of stream before any byte.
  static func readLine(_ fd: Int32, limit: Int) -> LineResult? {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if count < 0 && errno == EINTR { continue }
      if count <= 0 { return data.isEmpty ? nil : .failure("connection closed mid-request") }
      if let newline = buffer[0..<count].firstIndex(of: 0x0A) {
        data.append(contentsOf: buffer[0..<newline])
        return .success(data)
      }
      data.append(contentsOf: buffer[0..<count])
      if data.count > limit { return .failure("request longer than \(limit) bytes") }
    }
  }

  static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
    data.withUnsafeBytes { raw in
      var offset = 0
      while offset < raw.count {
        let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
        if written < 0 && errno == EINTR { continue }
        if written <= 0 { return false }
        offset += written
      }
      return true
    }
  }
}
