import ArgumentParser
import Dataplane
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The issue's reference system for `Bench live`: "a minimal forwarder that only moves
/// frames from one RX ring to a TX ring and prepends a fixed 50-byte header", on either
/// port type vxswitch has (`--io af_packet`: TPACKET_V3 rings; `--io af_xdp`: AF_XDP
/// sockets behind vxswitch's own steering program), as the ceiling of a switch on that
/// port type. No learning, no lookups, no checks: encap copies a precomputed outer
/// Ethernet+IPv4+UDP+VXLAN header (lengths and IPv4 checksum patched per frame) and the
/// frame into the TX ring; decap copies the frame minus its first 50 bytes. On AF_XDP both
/// ports share one UMEM and frames leave from where they were received (the header
/// written in the chunk's headroom, or the first 50 bytes skipped), as vxswitch's AF_XDP
/// ports send them; `--copy` copies into transmit slots instead.
struct BaselineForwardCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "baseline-forward",
    abstract: "Minimal RX ring -> TX ring forwarder (prepends or strips 50 bytes); used by `Bench live`.",
    shouldDisplay: false)

  @Option(name: .customLong("in"), help: "Interface to receive on.")
  var input: String
  @Option(name: .customLong("out"), help: "Interface to transmit on.")
  var output: String
  @Option(help: "Outer header to prepend (100 hex digits: Ethernet+IPv4+UDP+VXLAN); default: Bench live's.")
  var header: String?
  @Flag(help: "Strip 50 bytes instead of prepending the header.")
  var decap = false
  @Option(help: "Receive filter on --in (libpcap expression; default: every frame).")
  var filter: String?
  @Option(help: "Port type: af_packet or af_xdp.")
  var io = PortIO.afPacket.rawValue
  @Option(help: "With --io af_xdp: take only VXLAN to this VTEP address on --in (default: every frame).")
  var vtep: String?
  @Flag(help: "With --io af_xdp: copy every frame into a transmit slot instead of sending it in place.")
  var copy = false

  func run() throws {
    let template: BaselineHeader?
    if decap {
      template = nil
    } else {
      let bytes = try header.map { text -> [UInt8] in
        guard let bytes = BaselineHeader.bytes(hex: text) else {
          throw ValidationError("--header: 100 hex digits")
        }
        return bytes
      }
      guard let built = BaselineHeader(template: bytes ?? BaselineHeader.benchTemplate(TrafficPlan())) else {
        throw ValidationError("--header is not an Ethernet+IPv4+UDP+VXLAN header")
      }
      template = built
    }
    guard let portIO = PortIO(rawValue: io) else { throw ValidationError("--io: af_packet or af_xdp") }
    if portIO == .afXDP {
      let match: XDPSteeringProgram.Match
      if let vtep {
        guard let address = IPAddress(vtep) else { throw ValidationError("--vtep: an IP address") }
        match = .vxlan(vtep: address, udpPort: 4789)
      } else {
        match = .everything
      }
      let inAttachment = try XDPAttachment(
        interface: input, program: XDPSteeringProgram(match: match), queues: 1)
      let outAttachment = try XDPAttachment(
        interface: output, program: XDPSteeringProgram(match: .everything), queues: 1)
      var options = AFXDPPort.Options()
      options.finishesChecksums = false
      let inPort: AFXDPPort
      let outPort: AFXDPPort
      if copy {
        inPort = try AFXDPPort(
          interface: input, isUnderlay: false, attachment: inAttachment, options: options)
        outPort = try AFXDPPort(
          interface: output, isUnderlay: false, attachment: outAttachment, options: options)
      } else {
        let ports = try AFXDPPort.openSharingMemory(
          [(input, false, inAttachment), (output, false, outAttachment)], options: options)
        inPort = ports[0]
        outPort = ports[1]
      }
      // Unreachable (the loop runs until the process is killed; the links go with it).
      withExtendedLifetime((inAttachment, outAttachment)) {
        BaselineForwarder(input: inPort, output: outPort, header: template).run()
      }
      return
    }
    var inOptions = AFPacketPort.Options()
    inOptions.filter = filter
    inOptions.promiscuous = true
    let inPort = try AFPacketPort(interface: input, role: .access, options: inOptions)
    // The output port's receive ring is never read: a filter that matches nothing.
    var outOptions = AFPacketPort.Options()
    outOptions.filter = "less 1"
    outOptions.rxBlockCount = 1
    outOptions.promiscuous = false
    let outPort = try AFPacketPort(interface: output, role: .access, options: outOptions)
    let forwarder = BaselineForwarder(input: inPort, output: outPort, header: template)
    forwarder.run()
  }
}

/// The precomputed 50-byte VXLAN outer header and its per-frame patch.
struct BaselineHeader {
  static let length = 50
  let bytes: [UInt8]
  /// One's-complement sum of the IPv4 header with total length and checksum zero.
  let partialSum: UInt32

  /// nil unless `template` is 50 bytes of Ethernet (no VLAN), IPv4 without options, UDP.
  init?(template: [UInt8]) {
    guard template.count == Self.length, template[12] == 0x08, template[13] == 0x00, template[14] == 0x45,
      template[23] == 17
    else { return nil }
    var header = template
    header[16] = 0
    header[17] = 0
    header[24] = 0
    header[25] = 0
    header[38] = 0
    header[39] = 0
    header[40] = 0  // UDP checksum 0 (allowed for VXLAN over IPv4)
    header[41] = 0
    var sum: UInt32 = 0
    for offset in stride(from: 14, to: 34, by: 2) {
      sum += UInt32(header[offset]) << 8 | UInt32(header[offset + 1])
    }
    bytes = header
    partialSum = sum
  }

  /// Bench live's encap output: vxswitch's VTEP (10.202.0.1, underlay MAC of eth1) to the
  /// remote VTEP (10.202.0.2, r0's MAC), VNI of the plan, a fixed UDP source port (not
  /// 49152, which tcpdump decodes as BCM-LI instead of VXLAN).
  static func benchTemplate(_ plan: TrafficPlan, sourcePort: UInt16 = 52000) -> [UInt8] {
    FrameBuilder.vxlanFrame(
      inner: [], vni: plan.vni,
      underlay: .init(
        link: .init(destination: TrafficPlan.remoteUnderlayMAC, source: TrafficPlan.underlayMAC),
        source: plan.localVTEP, destination: plan.remoteVTEP, sourcePort: sourcePort))
  }

  static func bytes(hex: String) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count == 2 * length else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(length)
    for index in stride(from: 0, to: digits.count, by: 2) {
      guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else {
        return nil
      }
      out.append(byte)
    }
    return out
  }

  static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

  /// Writes the header for an inner frame of `innerLength` bytes at `destination`.
  func write(to destination: UnsafeMutableRawPointer, innerLength: Int) {
    bytes.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: Self.length) }
    patch(destination, innerLength: innerLength)
  }

  /// Sets IPv4 total length, IPv4 checksum and UDP length of a header copied to `destination`.
  @inline(__always)
  func patch(_ destination: UnsafeMutableRawPointer, innerLength: Int) {
    let total = UInt32(truncatingIfNeeded: 36 &+ innerLength) & 0xFFFF
    var sum = partialSum &+ total
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    sum = (sum & 0xFFFF) &+ (sum >> 16)
    let checksum = ~UInt16(truncatingIfNeeded: sum)
    let udp = UInt16(truncatingIfNeeded: 16 &+ innerLength)
    destination.storeBytes(of: UInt16(truncatingIfNeeded: total).bigEndian, toByteOffset: 16, as: UInt16.self)
    destination.storeBytes(of: checksum.bigEndian, toByteOffset: 24, as: UInt16.self)
    destination.storeBytes(of: udp.bigEndian, toByteOffset: 38, as: UInt16.self)
  }
}

final class BaselineForwarder {
  let input: any LivePort
  let output: any LivePort
  let header: BaselineHeader?

  init(input: any LivePort, output: any LivePort, header: BaselineHeader?) {
    self.input = input
    self.output = output
    self.header = header
  }

  /// Forwards until killed.
  func run() {
    var descriptor = pollfd(fd: input.fd, events: Int16(POLLIN), revents: 0)
    var vector = FrameVector()
    let ring = output.transmitRing
    let maxLength = ring.pointee.maxFrameLength
    let strip = header == nil ? BaselineHeader.length : 0
    // The template in plain memory: no array access in the per-frame loop.
    let template = UnsafeMutableRawPointer.allocate(byteCount: BaselineHeader.length, alignment: 8)
    defer { template.deallocate() }
    if let header {
      header.bytes.withUnsafeBytes { template.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }
    while true {
      vector.count = 0
      let received = input.receive(into: &vector)
      if received == 0 {
        input.releaseReceived()
        var backlog = false
        if ring.pointee.pending > 0 {
          output.flushTransmit()
          backlog = ring.pointee.pending > 0
        }
        descriptor.revents = 0
        let ready = poll(&descriptor, 1, backlog ? 1 : 1000)
        if ready > 0 && descriptor.revents & Int16(POLLERR) != 0 { input.clearSocketError() }
        continue
      }
      for index in 0..<received {
        let frame = vector.frames[index]
        let length = Int(vector.lengths[index])
        var slot = ring.pointee.reserve()
        if slot == nil {
          output.flushTransmit()
          slot = ring.pointee.reserve()
        }
        guard let slot else { continue }  // ring full: drop
        if let inPlace = ring.pointee.inPlace, length > strip,
          let offset = inPlace.pointee.claim(
            frame + strip, headroom: header == nil ? 0 : BaselineHeader.length)
        {
          if let header {
            let start = frame - BaselineHeader.length
            start.copyMemory(from: template, byteCount: BaselineHeader.length)
            header.patch(start, innerLength: length)
            ring.pointee.commitInPlace(offset: offset, length: length &+ BaselineHeader.length)
          } else {
            ring.pointee.commitInPlace(offset: offset, length: length &- strip)
          }
          continue
        }
        if let header {
          let outLength = length &+ BaselineHeader.length
          if outLength > maxLength { continue }
          slot.copyMemory(from: template, byteCount: BaselineHeader.length)
          header.patch(slot, innerLength: length)
          (slot + BaselineHeader.length).copyMemory(from: frame, byteCount: length)
          ring.pointee.commit(length: outLength)
        } else {
          if length <= strip { continue }
          slot.copyMemory(from: frame + strip, byteCount: length &- strip)
          ring.pointee.commit(length: length &- strip)
        }
      }
      if ring.pointee.pending > 0 { output.flushTransmit() }
      input.releaseReceived()
    }
  }
}
