/// Builds complete, well-formed Ethernet frames as `[UInt8]` for tests, fixtures and
/// benchmark traffic generation. Every length field and checksum is computed.
///
/// This is deliberately allocation-happy and simple: each layer is built as its own array
/// and wrapped by the layer below. It is NOT meant for the packet path.
///
/// Layers compose bottom-up, e.g. a UDP frame is
/// `ethernet(..., payload: ipPacket(..., payload: udpDatagram(...)))`; the `...Frame`
/// conveniences do exactly that. Invalid arguments (an IPv4 option list over 40 bytes, a
/// VLAN id over 4095, mixed address families) are programmer errors and trap with a message.
///
/// Malformed frames for drop tests are made by building a valid frame and then editing bytes.
public enum FrameBuilder {
  /// Ethernet II EtherType values used by the builder.
  public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let vlan: UInt16 = 0x8100
    public static let ipv6: UInt16 = 0x86DD
  }

  /// IP protocol / IPv6 next-header numbers used by the builder.
  public enum IPProtocolNumber {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let icmpv6: UInt8 = 58
  }

  /// Minimum Ethernet frame length without the 4-byte FCS (IEEE 802.3: 64 with FCS).
  public static let minimumFrameLength = 60
  public static let ethernetHeaderLength = 14
  public static let vlanTagLength = 4
  public static let ipv4MinimumHeaderLength = 20
  public static let ipv6HeaderLength = 40
  public static let udpHeaderLength = 8
  public static let tcpMinimumHeaderLength = 20
  public static let vxlanHeaderLength = 8
  /// IANA-assigned VXLAN UDP port (RFC 7348 §5).
  public static let vxlanPort: UInt16 = 4789

  /// An IEEE 802.1Q tag: priority code point, drop-eligible indicator and VLAN id.
  public struct VLANTag: Hashable, Sendable {
    public var priority: UInt8
    public var dropEligible: Bool
    public var vlanID: UInt16

    public init(vlanID: UInt16, priority: UInt8 = 0, dropEligible: Bool = false) {
      precondition(vlanID <= 0x0FFF, "802.1Q VLAN id \(vlanID) does not fit in 12 bits")
      precondition(priority <= 7, "802.1Q priority \(priority) does not fit in 3 bits")
      self.vlanID = vlanID
      self.priority = priority
      self.dropEligible = dropEligible
    }

    /// The 16-bit tag control information: PCP(3) DEI(1) VID(12).
    public var tagControlInformation: UInt16 {
      UInt16(priority) << 13 | (dropEligible ? 0x1000 : 0) | vlanID
    }
  }

  /// Addresses (and optional 802.1Q tag) of an Ethernet header.
  public struct EthernetHeaderFields: Hashable, Sendable {
    public var destination: MACAddress
    public var source: MACAddress
    public var vlan: VLANTag?

    public init(destination: MACAddress, source: MACAddress, vlan: VLANTag? = nil) {
      self.destination = destination
      self.source = source
      self.vlan = vlan
    }
  }

  /// IPv4 header fields other than addresses, protocol and lengths.
  public struct IPv4HeaderFields: Hashable, Sendable {
    public var typeOfService: UInt8
    public var identification: UInt16
    public var timeToLive: UInt8
    public var dontFragment: Bool
    public var moreFragments: Bool
    /// Offset of this fragment's data in the original payload, in bytes; a multiple of 8.
    public var fragmentOffsetBytes: Int
    /// Raw option bytes; padded with End-of-Options (0) to a multiple of 4, at most 40.
    public var options: [UInt8]

    public init(
      typeOfService: UInt8 = 0, identification: UInt16 = 0, timeToLive: UInt8 = 64,
      dontFragment: Bool = false, moreFragments: Bool = false, fragmentOffsetBytes: Int = 0,
      options: [UInt8] = []
    ) {
      self.typeOfService = typeOfService
      self.identification = identification
      self.timeToLive = timeToLive
      self.dontFragment = dontFragment
      self.moreFragments = moreFragments
      self.fragmentOffsetBytes = fragmentOffsetBytes
      self.options = options
    }
  }

  /// IPv6 header fields other than addresses, next header and payload length.
  public struct IPv6HeaderFields: Hashable, Sendable {
    public var trafficClass: UInt8
    /// 20-bit flow label.
    public var flowLabel: UInt32
    public var hopLimit: UInt8

    public init(trafficClass: UInt8 = 0, flowLabel: UInt32 = 0, hopLimit: UInt8 = 64) {
      precondition(flowLabel <= 0xF_FFFF, "IPv6 flow label \(flowLabel) does not fit in 20 bits")
      self.trafficClass = trafficClass
      self.flowLabel = flowLabel
      self.hopLimit = hopLimit
    }
  }

  // MARK: Ethernet

  /// An Ethernet II frame (no FCS). With `padToMinimum`, zero bytes are appended up to
  /// `minimumFrameLength` as a NIC would; IP lengths inside stay those of the real payload.
  public static func ethernet(
    _ link: EthernetHeaderFields, etherType: UInt16, payload: [UInt8], padToMinimum: Bool = false
  ) -> [UInt8] {
    var frame: [UInt8] = []
    frame.reserveCapacity(ethernetHeaderLength + vlanTagLength + payload.count)
    frame.append(link.destination)
    frame.append(link.source)
    if let vlan = link.vlan {
      frame.appendBigEndian(EtherType.vlan)
      frame.appendBigEndian(vlan.tagControlInformation)
    }
    frame.appendBigEndian(etherType)
    frame.append(contentsOf: payload)
    if padToMinimum && frame.count < minimumFrameLength {
      frame.append(contentsOf: repeatElement(0, count: minimumFrameLength - frame.count))
    }
    return frame
  }

  // MARK: ARP

  /// ARP operation codes (RFC 826).
  public enum ARPOperation: UInt16, Sendable {
    case request = 1
    case reply = 2
  }

  /// A 28-byte Ethernet/IPv4 ARP packet (RFC 826).
  public static func arp(
    operation: ARPOperation, senderMAC: MACAddress, senderIP: IPAddress,
    targetMAC: MACAddress, targetIP: IPAddress
  ) -> [UInt8] {
    precondition(senderIP.isIPv4 && targetIP.isIPv4, "ARP carries IPv4 addresses only")
    var packet: [UInt8] = []
    packet.appendBigEndian(UInt16(1))  // hardware type: Ethernet
    packet.appendBigEndian(EtherType.ipv4)  // protocol type
    packet.append(6)  // hardware address length
    packet.append(4)  // protocol address length
    packet.appendBigEndian(operation.rawValue)
    packet.append(senderMAC)
    packet.append(senderIP)
    packet.append(targetMAC)
    packet.append(targetIP)
    return packet
  }

  /// An ICMPv6 neighbour discovery frame (RFC 4861): `type` 135 (solicitation) or 136
  /// (advertisement, `flags` in its first word), hop limit 255, the target address, and
  /// when `option` is given (1 source, 2 target link-layer address) that option with
  /// `linkLayerAddress` (default the Ethernet source); the ICMPv6 checksum is computed.
  public static func neighborDiscoveryFrame(
    type: UInt8, ethernet link: EthernetHeaderFields, source: IPAddress, destination: IPAddress,
    target: IPAddress, flags: UInt32 = 0, option: UInt8?, linkLayerAddress: MACAddress? = nil
  ) -> [UInt8] {
    var message: [UInt8] = [type, 0, 0, 0]
    message.appendBigEndian(flags)
    message.append(target)
    if let option {
      message += [option, 1]
      message.append(linkLayerAddress ?? link.source)
    }
    var pseudo = source.bytes + destination.bytes
    pseudo.appendBigEndian(UInt32(message.count))
    pseudo.appendBigEndian(UInt32(IPProtocolNumber.icmpv6))
    message.storeBigEndian(InternetChecksum.checksum(pseudo + message), at: 2)
    let packet = ipv6Packet(
      source: source, destination: destination, nextHeader: IPProtocolNumber.icmpv6, payload: message,
      fields: IPv6HeaderFields(hopLimit: 255))
    return ethernet(link, etherType: EtherType.ipv6, payload: packet)
  }

  /// A neighbour solicitation for `targetIP` from `senderIP` (`::` for duplicate address
  /// detection, then without the source link-layer address option) to the target's
  /// solicited-node multicast address (ff02::1:ffXX:XXXX, 33:33:ff:XX:XX:XX).
  public static func neighborSolicitationFrame(
    senderMAC: MACAddress, senderIP: IPAddress, targetIP: IPAddress, vlan: VLANTag? = nil
  ) -> [UInt8] {
    let low24 = targetIP.bytes.suffix(3)
    let groupBytes = [0xFF, 0x02] + [UInt8](repeating: 0, count: 9) + [1, 0xFF] + low24
    let group = groupBytes.withUnsafeBytes { IPAddress(bytes: $0) }!
    let groupMAC = MACAddress(rawValue: 0x3333_FF00_0000 | low24.reduce(0) { $0 << 8 | UInt64($1) })
    let unspecified = senderIP.bytes.allSatisfy { $0 == 0 }
    return neighborDiscoveryFrame(
      type: 135, ethernet: EthernetHeaderFields(destination: groupMAC, source: senderMAC, vlan: vlan),
      source: senderIP, destination: group, target: targetIP, option: unspecified ? nil : 1)
  }

  /// A neighbour advertisement by `senderMAC` for `targetIP` to `destinationMAC` /
  /// `destinationIP`: solicited (flags S and O) or unsolicited (O, to all nodes when
  /// sent that way), with the target link-layer address option; from `targetIP`.
  public static func neighborAdvertisementFrame(
    senderMAC: MACAddress, targetIP: IPAddress, destinationMAC: MACAddress, destinationIP: IPAddress,
    solicited: Bool, vlan: VLANTag? = nil
  ) -> [UInt8] {
    neighborDiscoveryFrame(
      type: 136, ethernet: EthernetHeaderFields(destination: destinationMAC, source: senderMAC, vlan: vlan),
      source: targetIP, destination: destinationIP, target: targetIP,
      flags: solicited ? 0x6000_0000 : 0x2000_0000, option: 2)
  }

  /// A broadcast "who-has targetIP" ARP request frame; the target MAC is zero.
  public static func arpRequestFrame(
    senderMAC: MACAddress, senderIP: IPAddress, targetIP: IPAddress, vlan: VLANTag? = nil,
    padToMinimum: Bool = false
  ) -> [UInt8] {
    ethernet(
      EthernetHeaderFields(destination: .broadcast, source: senderMAC, vlan: vlan),
      etherType: EtherType.arp,
      payload: arp(
        operation: .request, senderMAC: senderMAC, senderIP: senderIP, targetMAC: .zero,
        targetIP: targetIP),
      padToMinimum: padToMinimum)
  }

  /// A unicast "senderIP is-at senderMAC" ARP reply frame addressed to the requester.
  public static func arpReplyFrame(
    senderMAC: MACAddress, senderIP: IPAddress, targetMAC: MACAddress, targetIP: IPAddress,
    vlan: VLANTag? = nil, padToMinimum: Bool = false
  ) -> [UInt8] {
    ethernet(
      EthernetHeaderFields(destination: targetMAC, source: senderMAC, vlan: vlan),
      etherType: EtherType.arp,
      payload: arp(
        operation: .reply, senderMAC: senderMAC, senderIP: senderIP, targetMAC: targetMAC,
        targetIP: targetIP),
      padToMinimum: padToMinimum)
  }

  // MARK: IP

  /// An IPv4 packet with a correct total length and header checksum.
  public static func ipv4Packet(
    source: IPAddress, destination: IPAddress, protocolNumber: UInt8, payload: [UInt8],
    fields: IPv4HeaderFields = IPv4HeaderFields()
  ) -> [UInt8] {
    guard case .v4(let sourceAddress) = source, case .v4(let destinationAddress) = destination
    else { preconditionFailure("ipv4Packet needs IPv4 addresses, got \(source) and \(destination)") }
    var options = fields.options
    while options.count % 4 != 0 { options.append(0) }  // End-of-Options-List padding
    precondition(options.count <= 40, "IPv4 options are \(options.count) bytes, at most 40 fit")
    precondition(
      fields.fragmentOffsetBytes % 8 == 0 && (0...0xFFF8).contains(fields.fragmentOffsetBytes),
      "IPv4 fragment offset \(fields.fragmentOffsetBytes) is not a multiple of 8 below 65536")
    let headerLength = ipv4MinimumHeaderLength + options.count
    let totalLength = headerLength + payload.count
    precondition(totalLength <= 0xFFFF, "IPv4 total length \(totalLength) exceeds 65535")

    var flagsAndOffset = UInt16(fields.fragmentOffsetBytes / 8)
    if fields.dontFragment { flagsAndOffset |= 0x4000 }
    if fields.moreFragments { flagsAndOffset |= 0x2000 }

    var packet: [UInt8] = []
    packet.reserveCapacity(totalLength)
    packet.append(0x40 | UInt8(headerLength / 4))
    packet.append(fields.typeOfService)
    packet.appendBigEndian(UInt16(totalLength))
    packet.appendBigEndian(fields.identification)
    packet.appendBigEndian(flagsAndOffset)
    packet.append(fields.timeToLive)
    packet.append(protocolNumber)
    packet.appendBigEndian(UInt16(0))  // checksum, filled below
    packet.appendBigEndian(sourceAddress)
    packet.appendBigEndian(destinationAddress)
    packet.append(contentsOf: options)
    packet.storeBigEndian(InternetChecksum.checksum(packet), at: 10)
    packet.append(contentsOf: payload)
    return packet
  }

  /// An IPv6 packet (no extension headers) with a correct payload length.
  public static func ipv6Packet(
    source: IPAddress, destination: IPAddress, nextHeader: UInt8, payload: [UInt8],
    fields: IPv6HeaderFields = IPv6HeaderFields()
  ) -> [UInt8] {
    precondition(
      !source.isIPv4 && !destination.isIPv4,
      "ipv6Packet needs IPv6 addresses, got \(source) and \(destination)")
    precondition(payload.count <= 0xFFFF, "IPv6 payload \(payload.count) needs a jumbogram")
    var packet: [UInt8] = []
    packet.reserveCapacity(ipv6HeaderLength + payload.count)
    packet.appendBigEndian(
      UInt32(6) << 28 | UInt32(fields.trafficClass) << 20 | fields.flowLabel)
    packet.appendBigEndian(UInt16(payload.count))
    packet.append(nextHeader)
    packet.append(fields.hopLimit)
    packet.append(source)
    packet.append(destination)
    packet.append(contentsOf: payload)
    return packet
  }

  /// An IPv4 or IPv6 packet, chosen by the address family (both must match).
  public static func ipPacket(
    source: IPAddress, destination: IPAddress, protocolNumber: UInt8, payload: [UInt8],
    ipv4: IPv4HeaderFields = IPv4HeaderFields(), ipv6: IPv6HeaderFields = IPv6HeaderFields()
  ) -> [UInt8] {
    precondition(source.isIPv4 == destination.isIPv4, "source and destination families differ")
    return source.isIPv4
      ? ipv4Packet(
        source: source, destination: destination, protocolNumber: protocolNumber,
        payload: payload, fields: ipv4)
      : ipv6Packet(
        source: source, destination: destination, nextHeader: protocolNumber, payload: payload,
        fields: ipv6)
  }

  /// The EtherType that carries packets of `address`'s family.
  public static func etherType(for address: IPAddress) -> UInt16 {
    address.isIPv4 ? EtherType.ipv4 : EtherType.ipv6
  }

  /// Splits `payload` (an L4 datagram, checksum already final) into IPv4 fragments of at
  /// most `maximumFragmentPayload` bytes each (rounded down to a multiple of 8), with
  /// offsets and More-Fragments set; `fields` supplies id, TTL, TOS and options (the
  /// options are copied into every fragment, which suits tests; RFC 791 copies only some).
  public static func ipv4Fragments(
    source: IPAddress, destination: IPAddress, protocolNumber: UInt8, payload: [UInt8],
    maximumFragmentPayload: Int, fields: IPv4HeaderFields = IPv4HeaderFields()
  ) -> [[UInt8]] {
    let chunk = maximumFragmentPayload / 8 * 8
    precondition(chunk > 0, "fragment payload \(maximumFragmentPayload) is below 8 bytes")
    var packets: [[UInt8]] = []
    var start = 0
    repeat {
      let end = min(start + chunk, payload.count)
      var fragmentFields = fields
      fragmentFields.dontFragment = false
      fragmentFields.fragmentOffsetBytes = start
      fragmentFields.moreFragments = end < payload.count
      packets.append(
        ipv4Packet(
          source: source, destination: destination, protocolNumber: protocolNumber,
          payload: Array(payload[start..<end]), fields: fragmentFields))
      start = end
    } while start < payload.count
    return packets
  }
}
