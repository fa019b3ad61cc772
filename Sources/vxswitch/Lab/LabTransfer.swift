import Foundation
import SystemCommand

#if canImport(Glibc)
  import Glibc
#endif

/// A TCP transfer between two lab VMs whose content is compared byte for byte: the
/// receiver (`vxswitch lab-transfer --listen`) writes what it got to a file, the sender
/// (`--connect`) sends a file of random bytes.
enum LabTransfer {
  struct Result {
    var matches: Bool
    var summary: String
  }

  static func run(
    executable: String, serverNamespace: String, serverAddress: String, clientNamespace: String, bytes: Int,
    port: UInt16, stateDirectory: String
  ) throws -> Result {
    let sent = stateDirectory + "/transfer-sent.bin"
    let received = stateDirectory + "/transfer-received.bin"
    // One read of the kernel's generator: a call per byte costs a getrandom() each.
    guard let random = FileHandle(forReadingAtPath: "/dev/urandom") else {
      throw LabError("cannot open /dev/urandom")
    }
    let payload = random.readData(ofLength: bytes)
    try? random.close()
    guard payload.count == bytes else { throw LabError("short read from /dev/urandom") }
    try payload.write(to: URL(fileURLWithPath: sent))
    try? FileManager.default.removeItem(atPath: received)
    let server = try SystemCommand.start([
      "ip", "netns", "exec", serverNamespace, executable, "lab-transfer", "--listen", "\(port)", "--file",
      received,
    ])
    defer { server.terminate() }
    try Shell.inNamespace(
      clientNamespace,
      [
        executable, "lab-transfer", "--connect", serverAddress, "--port", "\(port)", "--file", sent,
      ])
    server.wait()
    let got = (try? Data(contentsOf: URL(fileURLWithPath: received))) ?? Data()
    let matches = got == payload
    // The files live in /run, in memory: kept only when they differ, to see where.
    if matches { for path in [sent, received] { try? FileManager.default.removeItem(atPath: path) } }
    return Result(
      matches: matches,
      summary: matches ? "" : "sent \(payload.count) bytes, received \(got.count), content differs")
  }

  /// Receiver: accepts one connection, writes everything to `file`.
  static func listen(port: UInt16, file: String) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var yes: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard bound == 0, Glibc.listen(fd, 1) == 0 else { throw LabError("cannot listen on port \(port)") }
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    let client = accept(fd, nil, nil)
    guard client >= 0 else { throw LabError("accept failed") }
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var received = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
      if count <= 0 { break }
      received.append(contentsOf: buffer[0..<count])
    }
    close(client)
    close(fd)
    try received.write(to: URL(fileURLWithPath: file))
  }

  /// Sender: connects (retrying while the receiver starts), sends `file`, closes.
  static func connect(address text: String, port: UInt16, file: String) throws {
    let payload = try Data(contentsOf: URL(fileURLWithPath: file))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    guard inet_pton(AF_INET, text, &address.sin_addr) == 1 else { throw LabError("bad address \(text)") }
    let deadline = Date().addingTimeInterval(10)
    var fd: Int32 = -1
    while fd < 0 {
      let candidate = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
      let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          Glibc.connect(candidate, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
      if connected == 0 {
        fd = candidate
      } else {
        close(candidate)
        if Date() > deadline { throw LabError("cannot connect to \(text):\(port)") }
        usleep(50_000)
      }
    }
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let ok = payload.withUnsafeBytes { raw -> Bool in
      var offset = 0
      while offset < raw.count {
        let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
        if written <= 0 { return false }
        offset += written
      }
      return true
    }
    shutdown(fd, Int32(SHUT_WR))
    var sink = [UInt8](repeating: 0, count: 16)
    _ = read(fd, &sink, sink.count)
    close(fd)
    if !ok { throw LabError("send to \(text):\(port) failed") }
  }
}
