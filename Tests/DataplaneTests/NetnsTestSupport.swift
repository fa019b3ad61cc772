import CPacket
import Foundation
import SystemCommand
import XCTest

@testable import Dataplane

/// Network namespaces for one test, named `vxt-<pid>-<n>-<suffix>` so that parallel runs
/// never collide and a later run can remove what a crashed one left behind.
final class NetnsLab {
  static let prefix = "vxt-"
  nonisolated(unsafe) static var counter = 0
  nonisolated(unsafe) static var cleaned = false

  let tag: String
  private(set) var namespaces: [String] = []

  /// Skips the test (with the reason) unless we are root and `ip netns` works.
  static func make(_ test: XCTestCase) throws -> NetnsLab {
    guard geteuid() == 0 else { throw XCTSkip("needs root (network namespaces, AF_PACKET)") }
    guard
      FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
        || FileManager.default.isExecutableFile(atPath: "/sbin/ip")
    else { throw XCTSkip("needs iproute2 (`ip`)") }
    if !cleaned {
      cleanStale()
      cleaned = true
    }
    counter += 1
    let lab = NetnsLab(tag: "\(prefix)\(getpid())-\(counter)")
    do {
      _ = try lab.namespace("probe")
    } catch {
      throw XCTSkip("cannot create network namespaces: \(error)")
    }
    return lab
  }

  private init(tag: String) { self.tag = tag }

  /// Removes namespaces of earlier runs whose process is gone.
  static func cleanStale() {
    guard let list = try? run(["ip", "netns", "list"]) else { return }
    for line in list.split(separator: "\n") {
      let name = String(line.split(separator: " ").first ?? "")
      guard name.hasPrefix(prefix) else { continue }
      let pidText = name.dropFirst(prefix.count).split(separator: "-").first.map(String.init) ?? ""
      if let pid = Int32(pidText), pid != getpid(), kill(pid, 0) == 0 { continue }
      if let pid = Int32(pidText), pid == getpid() { continue }
      _ = try? run(["ip", "netns", "del", name])
    }
  }

  /// Creates `tag-suffix` with loopback up.
  @discardableResult
  func namespace(_ suffix: String) throws -> String {
    let name = "\(tag)-\(suffix)"
    try Self.run(["ip", "netns", "add", name])
    namespaces.append(name)
    try Self.run(["ip", "-n", name, "link", "set", "lo", "up"])
    // No IPv6 autoconfiguration chatter (RS, MLD) on the test links: tests count frames.
    try Self.run([
      "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
      "net.ipv6.conf.default.disable_ipv6=1",
    ])
    return name
  }

  /// Two namespaces joined by a veth pair, so that traffic between the two ends'
  /// addresses crosses it: p0 (10.9.0.1/24) in the first, p1 (10.9.0.2/24) in the
  /// second; with `ipv6`, fd09::1/64 and fd09::2/64 as well (IPv6 turned back on for
  /// these two links, no duplicate address detection).
  func vethPair(ipv6: Bool = false) throws -> (ns: String, peer: String) {
    let ends = (ns: try namespace("x"), peer: try namespace("y"))
    try sh(ends.ns, "ip link add p0 type veth peer name p1 netns \(ends.peer)")
    for (namespace, link, host) in [(ends.ns, "p0", 1), (ends.peer, "p1", 2)] {
      var command = "ip link set \(link) up && ip addr add 10.9.0.\(host)/24 dev \(link)"
      if ipv6 {
        command =
          "sysctl -qw net.ipv6.conf.\(link).disable_ipv6=0 && \(command)"
          + " && ip addr add fd09::\(host)/64 dev \(link) nodad"
      }
      try sh(namespace, command)
    }
    return ends
  }

  /// Runs `command` inside namespace `ns`.
  @discardableResult
  func sh(_ ns: String, _ command: String) throws -> String {
    try Self.run(["ip", "netns", "exec", ns, "sh", "-c", command])
  }

  func destroy() {
    for name in namespaces.reversed() { _ = try? Self.run(["ip", "netns", "del", name]) }
    namespaces.removeAll()
  }

  struct CommandError: Error, CustomStringConvertible {
    var command: [String]
    var status: Int32
    var output: String
    var description: String { "\(command.joined(separator: " ")) exited \(status): \(output)" }
  }

  @discardableResult
  static func run(_ arguments: [String], allowFailure: Bool = false) throws -> String {
    let outcome = try SystemCommand.run(arguments)
    let output = outcome.errorText + outcome.outputText
    if !outcome.succeeded && !allowFailure {
      throw CommandError(command: arguments, status: outcome.status, output: output)
    }
    return outcome.succeeded ? outcome.outputText + outcome.errorText : output
  }

  func mac(_ ns: String, _ interface: String) throws -> MACAddress {
    let text = try sh(ns, "cat /sys/class/net/\(interface)/address").trimmingCharacters(
      in: .whitespacesAndNewlines)
    return MACAddress(text)!
  }
}

/// Polls `condition` until it holds or `timeout` seconds pass.
func eventually(timeout: Double = 5, interval: Double = 0.01, _ condition: () throws -> Bool) rethrows -> Bool
{
  let deadline = Date().addingTimeInterval(timeout)
  while Date() < deadline {
    if try condition() { return true }
    usleep(UInt32(interval * 1_000_000))
  }
  return try condition()
}

/// A plain AF_PACKET socket for injecting frames (sendto) on one interface.
final class RawSender: Sendable {
  let fd: Int32
  let ifindex: Int32

  init(interface: String) throws {
    ifindex = Int32(if_nametoindex(interface))
    guard ifindex != 0 else { throw AFPacketError.noSuchInterface(interface) }
    fd = cp_packet_socket()
    guard fd >= 0 else { throw AFPacketError.system(operation: "socket", interface: interface, errno: -fd) }
    let bound = cp_packet_bind(fd, ifindex, 0)
    guard bound == 0 else {
      throw AFPacketError.system(operation: "bind", interface: interface, errno: -bound)
    }
  }

  deinit { close(fd) }

  func send(_ frame: [UInt8]) {
    precondition(trySend(frame), "send failed: errno \(errno)")
  }

  /// Sends `frame` once; false when the kernel refused it (a full queue under a flood).
  func trySend(_ frame: [UInt8]) -> Bool {
    frame.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } == frame.count
  }
}

/// Collects what a port receives, as (bytes, vlanTag, flags).
func drain(_ port: some PacketPort, into frames: inout [(bytes: [UInt8], tag: UInt32, flags: UInt8)]) {
  var vector = FrameVector()
  while true {
    vector.count = 0
    let got = port.receive(into: &vector)
    // The flags as received; then, as the pipeline does, segments whose payload is
    // still in their super-frame (`FrameFlags.payloadDeferred`) completed.
    let flags = (0..<vector.count).map { vector.flags[$0] }
    if vector.hasDeferredPayloads { DeferredPayload.materializeAll(&vector) }
    for index in 0..<vector.count {
      let bytes = Array(
        UnsafeRawBufferPointer(start: vector.frames[index], count: Int(vector.lengths[index])))
      frames.append((bytes, vector.vlanTags[index], flags[index]))
    }
    port.releaseReceived()
    if got == 0 { break }
  }
}

/// Hand-made frames (FrameBuilder may not exist on this branch).
enum Frames {
  static func ethernet(
    destination: MACAddress, source: MACAddress, etherType: UInt16, vlan: UInt16? = nil, payload: [UInt8]
  ) -> [UInt8] {
    var frame = destination.octets + source.octets
    if let vlan { frame += [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] }
    frame += [UInt8(etherType >> 8), UInt8(etherType & 0xFF)]
    return frame + payload
  }

  static func ipv4Checksum(_ header: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    for index in stride(from: 0, to: header.count, by: 2) {
      sum += UInt32(header[index]) << 8 | UInt32(header[index + 1])
    }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
  }

  /// IPv4 + UDP (checksum 0) carrying `payload`.
  static func ipv4UDP(
    source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8],
    ttl: UInt8 = 64
  ) -> [UInt8] {
    let udpLength = 8 + payload.count
    let total = 20 + udpLength
    var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 1, 0x40, 0, ttl, 17, 0, 0]
    ip += source.bytes + destination.bytes
    let checksum = ipv4Checksum(ip)
    ip[10] = UInt8(checksum >> 8)
    ip[11] = UInt8(checksum & 0xFF)
    let udp: [UInt8] = [
      UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF), UInt8(destinationPort >> 8),
      UInt8(destinationPort & 0xFF),
      UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0,
    ]
    return ip + udp + payload
  }

  static func ipv6UDP(
    source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8]
  ) -> [UInt8] {
    let udpLength = 8 + payload.count
    var ip: [UInt8] = [0x60, 0, 0, 0, UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 17, 64]
    ip += source.bytes + destination.bytes
    var udp: [UInt8] =
      [
        UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF), UInt8(destinationPort >> 8),
        UInt8(destinationPort & 0xFF),
        UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0,
      ] + payload
    // Pseudo-header checksum (mandatory over IPv6).
    var sum: UInt32 = 17 + UInt32(udpLength)
    let pseudo = source.bytes + destination.bytes
    for index in stride(from: 0, to: pseudo.count, by: 2) {
      sum += UInt32(pseudo[index]) << 8 | UInt32(pseudo[index + 1])
    }
    var padded = udp
    if padded.count % 2 == 1 { padded.append(0) }
    for index in stride(from: 0, to: padded.count, by: 2) {
      sum += UInt32(padded[index]) << 8 | UInt32(padded[index + 1])
    }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    var checksum = ~UInt16(sum)
    if checksum == 0 { checksum = 0xFFFF }
    udp[6] = UInt8(checksum >> 8)
    udp[7] = UInt8(checksum & 0xFF)
    return ip + udp
  }

  /// VXLAN header (I flag) + inner frame.
  static func vxlan(vni: UInt32, inner: [UInt8]) -> [UInt8] {
    [0x08, 0, 0, 0, UInt8(vni >> 16 & 0xFF), UInt8(vni >> 8 & 0xFF), UInt8(vni & 0xFF), 0] + inner
  }
}
