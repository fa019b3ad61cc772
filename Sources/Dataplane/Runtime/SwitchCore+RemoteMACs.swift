/// Bulk form of `installRemoteMAC` / `removeRemoteMAC` for the control plane: a whole
/// UPDATE's (or a whole session's) routes under one hold of the control lock (VNIs and
/// VTEPs resolved once, no reload in between) and one hold of the FDB writer lock per
/// chunk.
extension SwitchCore {
  /// One control-plane FDB change: `vtep` set installs `vni`/`mac` -> `vtep`; nil removes
  /// the control entry.
  public struct RemoteMACChange: Sendable, Equatable {
    public var vni: UInt32
    public var mac: MACAddress
    public var vtep: IPAddress?

    public init(vni: UInt32, mac: MACAddress, vtep: IPAddress?) {
      self.vni = vni
      self.mac = mac
      self.vtep = vtep
    }

    public static func install(vni: UInt32, mac: MACAddress, vtep: IPAddress) -> RemoteMACChange {
      RemoteMACChange(vni: vni, mac: mac, vtep: vtep)
    }

    public static func remove(vni: UInt32, mac: MACAddress) -> RemoteMACChange {
      RemoteMACChange(vni: vni, mac: mac, vtep: nil)
    }
  }

  /// Changes applied per hold of the FDB writer lock: learning waits at most this long.
  static let remoteMACChunk = 1024

  /// Applies `changes` in order, with the semantics of `installRemoteMAC(overrideLocal:
  /// true)` and `removeRemoteMAC` one by one: a static entry is never replaced, only
  /// control entries are removed, changes for unknown VNIs are ignored. Readers see each
  /// entry complete (the FDB's seqlock); they may see a prefix of the changes applied.
  /// Returns how many installs were stored.
  @discardableResult
  public func applyRemoteMACs(_ changes: [RemoteMACChange]) -> Int {
    guard !changes.isEmpty else { return 0 }
    return control.withLock { state in applyLocked(changes, &state) }
  }

  private func applyLocked(_ changes: [RemoteMACChange], _ state: inout ControlState) -> Int {
    // VTEP indices (nearly always one address per batch).
    var vtepIndices = [UInt16](repeating: 0, count: changes.count)
    do {
      var added = false
      var lastAddress: IPAddress?
      var lastIndex: UInt16 = 0
      for (position, change) in changes.enumerated() {
        guard let vtep = change.vtep else { continue }
        if vtep != lastAddress {
          if state.vtepByAddress[vtep] == nil { added = true }
          lastIndex = Self.vtepIndex(&state, vtep)
          lastAddress = vtep
        }
        vtepIndices[position] = lastIndex
      }
      if added { publishLocked(&state) }
    }
    var domains = [UInt16](repeating: 0, count: changes.count)
    var lastVNI: UInt32?
    var lastDomain: UInt16 = 0
    for (position, change) in changes.enumerated() {
      if change.vni != lastVNI {
        lastDomain = state.domainByVNI[change.vni] ?? 0
        lastVNI = change.vni
      }
      domains[position] = lastDomain
    }
    let fdb = self.fdb
    let prefetchDistance = 8
    for position in 0..<min(prefetchDistance, changes.count) where domains[position] != 0 {
      fdb.prefetch(FDBKey(bridgeDomain: domains[position], mac: changes[position].mac.rawValue).rawValue)
    }
    var installed = 0
    var start = 0
    while start < changes.count {
      let end = min(changes.count, start + Self.remoteMACChunk)
      fdb.batch { access in
        for position in start..<end {
          let ahead = position + prefetchDistance
          if ahead < changes.count, domains[ahead] != 0 {
            fdb.prefetch(FDBKey(bridgeDomain: domains[ahead], mac: changes[ahead].mac.rawValue).rawValue)
          }
          let domain = domains[position]
          guard domain != 0 else { continue }
          let change = changes[position]
          let key = FDBKey(bridgeDomain: domain, mac: change.mac.rawValue)
          guard change.vtep != nil else {
            access.update(key) { existing in existing?.origin == .control ? .remove : .keep }
            continue
          }
          let index = vtepIndices[position]
          let (domainGeneration, targetGeneration) = fdb.currentGenerations(
            bridgeDomain: domain, kind: .vtep, index: index)
          let entry = FDBEntry(
            kind: .vtep, index: index, origin: .control, domainGeneration: domainGeneration,
            targetGeneration: targetGeneration, stamp: 0)
          access.update(key) { existing in
            if let existing, existing.isPresent, existing.origin == .static,
              fdb.isCurrent(existing, bridgeDomain: domain)
            {
              return .keep
            }
            installed += 1
            return .set(entry)
          }
        }
      }
      start = end
    }
    return installed
  }
}
