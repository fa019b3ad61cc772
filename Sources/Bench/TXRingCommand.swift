import ArgumentParser
import Dataplane
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// `Bench tx-ring`: frames/s of the TPACKET_V2 and TPACKET_V3 transmit rings on one veth
/// pair, alternating V2 V3 V2 V3 V2 V3 in one run. This is how `AFPacketPort`'s default
/// (`transmitVersion = .v3`) was chosen.
struct TXRingCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tx-ring", abstract: "TPACKET_V2 vs TPACKET_V3 transmit-ring frames/s on a veth pair (root)."
  )

  @Option(help: "Seconds per measurement.") var seconds = 3.0

  func run() throws {
    guard getuid() == 0 else { throw ValidationError("needs root (network namespaces, AF_PACKET)") }
    let namespace = "vxr-\(getpid())"
    func inNamespace(_ argv: [String]) { Shell.run(["ip", "netns", "exec", namespace] + argv) }
    Shell.run(["ip", "netns", "add", namespace])
    defer { Shell.run(["ip", "netns", "del", namespace]) }
    inNamespace(["ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
    inNamespace(["ip", "link", "set", "p0", "up"])
    inNamespace(["ip", "link", "set", "p1", "up"])
    inNamespace(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
    func mac(_ device: String) -> MACAddress {
      let text = Shell.run(["ip", "netns", "exec", namespace, "cat", "/sys/class/net/\(device)/address"])
        .output
      return MACAddress(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .zero
    }
    let frame = FrameBuilder.udpFrame(
      link: .init(destination: mac("p1"), source: mac("p0")), source: IPAddress("192.168.90.1")!,
      destination: IPAddress("192.168.90.2")!, sourcePort: 12345, destinationPort: 12346,
      payload: [UInt8](repeating: 0xAB, count: 18))
    var results: [(AFPacketPort.TransmitVersion, Double)] = []
    for version in [AFPacketPort.TransmitVersion.v2, .v3, .v2, .v3, .v2, .v3] {
      var options = AFPacketPort.Options()
      options.transmitVersion = version
      let (transmitter, receiver) = try NetworkNamespace.run(namespace) {
        (
          try AFPacketPort(interface: "p0", role: .access, options: options),
          try AFPacketPort(interface: "p1", role: .access)
        )
      }
      let received = RingReceiver(port: receiver)
      received.start()
      let sent = Self.generate(transmitter, frame: frame, seconds: seconds)
      received.stop()
      let rate = Double(received.count) / seconds
      results.append((version, rate))
      progress(
        "TX \(version): sent \(Int(Double(sent) / seconds)) frames/s, received on the peer \(Int(rate)) frames/s"
      )
      transmitter.close()
      receiver.close()
    }
    for version in [AFPacketPort.TransmitVersion.v2, .v3] {
      let rates = results.filter { $0.0 == version }.map(\.1).sorted()
      print(
        "TX \(version): median \(Int(rates[rates.count / 2])) frames/s over \(rates.count) runs of \(seconds) s"
      )
    }
  }

  /// Fills the port's ring with copies of `frame` for `seconds`, kicking every 64 frames.
  static func generate(_ port: AFPacketPort, frame: [UInt8], seconds: Double) -> Int {
    let ring = port.transmitRing
    var sent = 0
    let deadline = Date().addingTimeInterval(seconds)
    var batches = 0
    while true {
      batches += 1
      if batches & 63 == 0 && Date() >= deadline { break }
      var filled = 0
      while filled < 64, let slot = ring.pointee.reserve() {
        frame.withUnsafeBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
        ring.pointee.commit(length: frame.count)
        filled += 1
      }
      sent += filled
      port.flushTransmit()
    }
    return sent
  }
}

/// Counts frames arriving on a port on its own thread until `stop`.
// @unchecked: the port (socket and ring) is used by its receiving thread only, and by
// `stop` after that thread reported its last frame; the count and stop flag are atomics.
final class RingReceiver: @unchecked Sendable {
  let port: AFPacketPort
  private let received = Atomic<Int>(0)
  private let running = Atomic<Bool>(true)
  /// Frames received so far.
  var count: Int { received.load(ordering: .relaxed) }
  private let finished = DispatchSemaphore(value: 0)

  init(port: AFPacketPort) { self.port = port }

  func start() {
    Thread { [self] in
      var vector = FrameVector()
      var descriptor = pollfd(fd: port.fd, events: Int16(POLLIN), revents: 0)
      while running.load(ordering: .relaxed) {
        vector.count = 0
        let got = port.receive(into: &vector)
        received.add(got, ordering: .relaxed)
        port.releaseReceived()
        if got == 0 { _ = poll(&descriptor, 1, 10) }
      }
      finished.signal()
    }.start()
  }

  /// Drains what is still in flight (until a 10 ms poll finds nothing), then stops.
  func stop() {
    var descriptor = pollfd(fd: port.fd, events: Int16(POLLIN), revents: 0)
    while poll(&descriptor, 1, 20) > 0 && descriptor.revents != 0 { usleep(1000) }
    running.store(false, ordering: .relaxed)
    finished.wait()
  }
}
