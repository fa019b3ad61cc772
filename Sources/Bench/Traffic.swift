import Dataplane

/// Frame size of generated traffic: one size for every frame, or IMIX.
enum FrameSize: Equatable, CustomStringConvertible, Codable {
  case fixed(Int)
  case imix

  /// IMIX 7:4:1 of 64/570/1518 bytes, interleaved over a 12-frame cycle.
  static let imixCycle = [64, 570, 64, 64, 1518, 64, 570, 64, 64, 570, 64, 570]
  static let smallest = 60
  static let largest = 9000

  init?(_ text: String) {
    if text.lowercased() == "imix" {
      self = .imix
    } else if let value = Int(text), (Self.smallest...Self.largest).contains(value) {
      self = .fixed(value)
    } else {
      return nil
    }
  }

  /// Size of frame number `index`.
  func size(at index: Int) -> Int {
    switch self {
    case .fixed(let size): return size
    case .imix: return Self.imixCycle[index % Self.imixCycle.count]
    }
  }

  var largestFrame: Int {
    switch self {
    case .fixed(let size): return size
    case .imix: return 1518
    }
  }

  var description: String {
    switch self {
    case .fixed(let size): return String(size)
    case .imix: return "imix"
    }
  }

  init(from decoder: Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    guard let value = FrameSize(text) else {
      throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: text))
    }
    self = value
  }

  func encode(to encoder: Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}

enum UnderlayFamily: String, Codable {
  case ipv4, ipv6
}

/// Addressing of the generated benchmark site. Every address here is one the live
/// benchmark assigns inside its own network namespaces.
struct TrafficPlan {
  var sources = 16
  var destinations = 16
  var size = FrameSize.fixed(64)
  var frames = 10_000
  var underlay = UnderlayFamily.ipv4
  var vni: UInt32 = 100

  static let accessPort = "vm1"
  static let underlayPort = "eth1"
  static let underlayMAC = MACAddress(rawValue: 0x02_00_00_00_00_01)
  static let remoteUnderlayMAC = MACAddress(rawValue: 0x02_00_00_00_00_02)
  /// The sink interface's own address in `Bench live`: not one frames are sent to.
  static let sinkMAC = MACAddress(rawValue: 0x02_00_00_00_EE_01)
  static let udpSourcePorts: ClosedRange<UInt16> = 49152...65535

  /// Local VMs (behind the access port): the sources of `access.pcap`.
  static func localMAC(_ index: Int) -> MACAddress {
    MACAddress(rawValue: 0x02_00_01_00_00_00 | UInt64(index))
  }
  /// Remote VMs (behind the remote VTEP): the destinations of `access.pcap`.
  static func remoteMAC(_ index: Int) -> MACAddress {
    MACAddress(rawValue: 0x02_00_02_00_00_00 | UInt64(index))
  }
  /// FDB filler that the traffic never uses (Bench memory `--fdb-size`).
  static func fillerMAC(_ index: Int) -> MACAddress {
    MACAddress(rawValue: 0x02_00_03_00_00_00 &+ UInt64(index))
  }

  /// Inner addresses: 10.200/16 for local VMs, 10.201/16 for remote VMs.
  static func localIP(_ index: Int) -> IPAddress {
    .v4(0x0AC8_0000 | UInt32(truncatingIfNeeded: index & 0xFFFF))
  }
  static func remoteIP(_ index: Int) -> IPAddress {
    .v4(0x0AC9_0000 | UInt32(truncatingIfNeeded: index & 0xFFFF))
  }

  var localVTEP: IPAddress {
    underlay == .ipv4 ? .v4(0x0ACA_0001) : IPAddress("fd00:202::1")!
  }
  var remoteVTEP: IPAddress {
    underlay == .ipv4 ? .v4(0x0ACA_0002) : IPAddress("fd00:202::2")!
  }

  /// Bytes VXLAN adds to an inner frame.
  var encapOverhead: Int { underlay == .ipv4 ? 50 : 70 }

  func validate() throws {
    guard (1...0xFFFF).contains(sources) else { throw BenchError.usage("--sources must be 1...65535") }
    guard (1...0xFFFF).contains(destinations) else {
      throw BenchError.usage("--destinations must be 1...65535")
    }
    guard frames >= 1 else { throw BenchError.usage("--frames must be at least 1") }
    guard vni >= 1 && vni <= 0xFF_FFFF else { throw BenchError.usage("--vni must be 1...16777215") }
  }

  struct Flow {
    var local: Int
    var remote: Int
    var localPort: UInt16
    var remotePort: UInt16
  }

  /// Frame `index`: local VM `index % N` to remote VM `index % M`, ports varied within
  /// 50000...53999 and 61000...61999, where Wireshark registers no dissector (tshark would
  /// report a UDP payload on, say, 54328 as malformed Elasticsearch).
  func flow(_ index: Int) -> Flow {
    Flow(
      local: index % sources, remote: index % destinations,
      localPort: UInt16(50_000 + (index &* 7919) % 4000), remotePort: UInt16(61_000 + index % 1000))
  }

  /// Access frame: what local VM sends to remote VM (IPv4/UDP), `size` bytes (no FCS).
  static func accessFrame(_ flow: Flow, size: Int, identification: UInt16 = 0) -> [UInt8] {
    udp(
      from: localMAC(flow.local), localIP(flow.local), flow.localPort,
      to: remoteMAC(flow.remote), remoteIP(flow.remote), flow.remotePort, size: size,
      identification: identification)
  }

  /// Reply frame inside VXLAN: remote VM back to local VM.
  static func returnFrame(_ flow: Flow, size: Int, identification: UInt16 = 0) -> [UInt8] {
    udp(
      from: remoteMAC(flow.remote), remoteIP(flow.remote), flow.remotePort,
      to: localMAC(flow.local), localIP(flow.local), flow.localPort, size: size,
      identification: identification)
  }

  static func udp(
    from sourceMAC: MACAddress, _ sourceIP: IPAddress, _ sourcePort: UInt16,
    to destinationMAC: MACAddress, _ destinationIP: IPAddress, _ destinationPort: UInt16, size: Int,
    identification: UInt16
  ) -> [UInt8] {
    let headers = 14 + 20 + 8
    let payload = (0..<max(0, size - headers)).map { UInt8(truncatingIfNeeded: $0) }
    return FrameBuilder.udpFrame(
      link: .init(destination: destinationMAC, source: sourceMAC), source: sourceIP,
      destination: destinationIP,
      sourcePort: sourcePort, destinationPort: destinationPort, payload: payload,
      ipv4: .init(identification: identification), padToMinimum: true)
  }

  /// The outer UDP source port a remote VTEP would pick for this flow.
  func entropyPort(_ flow: Flow) -> UInt16 {
    var hash = UInt64(flow.local) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(flow.remote) &* 0xBF58_476D_1CE4_E5B9
    hash ^= UInt64(flow.localPort) << 16 | UInt64(flow.remotePort)
    hash = (hash ^ hash >> 31) &* 0x94D0_49BB_1331_11EB
    let span = UInt64(Self.udpSourcePorts.count)
    return Self.udpSourcePorts.lowerBound + UInt16(truncatingIfNeeded: (hash >> 32) % span)
  }

  /// `inner` as it arrives from the remote VTEP at the local VTEP.
  func encapsulate(_ inner: [UInt8], entropy: UInt16) -> [UInt8] {
    FrameBuilder.vxlanFrame(
      inner: inner, vni: vni,
      underlay: .init(
        link: .init(destination: Self.underlayMAC, source: Self.remoteUnderlayMAC), source: remoteVTEP,
        destination: localVTEP, sourcePort: entropy))
  }

  func accessFrames() -> [[UInt8]] {
    (0..<frames).map {
      Self.accessFrame(flow($0), size: size.size(at: $0), identification: UInt16(truncatingIfNeeded: $0))
    }
  }

  func underlayFrames() -> [[UInt8]] {
    (0..<frames).map { index in
      let flow = flow(index)
      let inner = Self.returnFrame(
        flow, size: size.size(at: index), identification: UInt16(truncatingIfNeeded: index))
      return encapsulate(inner, entropy: entropyPort(flow))
    }
  }

  /// Underlay IP MTU that lets the largest frame through encapsulated.
  var underlayMTU: Int {
    let needed = size.largestFrame - 14 + encapOverhead
    return needed <= 1500 ? 1500 : 9000
  }

  /// A site config for `Bench memory`, `vxswitch replay` and the live benchmark.
  func siteConfig(name: String = "bench", fdbCapacity: Int? = nil, staticLocal: Bool = true) -> String {
    var text = """
      # Generated by `Bench gen`: one bridge domain, access port \(Self.accessPort), one remote VTEP.
      # Remote VMs are static entries on the remote VTEP, so that encap measures known unicast;
      # local VMs are static entries on \(Self.accessPort), so that decap does too.

      [site]
      name = "\(name)"
      vtep = "\(localVTEP)"
      underlay = "\(Self.underlayPort)"
      udp_port = 4789
      underlay_mac = "\(Self.underlayMAC)"
      mtu = \(underlayMTU)

      """
    if let fdbCapacity { text += "fdb_capacity = \(fdbCapacity)\n" }
    text += """

      [[neighbor]]
      ip = "\(remoteVTEP)"
      mac = "\(Self.remoteUnderlayMAC)"

      [[bridge_domain]]
      vni = \(vni)
      ports = ["\(Self.accessPort)"]
      flood = ["\(remoteVTEP)"]
      learning = true

      """
    for index in 0..<destinations {
      text +=
        "\n[[static_mac]]\nvni = \(vni)\nmac = \"\(Self.remoteMAC(index))\"\nremote = \"\(remoteVTEP)\"\n"
    }
    if staticLocal {
      for index in 0..<sources {
        text +=
          "\n[[static_mac]]\nvni = \(vni)\nmac = \"\(Self.localMAC(index))\"\nport = \"\(Self.accessPort)\"\n"
      }
    }
    return text
  }
}

enum BenchError: Error, CustomStringConvertible {
  case usage(String)
  case failed(String)

  var description: String {
    switch self {
    case .usage(let text), .failed(let text): return text
    }
  }
}

/// Rebuilds generated frames at another size (Bench memory `--sweep`): access frames
/// (Ethernet/IPv4/UDP) and VXLAN frames carrying them keep their addresses and ports.
enum FrameResizer {
  static func resize(_ frame: [UInt8], to size: Int) -> [UInt8]? {
    guard frame.count >= 42, be16(frame, 12) == 0x0800 || be16(frame, 12) == 0x86DD else { return nil }
    if let (outer, inner) = splitVXLAN(frame) {
      guard let resized = resizeUDP(inner, to: size) else { return nil }
      return FrameBuilder.vxlanFrame(inner: resized, vni: outer.vni, underlay: outer.underlay)
    }
    return resizeUDP(frame, to: size)
  }

  struct Outer {
    var vni: UInt32
    var underlay: FrameBuilder.VXLANUnderlay
  }

  static func be16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
  }

  static func mac(_ bytes: [UInt8], _ offset: Int) -> MACAddress {
    MACAddress(rawValue: bytes[offset..<offset + 6].reduce(0) { $0 << 8 | UInt64($1) })
  }

  static func splitVXLAN(_ frame: [UInt8]) -> (Outer, [UInt8])? {
    guard frame.count >= 42 else { return nil }
    let etherType = be16(frame, 12)
    let udpOffset: Int
    let source: IPAddress
    let destination: IPAddress
    if etherType == 0x0800 {
      guard frame[23] == 17, frame[14] >> 4 == 4 else { return nil }
      udpOffset = 14 + Int(frame[14] & 0x0F) * 4
      source = frame.withUnsafeBytes { IPAddress(bytes: UnsafeRawBufferPointer(rebasing: $0[26..<30]))! }
      destination = frame.withUnsafeBytes { IPAddress(bytes: UnsafeRawBufferPointer(rebasing: $0[30..<34]))! }
    } else if etherType == 0x86DD {
      guard frame.count >= 62, frame[20] == 17 else { return nil }
      udpOffset = 54
      source = frame.withUnsafeBytes { IPAddress(bytes: UnsafeRawBufferPointer(rebasing: $0[22..<38]))! }
      destination = frame.withUnsafeBytes { IPAddress(bytes: UnsafeRawBufferPointer(rebasing: $0[38..<54]))! }
    } else {
      return nil
    }
    guard frame.count >= udpOffset + 16 + 14, be16(frame, udpOffset + 2) == FrameBuilder.vxlanPort else {
      return nil
    }
    let vni =
      UInt32(frame[udpOffset + 12]) << 16 | UInt32(frame[udpOffset + 13]) << 8 | UInt32(frame[udpOffset + 14])
    let checksum: FrameBuilder.UDPChecksum = be16(frame, udpOffset + 6) == 0 ? .zero : .computed
    let underlay = FrameBuilder.VXLANUnderlay(
      link: .init(destination: mac(frame, 0), source: mac(frame, 6)), source: source,
      destination: destination,
      sourcePort: be16(frame, udpOffset), udpChecksum: checksum)
    return (Outer(vni: vni, underlay: underlay), Array(frame[(udpOffset + 16)...]))
  }

  static func resizeUDP(_ frame: [UInt8], to size: Int) -> [UInt8]? {
    guard frame.count >= 42, be16(frame, 12) == 0x0800, frame[23] == 17, frame[14] == 0x45 else { return nil }
    let source = frame.withUnsafeBytes { IPAddress(bytes: UnsafeRawBufferPointer(rebasing: $0[26..<30]))! }
    let destination = frame.withUnsafeBytes {
      IPAddress(bytes: UnsafeRawBufferPointer(rebasing: $0[30..<34]))!
    }
    return TrafficPlan.udp(
      from: mac(frame, 6), source, be16(frame, 34), to: mac(frame, 0), destination, be16(frame, 36),
      size: size,
      identification: be16(frame, 18))
  }
}
