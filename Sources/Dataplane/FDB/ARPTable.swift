/// IPv4 -> MAC bindings per bridge domain, for ARP suppression: a second, separate
/// `ForwardingTable` instance, so it inherits the FDB's thread-safety contract (packet
/// workers read lock-free under the bucket seqlock; writers, all off the packet path,
/// serialise on the table's writer lock).
///
/// ## Encoding
/// - **Key**: bridge domain index (16 bits) << 48 | IPv4 address (low 32 bits). Domain
///   indices start at 1, so a key is never 0 (the table's empty-slot marker).
/// - **Value** (stored as the raw word of an `FDBEntry`, whose field accessors do not
///   apply here):
///
/// | bits  | field                                                     |
/// |-------|-----------------------------------------------------------|
/// | 0-47  | MAC address the IP is bound to                            |
/// | 48-60 | zero                                                      |
/// | 61    | conflict: the IP is claimed by several MACs (see below)   |
/// | 62    | origin: 1 = control plane (EVPN MAC/IP route), 0 = other  |
/// | 63    | present (always 1 for a stored binding; an absent key reads 0) |
///
/// ## Conflicts
/// While the control plane reports the IP bound to different MACs (an address conflict,
/// `setConflict`), the entry carries the conflict bit: ARP suppression does not answer
/// for it, local ARP packets do not re-learn it, and `install`, `exchange` and `remove`
/// leave it alone until `clearConflict` says which binding, if any, remains.
///
/// The wrapped table's per-origin accounting reads bits 18-19 of the value, i.e. MAC
/// bits here: its `counts()` are meaningless for this instance; use `count`.
public final class ARPTable: @unchecked Sendable {
  public static let presentBit: UInt64 = 1 << 63
  public static let controlBit: UInt64 = 1 << 62
  public static let conflictBit: UInt64 = 1 << 61
  public static let macMask: UInt64 = 0xFFFF_FFFF_FFFF

  @usableFromInline let table: ForwardingTable

  public init(capacity: Int) {
    table = ForwardingTable(capacity: capacity)
  }

  /// Bindings stored.
  public var count: Int { table.count }
  /// Bytes of table memory.
  public var memoryBytes: Int { table.memoryBytes }

  @inlinable @inline(__always)
  public static func key(domain: UInt16, ipv4: UInt32) -> UInt64 {
    UInt64(truncatingIfNeeded: domain) &<< 48 | UInt64(ipv4)
  }

  // MARK: Readers (packet path)

  /// The raw value for (domain, IPv4): `presentBit | [controlBit] | MAC`, or 0 when
  /// unknown. Lock-free, allocation-free.
  @inlinable @inline(__always)
  public func lookup(domain: UInt16, ipv4: UInt32) -> UInt64 {
    var slot = 0
    return table.lookup(Self.key(domain: domain, ipv4: ipv4), slot: &slot).rawValue
  }

  /// The MAC bound to (domain, IPv4), if any (also while the IP is in conflict).
  public func mac(domain: UInt16, ipv4: UInt32) -> MACAddress? {
    let value = lookup(domain: domain, ipv4: ipv4)
    return value & Self.presentBit != 0 ? MACAddress(rawValue: value & Self.macMask) : nil
  }

  /// Whether (domain, IPv4) is marked as an address conflict.
  public func isConflicted(domain: UInt16, ipv4: UInt32) -> Bool {
    lookup(domain: domain, ipv4: ipv4) & Self.conflictBit != 0
  }

  // MARK: Writers (control side)

  /// Binds (domain, IPv4) to `mac`. A control-plane binding replaces anything; a
  /// non-control one never replaces a control-plane binding. Returns whether stored.
  @discardableResult
  public func install(domain: UInt16, ipv4: UInt32, mac: MACAddress, control: Bool) -> Bool {
    let value = Self.presentBit | (control ? Self.controlBit : 0) | (mac.rawValue & Self.macMask)
    var stored = false
    table.update(FDBKey(rawValue: Self.key(domain: domain, ipv4: ipv4))) { existing in
      if let existing, existing.rawValue & Self.conflictBit != 0 { return .keep }
      if let existing, existing.rawValue & Self.controlBit != 0, !control { return .keep }
      stored = true
      return .set(FDBEntry(rawValue: value))
    }
    return stored
  }

  /// Like `install`, and returns the raw value the binding had before (0 when there
  /// was none), so the caller can tell a new or changed binding from a refresh.
  @discardableResult
  public func exchange(domain: UInt16, ipv4: UInt32, mac: MACAddress, control: Bool) -> (
    stored: Bool, previous: UInt64
  ) {
    let value = Self.presentBit | (control ? Self.controlBit : 0) | (mac.rawValue & Self.macMask)
    var stored = false
    var previous: UInt64 = 0
    table.update(FDBKey(rawValue: Self.key(domain: domain, ipv4: ipv4))) { existing in
      previous = existing?.rawValue ?? 0
      if let existing, existing.rawValue & Self.conflictBit != 0 { return .keep }
      if let existing, existing.rawValue & Self.controlBit != 0, !control { return .keep }
      stored = true
      return .set(FDBEntry(rawValue: value))
    }
    return (stored, previous)
  }

  /// Removes the binding of (domain, IPv4); when `mac` is given, only if the IP is
  /// still bound to that MAC (a withdrawn route must not remove a newer binding). A
  /// conflicted entry stays (`clearConflict` settles it).
  public func remove(domain: UInt16, ipv4: UInt32, mac: MACAddress? = nil) {
    table.update(FDBKey(rawValue: Self.key(domain: domain, ipv4: ipv4))) { existing in
      guard let existing, existing.rawValue & Self.conflictBit == 0 else { return .keep }
      if let mac, existing.rawValue & Self.macMask != mac.rawValue & Self.macMask { return .keep }
      return .remove
    }
  }

  /// Marks (domain, IPv4) as an address conflict: the binding it holds stays (for
  /// `show arp`) but is no longer answered for; without one, `mac` is stored (as a
  /// control-plane binding) to carry the mark.
  public func setConflict(domain: UInt16, ipv4: UInt32, mac: MACAddress) {
    table.update(FDBKey(rawValue: Self.key(domain: domain, ipv4: ipv4))) { existing in
      if let existing {
        return .set(FDBEntry(rawValue: existing.rawValue | Self.conflictBit))
      }
      return .set(
        FDBEntry(
          rawValue: Self.presentBit | Self.controlBit | Self.conflictBit | (mac.rawValue & Self.macMask)))
    }
  }

  /// Ends the conflict of (domain, IPv4): the entry becomes `binding` (the one left, a
  /// control-plane binding when `control`), or goes when none is left.
  public func clearConflict(domain: UInt16, ipv4: UInt32, binding: MACAddress?, control: Bool) {
    table.update(FDBKey(rawValue: Self.key(domain: domain, ipv4: ipv4))) { existing in
      guard let binding else { return existing == nil ? .keep : .remove }
      return .set(
        FDBEntry(
          rawValue: Self.presentBit | (control ? Self.controlBit : 0) | (binding.rawValue & Self.macMask)))
    }
  }

  /// Removes every binding of a bridge domain (the domain was removed or reindexed).
  @discardableResult
  public func removeAll(domain: UInt16) -> Int {
    table.removeAll { key, _ in key.bridgeDomain == domain }
  }

  /// Removes every binding for which `shouldRemove(domain, IPv4, MAC, control)` holds.
  @discardableResult
  public func removeAll(where shouldRemove: (UInt16, UInt32, MACAddress, Bool) -> Bool) -> Int {
    table.removeAll { key, entry in
      shouldRemove(
        key.bridgeDomain, UInt32(truncatingIfNeeded: key.rawValue),
        MACAddress(rawValue: entry.rawValue & Self.macMask), entry.rawValue & Self.controlBit != 0)
    }
  }

  /// Every binding: (domain, IPv4, MAC, installed by the control plane).
  public func forEach(_ body: (UInt16, UInt32, MACAddress, Bool) -> Void) {
    table.forEach { key, entry in
      body(
        key.bridgeDomain, UInt32(truncatingIfNeeded: key.rawValue),
        MACAddress(rawValue: entry.rawValue & Self.macMask), entry.rawValue & Self.controlBit != 0)
    }
  }

  /// Every binding with its raw value (`presentBit`, `controlBit`, `conflictBit`, MAC).
  public func forEachRaw(_ body: (UInt16, UInt32, UInt64) -> Void) {
    table.forEach { key, entry in
      body(key.bridgeDomain, UInt32(truncatingIfNeeded: key.rawValue), entry.rawValue)
    }
  }
}
