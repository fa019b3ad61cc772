import Synchronization

/// IP -> MAC bindings per bridge domain, for ARP suppression (IPv4) and neighbour
/// discovery suppression (IPv6): a second, separate `ForwardingTable` instance, so it
/// inherits the FDB's thread-safety contract (packet workers read lock-free under the
/// bucket seqlock; writers, all off the packet path, serialise on the table's writer lock).
///
/// ## Encoding
/// - **Key**: bridge domain index (16 bits) << 48 | IPv4 address (low 32 bits), or for
///   IPv6, bit 47 set and the 128-bit address folded (mixed) into bits 0-46. Domain
///   indices start at 1, so a key is never 0 (the table's empty-slot marker). Two IPv6
///   addresses may fold to the same key: the writers remember which address owns each
///   IPv6 key and refuse a binding of another address for it (`collisions` counts them);
///   that address is then simply not suppressed (its requests are forwarded). The packet
///   path cannot read the owner (it is behind the writers' lock), so an IPv6 value also
///   carries 13 check bits, mixed from the address another way (`check`): a lookup for
///   another address folding to the key finds them different and reads nothing, unless
///   the 13 bits agree as well (one chance in 8192 for two addresses that fold alike,
///   themselves one chance in 2^47 unless made to).
/// - **Value** (stored as the raw word of an `FDBEntry`, whose field accessors do not
///   apply here):
///
/// | bits  | field                                                     |
/// |-------|-----------------------------------------------------------|
/// | 0-47  | MAC address the IP is bound to                            |
/// | 48-60 | IPv6: the address's check bits (`check`); IPv4: zero       |
/// | 61    | conflict: the IP is claimed by several MACs (see below)   |
/// | 62    | origin: 1 = control plane (EVPN MAC/IP route), 0 = other  |
/// | 63    | present (always 1 for a stored binding; an absent key reads 0) |
///
/// ## Conflicts
/// While the control plane reports the IP bound to different MACs (an address conflict,
/// `setConflict`), the entry carries the conflict bit: suppression does not answer for
/// it, local ARP and neighbour discovery packets do not re-learn it, and `exchange` and
/// `remove` leave it alone until `clearConflict` says which binding, if any, remains.
///
/// The wrapped table's per-origin accounting reads bits 18-19 of the value, i.e. MAC
/// bits here: its `counts()` are meaningless for this instance; use `count`.
// @unchecked: wraps a `ForwardingTable` (its contract) plus the IPv6 side table under its lock.
public final class ARPTable: @unchecked Sendable {
  public static let presentBit: UInt64 = 1 << 63
  public static let controlBit: UInt64 = 1 << 62
  public static let conflictBit: UInt64 = 1 << 61
  public static let macMask: UInt64 = 0xFFFF_FFFF_FFFF
  /// Set in the keys of IPv6 bindings.
  public static let ipv6KeyBit: UInt64 = 1 << 47
  /// The check bits of an IPv6 binding's value.
  public static let checkMask: UInt64 = 0x1FFF << 48

  @usableFromInline let table: ForwardingTable
  /// The address owning each IPv6 key (writers only; see "Encoding").
  private let owners = Mutex<[UInt64: IPAddress]>([:])
  private let collisionCount = Atomic<Int>(0)

  public init(capacity: Int) {
    table = ForwardingTable(capacity: capacity)
  }

  /// Bindings stored.
  public var count: Int { table.count }
  /// Bytes of table memory.
  public var memoryBytes: Int { table.memoryBytes }
  /// IPv6 bindings refused because another address owns their folded key.
  public var collisions: Int { collisionCount.load(ordering: .relaxed) }

  @inlinable @inline(__always)
  public static func key(domain: UInt16, ipv4: UInt32) -> UInt64 {
    UInt64(truncatingIfNeeded: domain) &<< 48 | UInt64(ipv4)
  }

  /// The key of (domain, IPv6): the address mixed into 47 bits (the same everywhere, so
  /// the packet path and the writers agree).
  @inlinable @inline(__always)
  public static func key(domain: UInt16, ipv6High: UInt64, ipv6Low: UInt64) -> UInt64 {
    var mixed = ipv6High &* 0x9E37_79B9_7F4A_7C15 ^ ipv6Low
    mixed = (mixed ^ mixed &>> 31) &* 0xBF58_476D_1CE4_E5B9
    mixed ^= mixed &>> 29
    return UInt64(truncatingIfNeeded: domain) &<< 48 | ipv6KeyBit | mixed & (ipv6KeyBit &- 1)
  }

  /// 13 bits of the IPv6 address mixed unlike the key (the halves' roles swapped, other
  /// constants), in place for a value (bits 48-60).
  @inlinable @inline(__always)
  public static func check(ipv6High: UInt64, ipv6Low: UInt64) -> UInt64 {
    var mixed = ipv6Low &* 0xD6E8_FEB8_6659_FD93 ^ ipv6High
    mixed = (mixed ^ mixed &>> 32) &* 0x94D0_49BB_1331_11EB
    return (mixed &>> 51) &<< 48
  }

  static func check(_ ip: IPAddress) -> UInt64 {
    guard case .v6(let high, let low) = ip else { return 0 }
    return check(ipv6High: high, ipv6Low: low)
  }

  /// A stored binding's value: present, the flags, the address's check bits, the MAC.
  /// Every writer builds its value here, so that none leaves the check bits out.
  static func value(ip: IPAddress, mac: MACAddress, control: Bool, conflict: Bool = false) -> UInt64 {
    presentBit | (control ? controlBit : 0) | (conflict ? conflictBit : 0) | check(ip)
      | (mac.rawValue & macMask)
  }

  static func key(domain: UInt16, ip: IPAddress) -> UInt64 {
    switch ip {
    case .v4(let address): return key(domain: domain, ipv4: address)
    case .v6(let high, let low): return key(domain: domain, ipv6High: high, ipv6Low: low)
    }
  }

  // MARK: Readers (packet path)

  /// The raw value for (domain, IPv4): `presentBit | [controlBit] | [conflictBit] | MAC`,
  /// or 0 when unknown. Lock-free, allocation-free.
  @inlinable @inline(__always)
  public func lookup(domain: UInt16, ipv4: UInt32) -> UInt64 {
    var slot = 0
    return table.lookup(Self.key(domain: domain, ipv4: ipv4), slot: &slot).rawValue
  }

  /// The raw value for (domain, IPv6), as `lookup(domain:ipv4:)`. A value stored for
  /// another address whose key folds alike reads 0 here, unless its check bits agree too
  /// (see "Encoding").
  @inlinable @inline(__always)
  public func lookup(domain: UInt16, ipv6High: UInt64, ipv6Low: UInt64) -> UInt64 {
    var slot = 0
    let value = table.lookup(Self.key(domain: domain, ipv6High: ipv6High, ipv6Low: ipv6Low), slot: &slot)
      .rawValue
    return value & Self.checkMask == Self.check(ipv6High: ipv6High, ipv6Low: ipv6Low) ? value : 0
  }

  /// The raw value for (domain, ip), 0 when unknown (or another IPv6 address owns the key).
  public func value(domain: UInt16, ip: IPAddress) -> UInt64 {
    guard let key = existingKey(domain: domain, ip: ip) else { return 0 }
    var slot = 0
    return table.lookup(key, slot: &slot).rawValue
  }

  /// The MAC bound to (domain, ip), if any (also while the IP is in conflict).
  public func mac(domain: UInt16, ip: IPAddress) -> MACAddress? {
    let value = value(domain: domain, ip: ip)
    return value & Self.presentBit != 0 ? MACAddress(rawValue: value & Self.macMask) : nil
  }

  /// The MAC bound to (domain, IPv4), if any.
  public func mac(domain: UInt16, ipv4: UInt32) -> MACAddress? { mac(domain: domain, ip: .v4(ipv4)) }

  /// Whether (domain, ip) is marked as an address conflict.
  public func isConflicted(domain: UInt16, ip: IPAddress) -> Bool {
    value(domain: domain, ip: ip) & Self.conflictBit != 0
  }

  // MARK: Keys (writers)

  /// The key a writer stores (domain, ip) under: IPv4 directly; IPv6 when no other
  /// address owns its folded key with a binding stored (it becomes the owner), else nil
  /// (counted in `collisions`).
  private func claimKey(domain: UInt16, ip: IPAddress) -> UInt64? {
    let key = Self.key(domain: domain, ip: ip)
    guard !ip.isIPv4 else { return key }
    return owners.withLock { owners in
      if let owner = owners[key], owner != ip {
        var slot = 0
        if table.lookup(key, slot: &slot).rawValue & Self.presentBit != 0 {
          collisionCount.add(1, ordering: .relaxed)
          return nil
        }
      }
      owners[key] = ip
      return key
    }
  }

  /// The key (domain, ip) is stored under, nil for an IPv6 address that does not own it.
  private func existingKey(domain: UInt16, ip: IPAddress) -> UInt64? {
    let key = Self.key(domain: domain, ip: ip)
    guard !ip.isIPv4 else { return key }
    return owners.withLock { $0[key] == ip } ? key : nil
  }

  /// The IP a stored key binds (IPv4 from the key; IPv6 from its owner).
  private func address(ofKey key: UInt64, owners: [UInt64: IPAddress]) -> IPAddress? {
    key & Self.ipv6KeyBit == 0 ? .v4(UInt32(truncatingIfNeeded: key)) : owners[key]
  }

  // MARK: Writers (control side)

  /// Binds (domain, ip) to `mac`. A control-plane binding replaces anything; a
  /// non-control one never replaces a control-plane binding; a conflicted entry stays.
  /// Returns whether stored and the raw value the binding had before (0 when there was
  /// none), so the caller can tell a new or changed binding from a refresh.
  @discardableResult
  public func exchange(domain: UInt16, ip: IPAddress, mac: MACAddress, control: Bool) -> (
    stored: Bool, previous: UInt64
  ) {
    guard let key = claimKey(domain: domain, ip: ip) else { return (false, 0) }
    let value = Self.value(ip: ip, mac: mac, control: control)
    var stored = false
    var previous: UInt64 = 0
    table.update(FDBKey(rawValue: key)) { existing in
      previous = existing?.rawValue ?? 0
      if let existing, existing.rawValue & Self.conflictBit != 0 { return .keep }
      if let existing, existing.rawValue & Self.controlBit != 0, !control { return .keep }
      stored = true
      return .set(FDBEntry(rawValue: value))
    }
    return (stored, previous)
  }

  /// `exchange` for IPv4, returning only whether it stored.
  @discardableResult
  public func install(domain: UInt16, ipv4: UInt32, mac: MACAddress, control: Bool) -> Bool {
    exchange(domain: domain, ip: .v4(ipv4), mac: mac, control: control).stored
  }

  /// Removes the binding of (domain, ip); when `mac` is given, only if the IP is still
  /// bound to that MAC (a withdrawn route must not remove a newer binding). A
  /// conflicted entry stays (`clearConflict` settles it).
  public func remove(domain: UInt16, ip: IPAddress, mac: MACAddress? = nil) {
    guard let key = existingKey(domain: domain, ip: ip) else { return }
    table.update(FDBKey(rawValue: key)) { existing in
      guard let existing, existing.rawValue & Self.conflictBit == 0 else { return .keep }
      if let mac, existing.rawValue & Self.macMask != mac.rawValue & Self.macMask { return .keep }
      return .remove
    }
  }

  /// Marks (domain, ip) as an address conflict: the binding it holds stays (for
  /// `show arp`) but is no longer answered for; without one, `mac` is stored (as a
  /// control-plane binding) to carry the mark.
  public func setConflict(domain: UInt16, ip: IPAddress, mac: MACAddress) {
    guard let key = claimKey(domain: domain, ip: ip) else { return }
    table.update(FDBKey(rawValue: key)) { existing in
      if let existing {
        return .set(FDBEntry(rawValue: existing.rawValue | Self.conflictBit))
      }
      return .set(FDBEntry(rawValue: Self.value(ip: ip, mac: mac, control: true, conflict: true)))
    }
  }

  /// Ends the conflict of (domain, ip): the entry becomes `binding` (the one left, a
  /// control-plane binding when `control`), or goes when none is left.
  public func clearConflict(domain: UInt16, ip: IPAddress, binding: MACAddress?, control: Bool) {
    guard let key = claimKey(domain: domain, ip: ip) else { return }
    table.update(FDBKey(rawValue: key)) { existing in
      guard let binding else { return existing == nil ? .keep : .remove }
      return .set(FDBEntry(rawValue: Self.value(ip: ip, mac: binding, control: control)))
    }
  }

  /// Removes every binding of a bridge domain (the domain was removed or reindexed).
  @discardableResult
  public func removeAll(domain: UInt16) -> Int {
    table.removeAll { key, _ in key.bridgeDomain == domain }
  }

  /// Removes every binding for which `shouldRemove(domain, IP, MAC, control)` holds.
  @discardableResult
  public func removeAll(where shouldRemove: (UInt16, IPAddress, MACAddress, Bool) -> Bool) -> Int {
    let owners = self.owners.withLock { $0 }
    return table.removeAll { key, entry in
      guard let ip = address(ofKey: key.rawValue, owners: owners) else { return false }
      return shouldRemove(
        key.bridgeDomain, ip, MACAddress(rawValue: entry.rawValue & Self.macMask),
        entry.rawValue & Self.controlBit != 0)
    }
  }

  /// Every binding: (domain, IP, raw value with `presentBit`, `controlBit`,
  /// `conflictBit` and the MAC).
  public func forEach(_ body: (UInt16, IPAddress, UInt64) -> Void) {
    let owners = self.owners.withLock { $0 }
    table.forEach { key, entry in
      guard let ip = address(ofKey: key.rawValue, owners: owners) else { return }
      body(key.bridgeDomain, ip, entry.rawValue)
    }
  }
}
