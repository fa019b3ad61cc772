/// UDP, TCP and ICMP echo layers, and the full-frame conveniences built on them.
extension FrameBuilder {
  /// Whether a UDP datagram carries a computed checksum or the "no checksum" zero, which
  /// RFC 768 allows over IPv4 and RFC 6935/6936 allow over IPv6 only for tunnels.
  public enum UDPChecksum: Hashable, Sendable {
    case computed
    case zero
  }

  /// TCP control flags (RFC 9293).
  public struct TCPFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
  }

  /// ICMP (IPv4) or ICMPv6 echo message kind.
  public enum EchoKind: Sendable {
    case request
    case reply
  }

  /// A UDP datagram; `source`/`destination` are the IP addresses of the enclosing packet,
  /// needed for the pseudo-header checksum.
  public static func udpDatagram(
    sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8],
    source: IPAddress, destination: IPAddress, checksum: UDPChecksum = .computed
  ) -> [UInt8] {
    let length = udpHeaderLength + payload.count
    precondition(length <= 0xFFFF, "UDP length \(length) exceeds 65535")
    var datagram: [UInt8] = []
    datagram.reserveCapacity(length)
    datagram.appendBigEndian(sourcePort)
    datagram.appendBigEndian(destinationPort)
    datagram.appendBigEndian(UInt16(length))
    datagram.appendBigEndian(UInt16(0))
    datagram.append(contentsOf: payload)
    if checksum == .computed {
      let pseudo = InternetChecksum.pseudoHeaderSum(
        source: source, destination: destination, protocolNumber: IPProtocolNumber.udp,
        upperLayerLength: length)
      let value = InternetChecksum.checksum(datagram, initial: pseudo)
      // RFC 768: a computed zero is sent as all ones; zero means "not computed".
      datagram.storeBigEndian(value == 0 ? 0xFFFF : value, at: 6)
    }
    return datagram
  }

  /// A TCP segment with the minimal 20-byte header (no options) and a correct checksum.
  public static func tcpSegment(
    sourcePort: UInt16, destinationPort: UInt16, sequenceNumber: UInt32,
    acknowledgmentNumber: UInt32 = 0, flags: TCPFlags, window: UInt16 = 65535,
    payload: [UInt8] = [], source: IPAddress, destination: IPAddress
  ) -> [UInt8] {
    var segment: [UInt8] = []
    segment.reserveCapacity(tcpMinimumHeaderLength + payload.count)
    segment.appendBigEndian(sourcePort)
    segment.appendBigEndian(destinationPort)
    segment.appendBigEndian(sequenceNumber)
    segment.appendBigEndian(acknowledgmentNumber)
    segment.append(UInt8(tcpMinimumHeaderLength / 4) << 4)  // data offset, reserved bits zero
    segment.append(flags.rawValue)
    segment.appendBigEndian(window)
    segment.appendBigEndian(UInt16(0))  // checksum, filled below
    segment.appendBigEndian(UInt16(0))  // urgent pointer
    segment.append(contentsOf: payload)
    let pseudo = InternetChecksum.pseudoHeaderSum(
      source: source, destination: destination, protocolNumber: IPProtocolNumber.tcp,
      upperLayerLength: segment.count)
    segment.storeBigEndian(InternetChecksum.checksum(segment, initial: pseudo), at: 16)
    return segment
  }

  /// An echo request/reply: ICMP (type 8/0, checksum over the message) when the addresses
  /// are IPv4, ICMPv6 (type 128/129, checksum including the pseudo-header) when IPv6.
  public static func icmpEcho(
    kind: EchoKind, identifier: UInt16, sequenceNumber: UInt16, payload: [UInt8] = [],
    source: IPAddress, destination: IPAddress
  ) -> [UInt8] {
    let isIPv4 = source.isIPv4
    let type: UInt8
    switch (kind, isIPv4) {
    case (.request, true): type = 8
    case (.reply, true): type = 0
    case (.request, false): type = 128
    case (.reply, false): type = 129
    }
    var message: [UInt8] = [type, 0, 0, 0]
    message.appendBigEndian(identifier)
    message.appendBigEndian(sequenceNumber)
    message.append(contentsOf: payload)
    let pseudo =
      isIPv4
      ? 0
      : InternetChecksum.pseudoHeaderSum(
        source: source, destination: destination, protocolNumber: IPProtocolNumber.icmpv6,
        upperLayerLength: message.count)
    message.storeBigEndian(InternetChecksum.checksum(message, initial: pseudo), at: 2)
    return message
  }

  /// Ethernet + IPv4/IPv6 + UDP.
  public static func udpFrame(
    link: EthernetHeaderFields, source: IPAddress, destination: IPAddress,
    sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8],
    checksum: UDPChecksum = .computed, ipv4: IPv4HeaderFields = IPv4HeaderFields(),
    ipv6: IPv6HeaderFields = IPv6HeaderFields(), padToMinimum: Bool = false
  ) -> [UInt8] {
    let datagram = udpDatagram(
      sourcePort: sourcePort, destinationPort: destinationPort, payload: payload,
      source: source, destination: destination, checksum: checksum)
    let packet = ipPacket(
      source: source, destination: destination, protocolNumber: IPProtocolNumber.udp,
      payload: datagram, ipv4: ipv4, ipv6: ipv6)
    return ethernet(
      link, etherType: etherType(for: source), payload: packet, padToMinimum: padToMinimum)
  }

  /// Ethernet + IPv4/IPv6 + TCP (minimal header).
  public static func tcpFrame(
    link: EthernetHeaderFields, source: IPAddress, destination: IPAddress,
    sourcePort: UInt16, destinationPort: UInt16, sequenceNumber: UInt32,
    acknowledgmentNumber: UInt32 = 0, flags: TCPFlags, window: UInt16 = 65535,
    payload: [UInt8] = [], ipv4: IPv4HeaderFields = IPv4HeaderFields(),
    ipv6: IPv6HeaderFields = IPv6HeaderFields(), padToMinimum: Bool = false
  ) -> [UInt8] {
    let segment = tcpSegment(
      sourcePort: sourcePort, destinationPort: destinationPort, sequenceNumber: sequenceNumber,
      acknowledgmentNumber: acknowledgmentNumber, flags: flags, window: window,
      payload: payload, source: source, destination: destination)
    let packet = ipPacket(
      source: source, destination: destination, protocolNumber: IPProtocolNumber.tcp,
      payload: segment, ipv4: ipv4, ipv6: ipv6)
    return ethernet(
      link, etherType: etherType(for: source), payload: packet, padToMinimum: padToMinimum)
  }

  /// Ethernet + IPv4 + ICMP echo, or Ethernet + IPv6 + ICMPv6 echo.
  public static func icmpEchoFrame(
    link: EthernetHeaderFields, source: IPAddress, destination: IPAddress, kind: EchoKind,
    identifier: UInt16, sequenceNumber: UInt16, payload: [UInt8] = [],
    ipv4: IPv4HeaderFields = IPv4HeaderFields(), ipv6: IPv6HeaderFields = IPv6HeaderFields(),
    padToMinimum: Bool = false
  ) -> [UInt8] {
    let message = icmpEcho(
      kind: kind, identifier: identifier, sequenceNumber: sequenceNumber, payload: payload,
      source: source, destination: destination)
    let protocolNumber = source.isIPv4 ? IPProtocolNumber.icmp : IPProtocolNumber.icmpv6
    let packet = ipPacket(
      source: source, destination: destination, protocolNumber: protocolNumber,
      payload: message, ipv4: ipv4, ipv6: ipv6)
    return ethernet(
      link, etherType: etherType(for: source), payload: packet, padToMinimum: padToMinimum)
  }
}
