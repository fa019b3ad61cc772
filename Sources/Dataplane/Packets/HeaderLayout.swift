/// Named header fields the offload code (segmentation, path MTU replies) reads and writes,
/// so that no offset appears as a bare number there.
enum EthernetLayout {
  static let headerLength = 14
  static let destinationOffset = 0
  static let sourceOffset = 6
  static let etherTypeOffset = 12
}

enum VLANLayout {
  /// An 802.1Q tag in band: TPID and TCI in front of the EtherType.
  static let tagLength = 4
}

enum EtherType {
  static let ipv4: UInt16 = 0x0800
  static let ipv6: UInt16 = 0x86DD
  static let vlan: UInt16 = 0x8100
  static let qinq: UInt16 = 0x88A8
}

enum IPProtocol {
  static let icmp: UInt8 = 1
  static let tcp: UInt8 = 6
  static let udp: UInt8 = 17
  static let icmpv6: UInt8 = 58
}

enum IPv4Layout {
  static let minimumHeaderLength = 20
  /// Version 4, a 20-byte header: the first byte of an IPv4 header without options.
  static let versionWithoutOptions: UInt8 = 0x45
  static let tosOffset = 1
  static let totalLengthOffset = 2
  static let identificationOffset = 4
  static let fragmentOffset = 6
  /// More-fragments flag and fragment offset: non-zero for any fragment.
  static let fragmentMask: UInt16 = 0x3FFF
  static let dontFragment: UInt16 = 0x4000
  static let ttlOffset = 8
  static let protocolOffset = 9
  static let checksumOffset = 10
  static let sourceOffset = 12
  static let destinationOffset = 16
}

enum IPv6Layout {
  static let headerLength = 40
  static let payloadLengthOffset = 4
  static let nextHeaderOffset = 6
  static let hopLimitOffset = 7
  static let sourceOffset = 8
  static let destinationOffset = 24
  /// Hop-by-hop, routing and destination options: headers a segmenter copies unchanged.
  @inline(__always) static func isSkippableExtension(_ next: UInt8) -> Bool {
    next == 0 || next == 43 || next == 60
  }
}

enum TCPLayout {
  static let minimumHeaderLength = 20
  static let sequenceOffset = 4
  static let acknowledgementOffset = 8
  static let dataOffsetOffset = 12
  static let flagsOffset = 13
  static let windowOffset = 14
  static let checksumOffset = 16
  static let urgentPointerOffset = 18
  static let fin: UInt8 = 0x01
  static let psh: UInt8 = 0x08
  static let cwr: UInt8 = 0x80
}

enum UDPLayout {
  static let headerLength = 8
  static let sourcePortOffset = 0
  static let destinationPortOffset = 2
  static let lengthOffset = 4
  static let checksumOffset = 6
}

enum VXLANLayout {
  static let headerLength = 8
}
