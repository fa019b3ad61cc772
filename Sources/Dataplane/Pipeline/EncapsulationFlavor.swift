/// How a batch writes outer headers. The packet loops are generic over it so that the
/// common site configurations (IPv4 underlay without UDP checksum, IPv6 underlay; fixed
/// DSCP) are fixed at compile time and their loops carry neither the flags nor their
/// branches; every other configuration reads them from the batch's `UnderlayOutput`.
protocol EncapsulationFlavor {
  static func isIPv6(_ out: UnderlayOutput) -> Bool
  static func inheritsDSCP(_ out: UnderlayOutput) -> Bool
  static func checksumsIPv4UDP(_ out: UnderlayOutput) -> Bool
  static func headerLength(_ out: UnderlayOutput) -> Int
}

/// IPv4 underlay, fixed DSCP, UDP checksum 0: the default configuration.
enum PlainIPv4Encapsulation: EncapsulationFlavor {
  @inline(__always) static func isIPv6(_ out: UnderlayOutput) -> Bool { false }
  @inline(__always) static func inheritsDSCP(_ out: UnderlayOutput) -> Bool { false }
  @inline(__always) static func checksumsIPv4UDP(_ out: UnderlayOutput) -> Bool { false }
  @inline(__always) static func headerLength(_ out: UnderlayOutput) -> Int { OuterHeaderTemplate.ipv4Length }

  /// Whether the site's configuration is this flavor's.
  static func matches(_ state: ForwardingState) -> Bool {
    !state.localIsIPv6 && !state.inheritDSCP && !state.ipv4UDPChecksum
  }
}

/// IPv6 underlay (UDP checksum mandatory), fixed DSCP.
enum PlainIPv6Encapsulation: EncapsulationFlavor {
  @inline(__always) static func isIPv6(_ out: UnderlayOutput) -> Bool { true }
  @inline(__always) static func inheritsDSCP(_ out: UnderlayOutput) -> Bool { false }
  @inline(__always) static func checksumsIPv4UDP(_ out: UnderlayOutput) -> Bool { false }
  @inline(__always) static func headerLength(_ out: UnderlayOutput) -> Int { OuterHeaderTemplate.ipv6Length }

  /// Whether the site's configuration is this flavor's.
  static func matches(_ state: ForwardingState) -> Bool { state.localIsIPv6 && !state.inheritDSCP }
}

/// Any configuration, read per frame from the batch's `UnderlayOutput`.
enum ConfiguredEncapsulation: EncapsulationFlavor {
  @inline(__always) static func isIPv6(_ out: UnderlayOutput) -> Bool { out.isIPv6 }
  @inline(__always) static func inheritsDSCP(_ out: UnderlayOutput) -> Bool { out.inheritDSCP }
  @inline(__always) static func checksumsIPv4UDP(_ out: UnderlayOutput) -> Bool { out.ipv4UDPChecksum }
  @inline(__always) static func headerLength(_ out: UnderlayOutput) -> Int { out.headerLength }
}
