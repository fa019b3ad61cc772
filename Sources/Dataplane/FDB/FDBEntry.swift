/// Where a forwarding entry sends frames.
public enum FDBTargetKind: UInt64, Sendable {
  /// A local access port member (index into the forwarding state's port members).
  case port = 1
  /// A remote VTEP (index into the forwarding state's VTEP table).
  case vtep = 2
  /// Frames to this MAC are dropped.
  case drop = 3
}

/// Who installed an entry; decides what may overwrite it and what ages.
public enum FDBOrigin: UInt64, Sendable, CaseIterable {
  /// From the configuration; never moves, never ages.
  case `static` = 0
  /// Learned from a frame received on a local access port.
  case local = 1
  /// Learned from a decapsulated frame (inner source MAC -> outer source VTEP).
  case decap = 2
  /// Installed by the control plane (BGP EVPN or the site peer protocol); does not age.
  case control = 3

  public var name: String {
    switch self {
    case .static: return "static"
    case .local: return "local"
    case .decap: return "decap"
    case .control: return "control"
    }
  }
}

/// The FDB key: bridge domain index (16 bits) above a 48-bit MAC, in one `UInt64`.
///
/// Bridge domain indices start at 1, so that key 0 can mark an empty slot.
@frozen public struct FDBKey: Hashable, Sendable {
  public let rawValue: UInt64
  @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
  @inlinable public init(bridgeDomain: UInt16, mac: UInt64) {
    rawValue = UInt64(truncatingIfNeeded: bridgeDomain) &<< 48 | (mac & 0xFFFF_FFFF_FFFF)
  }
  @inlinable public var bridgeDomain: UInt16 { UInt16(truncatingIfNeeded: rawValue &>> 48) }
  @inlinable public var mac: MACAddress { MACAddress(rawValue: rawValue) }
}

/// An FDB value packed into one `UInt64`, so that readers load it in one instruction and
/// the age stamp can be refreshed with one compare-and-swap.
///
/// | bits  | field                                            |
/// |-------|--------------------------------------------------|
/// | 0-15  | target index (port member or VTEP)               |
/// | 16-17 | target kind (`FDBTargetKind`; 0 = no entry)      |
/// | 18-19 | origin (`FDBOrigin`)                             |
/// | 20-27 | bridge-domain flush generation                   |
/// | 28-35 | target flush generation                          |
/// | 36-63 | last-seen stamp, seconds                         |
///
/// The two flush generations make flushing a bridge domain, port or VTEP O(1): bumping
/// the current generation makes every entry stamped with the old one invisible at once
/// (as VPP's l2fib does with its sequence numbers); the ager reclaims them later.
@frozen public struct FDBEntry: Equatable, Sendable {
  public var rawValue: UInt64
  @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

  @inlinable public init(
    kind: FDBTargetKind, index: UInt16, origin: FDBOrigin, domainGeneration: UInt8,
    targetGeneration: UInt8, stamp: UInt32
  ) {
    var value = UInt64(index) | kind.rawValue &<< 16 | origin.rawValue &<< 18
    value |= UInt64(domainGeneration) &<< 20 | UInt64(targetGeneration) &<< 28
    value |= (UInt64(stamp) & FDBEntry.stampMask) &<< 36
    rawValue = value
  }

  public static let stampMask: UInt64 = (1 << 28) - 1
  public static let none = FDBEntry(rawValue: 0)

  @inlinable public var isPresent: Bool { rawValue & 0x3_0000 != 0 }
  @inlinable public var index: UInt16 { UInt16(truncatingIfNeeded: rawValue) }
  @inlinable public var kindBits: UInt64 { (rawValue &>> 16) & 3 }
  public var kind: FDBTargetKind? { FDBTargetKind(rawValue: kindBits) }
  @inlinable public var origin: FDBOrigin { FDBOrigin(rawValue: (rawValue &>> 18) & 3)! }
  @inlinable public var domainGeneration: UInt8 { UInt8(truncatingIfNeeded: rawValue &>> 20) }
  @inlinable public var targetGeneration: UInt8 { UInt8(truncatingIfNeeded: rawValue &>> 28) }
  @inlinable public var stamp: UInt32 { UInt32(truncatingIfNeeded: rawValue &>> 36) }
  /// Kind and index together: equal for two entries that forward to the same place.
  @inlinable public var target: UInt64 { rawValue & 0x3_FFFF }

  @inlinable public func withStamp(_ stamp: UInt32) -> FDBEntry {
    FDBEntry(rawValue: rawValue & ((1 << 36) - 1) | (UInt64(stamp) & FDBEntry.stampMask) &<< 36)
  }
}
