import ArgumentParser
import Dataplane

#if canImport(Glibc)
  import Glibc
#endif

/// `Bench send` (used by `Bench live`): replays a pcap into an interface through an
/// AF_PACKET socket with `sendmmsg`, flat out or at a fixed rate, looping the file.
struct SendCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "send",
    abstract: "Replay a pcap into an interface (AF_PACKET sendmmsg loop); used by `Bench live`.",
    shouldDisplay: false)

  @Option(help: "Interface to send on.")
  var interface: String
  @Option(help: "pcap file.")
  var pcap: String
  @Option(help: "Seconds to send (the file loops).")
  var seconds: Double = 0
  @Option(help: "Frames to send at most (0: no limit).")
  var limit = 0
  @Option(help: "Frames per second (0: flat out).")
  var pps = 0

  func run() throws {
    let trace = try PcapTrace(path: pcap)
    let frames = FrameSet(trace: trace)
    let sent = try AFPacketSender(interface: interface).send(
      frames, seconds: seconds, limit: limit, pps: pps)
    print("sent \(sent.frames) frames in \(sent.seconds) s, \(sent.errors) send errors")
  }
}

final class AFPacketSender {
  let socketFD: Int32

  static let solPacket: Int32 = 263
  static let packetQdiscBypass: Int32 = 20

  init(interface: String) throws {
    let index = if_nametoindex(interface)
    guard index != 0 else { throw BenchError.failed("no interface \(interface)") }
    // Protocol 0: this socket only sends, it receives nothing.
    let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0)
    guard fd >= 0 else { throw BenchError.failed("socket(AF_PACKET): \(String(cString: strerror(errno)))") }
    // struct sockaddr_ll (linux/if_packet.h, not in Swift's Glibc module): family at 0,
    // protocol at 2, ifindex at 4, hatype 8, pkttype 10, halen 11, addr[8] 12; 20 bytes.
    let address = UnsafeMutableRawPointer.allocate(byteCount: 20, alignment: 8)
    defer { address.deallocate() }
    address.initializeMemory(as: UInt8.self, repeating: 0, count: 20)
    address.storeBytes(of: UInt16(AF_PACKET), toByteOffset: 0, as: UInt16.self)
    address.storeBytes(of: Int32(index), toByteOffset: 4, as: Int32.self)
    let bound = bind(fd, address.assumingMemoryBound(to: sockaddr.self), 20)
    guard bound == 0 else {
      close(fd)
      throw BenchError.failed("bind(\(interface)): \(String(cString: strerror(errno)))")
    }
    var one: Int32 = 1
    _ = setsockopt(fd, Self.solPacket, Self.packetQdiscBypass, &one, socklen_t(MemoryLayout<Int32>.size))
    var buffer: Int32 = 4 << 20
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, socklen_t(MemoryLayout<Int32>.size))
    socketFD = fd
  }

  deinit { close(socketFD) }

  struct Sent {
    var frames: Int
    var seconds: Double
    var errors: Int
  }

  /// Sends batches of up to 64 frames per `sendmmsg` until `seconds` pass or `limit`
  /// frames went out; with `pps`, batches are paced to the rate.
  func send(_ set: FrameSet, seconds: Double, limit: Int, pps: Int) throws -> Sent {
    let count = set.count
    guard count > 0 else { return Sent(frames: 0, seconds: 0, errors: 0) }
    // struct mmsghdr = struct msghdr + unsigned msg_len, 64 bytes on 64-bit Linux.
    precondition(MemoryLayout<msghdr>.size == 56, "unexpected struct msghdr layout")
    let stride = 64
    let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: count)
    let messages = UnsafeMutableRawPointer.allocate(byteCount: count * stride, alignment: 8)
    defer {
      vectors.deallocate()
      messages.deallocate()
    }
    messages.initializeMemory(as: UInt8.self, repeating: 0, count: count * stride)
    for index in 0..<count {
      vectors[index] = iovec(iov_base: set.frames[index], iov_len: Int(set.lengths[index]))
      var header = msghdr()
      header.msg_iov = vectors + index
      header.msg_iovlen = 1
      (messages + index * stride).storeBytes(of: header, as: msghdr.self)
    }
    let batch = pps > 0 ? max(1, min(64, pps / 1000)) : 64
    let start = monotonicNanos()
    let deadline = seconds > 0 ? start + UInt64(seconds * 1e9) : UInt64.max
    var sent = 0
    var errors = 0
    var cursor = 0
    var iterations = 0
    while limit == 0 || sent < limit {
      var wanted = min(batch, count - cursor)
      if limit > 0 { wanted = min(wanted, limit - sent) }
      if pps > 0 {
        // Wait until this frame's departure time.
        let due = start + UInt64(Double(sent) * 1e9 / Double(pps))
        while monotonicNanos() < due {}
      }
      let result = c_sendmmsg(socketFD, messages + cursor * stride, UInt32(wanted), 0)
      if result > 0 {
        sent += Int(result)
        cursor += Int(result)
        if cursor == count { cursor = 0 }
      } else {
        errors += 1
        if errno == ENOBUFS || errno == EAGAIN {
          sched_yield()
        } else if errors > 1000 && sent == 0 {
          throw BenchError.failed("sendmmsg: \(String(cString: strerror(errno)))")
        }
      }
      iterations &+= 1
      if iterations & 15 == 0 && monotonicNanos() >= deadline { break }
    }
    return Sent(frames: sent, seconds: Double(monotonicNanos() - start) / 1e9, errors: errors)
  }
}

/// `int sendmmsg(int, struct mmsghdr *, unsigned int, int)`: glibc has it, Swift's Glibc
/// module does not export it (it needs _GNU_SOURCE).
@_silgen_name("sendmmsg")
func c_sendmmsg(_ fd: Int32, _ messages: UnsafeMutableRawPointer, _ count: UInt32, _ flags: Int32) -> Int32
