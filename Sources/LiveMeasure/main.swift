// LiveMeasure: frames/s of the live I/O layer on veth pairs in throw-away namespaces.
//   swift build -c release --product LiveMeasure && sudo .build/release/LiveMeasure [seconds]
// 1. TX ring V2 vs V3: a generator fills one port's ring with 64-byte frames; a V3 RX
//    port on the veth peer counts what arrives.
// 2. Encapsulation at 64 bytes: generator -> access veth -> (LiveSwitch | Linux bridge +
//    kernel vxlan) -> underlay veth -> counter, same veths, same run.
import Dataplane
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

let seconds = Double(CommandLine.arguments.dropFirst().first ?? "3") ?? 3
let tag = "vxm-\(getpid())"

@discardableResult
func sh(_ command: String) -> String {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/bin/sh")
  process.arguments = ["-c", command]
  let pipe = Pipe()
  process.standardOutput = pipe
  process.standardError = pipe
  try! process.run()
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return String(decoding: data, as: UTF8.self)
}

func mac(_ ns: String, _ dev: String) -> MACAddress {
  MACAddress(
    sh("ip netns exec \(ns) cat /sys/class/net/\(dev)/address").trimmingCharacters(
      in: .whitespacesAndNewlines))!
}

/// Counts frames arriving on `port` (optionally only UDP/4789) until `stop`.
final class Counter: @unchecked Sendable {
  let port: AFPacketPort
  let vxlanOnly: Bool
  var count = 0
  var running = true
  var thread: Thread?
  init(port: AFPacketPort, vxlanOnly: Bool) {
    self.port = port
    self.vxlanOnly = vxlanOnly
  }
  func start() {
    let thread = Thread { [self] in
      var vector = FrameVector()
      var descriptor = pollfd(fd: port.fd, events: Int16(POLLIN), revents: 0)
      while running {
        vector.count = 0
        let got = port.receive(into: &vector)
        if got == 0 {
          port.releaseReceived()
          _ = poll(&descriptor, 1, 10)
          continue
        }
        if vxlanOnly {
          for i in 0..<got {
            let f = UnsafeRawPointer(vector.frames[i])
            if vector.lengths[i] > 38 && f.load(fromByteOffset: 23, as: UInt8.self) == 17
              && f.load(fromByteOffset: 36, as: UInt8.self) == 0x12
              && f.load(fromByteOffset: 37, as: UInt8.self) == 0xB5
            {
              count += 1
            }
          }
        } else {
          count += got
        }
        port.releaseReceived()
      }
    }
    self.thread = thread
    thread.start()
  }
}

/// Fills `port`'s ring with copies of `frame` for `seconds`, kicking every 64 frames.
func generate(_ port: AFPacketPort, frame: [UInt8], seconds: Double) -> Int {
  let ring = port.transmitRing
  var sent = 0
  let deadline = Date().addingTimeInterval(seconds)
  var batch = 0
  while true {
    batch += 1
    if batch & 63 == 0 && Date() >= deadline { break }
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

func cleanup() {
  for ns in sh("ip netns list").split(separator: "\n").map({ String($0.split(separator: " ")[0]) })
  where ns.hasPrefix(tag) { sh("ip netns del \(ns)") }
}

func frame64(destination: MACAddress, source: MACAddress) -> [UInt8] {
  // Ethernet + IPv4/UDP, 60 bytes (64 on the wire with the FCS).
  var f = destination.octets + source.octets + [0x08, 0x00]
  f += [0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 168, 90, 1, 192, 168, 90, 2]
  var sum: UInt32 = 0
  for i in stride(from: 14, to: 34, by: 2) { sum += UInt32(f[i]) << 8 | UInt32(f[i + 1]) }
  while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
  f[24] = UInt8(~sum >> 8 & 0xFF)
  f[25] = UInt8(~sum & 0xFF)
  f += [0x30, 0x39, 0x30, 0x3A, 0, 26, 0, 0] + [UInt8](repeating: 0xAB, count: 18)
  return f
}

// MARK: 1. TX V2 vs V3

cleanup()
let ns1 = "\(tag)-tx"
sh(
  "ip netns add \(ns1) && ip netns exec \(ns1) sh -c 'ip link add p0 type veth peer name p1 && ip link set p0 up && ip link set p1 up && sysctl -qw net.ipv6.conf.all.disable_ipv6=1'"
)
let skipTX = ProcessInfo.processInfo.environment["SKIP_TX"] == "1"
for version in skipTX ? [] : [AFPacketPort.TransmitVersion.v2, .v3, .v2, .v3, .v2, .v3] {
  var options = AFPacketPort.Options()
  options.transmitVersion = version
  let (tx, rx) = try NetworkNamespace.run(ns1) {
    (
      try AFPacketPort(interface: "p0", role: .access, options: options),
      try AFPacketPort(interface: "p1", role: .access)
    )
  }
  let counter = Counter(port: rx, vxlanOnly: false)
  counter.start()
  let frame = frame64(destination: mac(ns1, "p1"), source: mac(ns1, "p0"))
  let sent = generate(tx, frame: frame, seconds: seconds)
  usleep(100_000)
  counter.running = false
  usleep(50_000)
  let stats = tx.statistics
  print(
    "TX \(version): generated \(Int(Double(sent) / seconds)) frames/s, received on peer \(Int(Double(counter.count) / seconds)) frames/s "
      + "(kicks \(stats.transmitKicks), busy \(stats.transmitBusy), rx kernel drops \(rx.statistics.kernelDrops))"
  )
  tx.close()
  rx.close()
}
sh("ip netns del \(ns1)")

// MARK: 2. Encapsulation: LiveSwitch vs Linux bridge + vxlan

let gen = "\(tag)-gen"
let sw = "\(tag)-sw"
let far = "\(tag)-far"
for ns in [gen, sw, far] {
  sh("ip netns add \(ns) && ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.disable_ipv6=1")
}
sh("ip -n \(sw) link add acc0 type veth peer name vm0 netns \(gen)")
sh("ip -n \(sw) link add und0 type veth peer name und1 netns \(far)")
sh(
  "ip -n \(sw) addr add 10.90.0.1/24 dev und0; ip -n \(sw) link set acc0 up; ip -n \(sw) link set und0 up; ip -n \(gen) link set vm0 up; ip -n \(far) link set und1 up"
)
sh("ip netns exec \(gen) ethtool -K vm0 tso off gso off >/dev/null 2>&1")
let farMAC = mac(far, "und1")
let target = MACAddress("02:aa:00:00:00:02")!
let vmMAC = mac(gen, "vm0")
let frame = frame64(destination: target, source: vmMAC)

func runEncap(label: String) {
  let (tx, rx) = try! NetworkNamespace.run(gen) {
    (try AFPacketPort(interface: "vm0", role: .access), 0)
  }
  _ = rx
  let counterPort = try! NetworkNamespace.run(far) { try AFPacketPort(interface: "und1", role: .access) }
  let counter = Counter(port: counterPort, vxlanOnly: true)
  counter.start()
  let sent = generate(tx, frame: frame, seconds: seconds)
  usleep(100_000)
  counter.running = false
  usleep(50_000)
  print(
    "\(label): offered \(Int(Double(sent) / seconds)) frames/s, encapsulated out \(Int(Double(counter.count) / seconds)) frames/s (64-byte inner frames)"
  )
  tx.close()
  counterPort.close()
}

var config = SiteConfig(site: .init(name: "measure", vtep: IPAddress("10.90.0.1")!, underlay: "und0"))
var domain = SiteConfig.BridgeDomain(vni: 100)
domain.ports = [SiteConfig.PortMember(interface: "acc0")]
domain.learning = true
config.bridgeDomains = [domain]
config.neighbors = [.init(ip: IPAddress("10.90.0.2")!, mac: farMAC)]
config.staticMACs = [.init(vni: 100, mac: target, target: .remote(IPAddress("10.90.0.2")!))]
for round in 0..<2 {
  let core = SwitchCore(config: config)
  let live = LiveSwitch(core: core)
  try NetworkNamespace.run(sw) { try live.start() }
  usleep(200_000)
  runEncap(label: "vxswitch LiveSwitch (round \(round + 1))")
  let stats = live.portStatistics[0]
  print(
    "  acc0 rx \(stats[1].receivedFrames) kernel drops \(stats[1].kernelDrops); und0 kicks \(stats[0].transmitKicks) busy \(stats[0].transmitBusy)"
  )
  live.stop()

  sh(
    """
    ip netns exec \(sw) sh -c 'sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 2>/dev/null; ip link add vx100 type vxlan id 100 local 10.90.0.1 remote 10.90.0.2 dstport 4789 dev und0 && \
    ip link add br0 type bridge && ip link set vx100 master br0 && ip link set acc0 master br0 && ip link set vx100 up && ip link set br0 up && \
    ip neigh replace 10.90.0.2 dev und0 lladdr \(farMAC) nud permanent && \
    bridge fdb add \(target) dev vx100 dst 10.90.0.2 master static 2>/dev/null; bridge fdb append \(target) dev vx100 dst 10.90.0.2'
    """)
  runEncap(label: "Linux bridge + kernel vxlan (round \(round + 1))")
  if ProcessInfo.processInfo.environment["DEBUG_KERNEL"] == "1" {
    print(
      sh(
        "ip netns exec \(sw) sh -c 'ip -s link show vx100; ip -s link show und0; ip -s link show acc0; bridge fdb show br br0 | head; ip neigh'"
      ))
  }
  sh("ip netns exec \(sw) sh -c 'ip link del vx100; ip link del br0; ip neigh del 10.90.0.2 dev und0'")
}
cleanup()
