import Dataplane
import NIOCore

/// Why a peer could not be added, changed or removed.
public enum PeerChangeError: Error, Equatable, CustomStringConvertible {
  /// A peer with this name already exists.
  case duplicateName(String)
  /// No peer has this name.
  case unknownPeer(String)
  /// The configuration cannot be used (bad address, key too long...).
  case invalid(String)
  /// The speaker is shutting down.
  case shuttingDown
  /// Every peer index (65535) is taken.
  case tooManyPeers

  public var description: String {
    switch self {
    case .duplicateName(let name): return "a peer named \(name) exists already"
    case .unknownPeer(let name): return "no peer named \(name)"
    case .invalid(let reason): return reason
    case .shuttingDown: return "the speaker is shutting down"
    case .tooManyPeers: return "too many peers"
    }
  }
}

/// Peers added, changed and removed on a running speaker (inter-site sessions brought
/// up on demand), and per-peer export filters.
extension EVPNSpeaker {
  /// Adds a peer. On a started speaker it starts at once (connecting unless passive);
  /// otherwise `start()` starts it. With a password, the listener gets the peer's TCP
  /// MD5 key too, so its incoming connections are accepted. Its export filter
  /// (`exportVNIs`) decides which VNIs' routes it is sent.
  public func addPeer(_ peer: PeerConfiguration) async throws {
    try await addPeerFuture(peer).get()
  }

  /// Removes a peer: Cease/Peer De-configured (RFC 4486) on its connections, and the
  /// routes it sent leave the RIB and the sink at once, whatever its stale-route policy
  /// (no graceful restart for a peer that is gone). Our own routes stay advertised to
  /// the other peers. The listener's MD5 key for its address goes with it, unless
  /// another peer at that address has a password.
  public func removePeer(name: String) async throws {
    try await removePeerFuture(name: name).get()
  }

  /// Replaces the configuration of the peer named `peer.name`. When only `exportVNIs`
  /// differs, the session stays up and the filter changes as with `setExportVNIs`;
  /// otherwise the peer is removed (Cease, its routes dropped) and added again.
  public func updatePeer(_ peer: PeerConfiguration) async throws {
    try await updatePeerFuture(peer).get()
  }

  /// Changes a peer's export filter (nil: every VNI, or none when the speaker's
  /// `exportWithoutFilter` is false). VNIs it no longer allows are withdrawn from the
  /// peer (our type-2 and type-3 routes); VNIs it newly allows are advertised to it.
  public func setExportVNIs(peer name: String, _ vnis: Set<UInt32>?) async throws {
    try await setExportVNIsFuture(peer: name, vnis).get()
  }

  // MARK: futures (for blocking callers)

  func addPeerFuture(_ peer: PeerConfiguration) -> EventLoopFuture<Void> {
    eventLoop.flatSubmit { self.addPeerNow(peer) }
  }

  func removePeerFuture(name: String) -> EventLoopFuture<Void> {
    eventLoop.flatSubmit { self.removePeerNow(name: name) }
  }

  func updatePeerFuture(_ configuration: PeerConfiguration) -> EventLoopFuture<Void> {
    eventLoop.flatSubmit {
      guard let peer = self.peer(named: configuration.name) else {
        return self.eventLoop.makeFailedFuture(PeerChangeError.unknownPeer(configuration.name))
      }
      var unchanged = peer.configuration
      unchanged.exportVNIs = configuration.exportVNIs
      if unchanged == configuration {
        self.applyExportVNIs(configuration.exportVNIs, to: peer)
        return self.eventLoop.makeSucceededVoidFuture()
      }
      if let problem = self.problem(with: configuration) { return self.eventLoop.makeFailedFuture(problem) }
      return self.removePeerNow(name: configuration.name).flatMap { self.addPeerNow(configuration) }
    }
  }

  func setExportVNIsFuture(peer name: String, _ vnis: Set<UInt32>?) -> EventLoopFuture<Void> {
    eventLoop.submit {
      guard let peer = self.peer(named: name) else { throw PeerChangeError.unknownPeer(name) }
      self.applyExportVNIs(vnis, to: peer)
    }
  }

  // MARK: on the event loop

  private func problem(with configuration: PeerConfiguration) -> PeerChangeError? {
    if isShuttingDown { return .shuttingDown }
    if configuration.name.isEmpty { return .invalid("empty peer name") }
    if IPAddress(configuration.address) == nil {
      return .invalid("peer \(configuration.name): bad address \(configuration.address)")
    }
    if let local = configuration.localAddress, IPAddress(local) == nil {
      return .invalid("peer \(configuration.name): bad local address \(local)")
    }
    if let password = configuration.password, password.utf8.count > 80 {
      return .invalid("peer \(configuration.name): TCP MD5 key longer than 80 octets")
    }
    if configuration.port == 0 { return .invalid("peer \(configuration.name): port 0") }
    return nil
  }

  private func addPeerNow(_ configuration: PeerConfiguration) -> EventLoopFuture<Void> {
    if let problem = problem(with: configuration) { return eventLoop.makeFailedFuture(problem) }
    guard peer(named: configuration.name) == nil else {
      return eventLoop.makeFailedFuture(PeerChangeError.duplicateName(configuration.name))
    }
    // The lowest free index: a removed peer's routes are gone from the RIB, and its
    // late callbacks are ignored (`BGPPeer.isRemoved`), so its index can be reused.
    let used = Set(peers.map(\.index))
    guard let index = (1...UInt16.max).first(where: { !used.contains($0) }) else {
      return eventLoop.makeFailedFuture(PeerChangeError.tooManyPeers)
    }
    // Key the listener first, so the peer's first (signed) SYN is answered.
    let keyed: EventLoopFuture<Void> =
      configuration.password.flatMap { password in
        serverChannel.map { TCPMD5.configure($0, peerAddress: configuration.address, password: password) }
      } ?? eventLoop.makeSucceededVoidFuture()
    return keyed.flatMapThrowing {
      // Re-checked: the key may have been set asynchronously.
      if self.isShuttingDown { throw PeerChangeError.shuttingDown }
      guard self.peer(named: configuration.name) == nil else {
        throw PeerChangeError.duplicateName(configuration.name)
      }
      let peer = BGPPeer(configuration: configuration, index: index, speaker: self)
      self.peers.append(peer)
      self.peerNames[index] = configuration.name
      self.emit(.peerAdded(peer: configuration.name))
      if self.isStarted { peer.start() }
    }
  }

  private func removePeerNow(name: String) -> EventLoopFuture<Void> {
    guard let position = peers.firstIndex(where: { $0.configuration.name == name }) else {
      return eventLoop.makeFailedFuture(PeerChangeError.unknownPeer(name))
    }
    let peer = peers[position]
    // Cease: an established session's routes go as the connection closes...
    peer.remove(notification: .peerDeconfigured)
    // ...and so do stale ones kept from an earlier session.
    rib.sink?.beginBatch()
    _ = rib.removeAll(peer: peer.index)
    rib.sink?.endBatch()
    peers.remove(at: position)
    peerNames[peer.index] = nil
    emit(.peerRemoved(peer: name))
    // Its index may go to a peer added later, which is waited for afresh.
    restart.peersSynchronised.remove(peer.index)
    checkSelectionDeferral()
    let address = IPAddress(peer.configuration.address)
    guard peer.configuration.password != nil, let server = serverChannel,
      !peers.contains(where: {
        $0.configuration.password != nil && IPAddress($0.configuration.address) == address
      })
    else { return eventLoop.makeSucceededVoidFuture() }
    // A failure here (no key: ENOENT) changes nothing for the caller.
    return TCPMD5.remove(server, peerAddress: peer.configuration.address).recover { _ in }
  }

  /// Withdraws from `peer` the VNIs the new filter drops (while the old filter still
  /// lets them through), then advertises the VNIs it adds.
  func applyExportVNIs(_ vnis: Set<UInt32>?, to peer: BGPPeer) {
    let configured = Set(vniSettings.keys)
    let before = configured.filter { peer.exports($0) }
    let after = configured.filter { vnis?.contains($0) ?? configuration.exportWithoutFilter }
    let dropped = before.subtracting(after)
    if !dropped.isEmpty { withdrawLocalRoutes(of: dropped, from: peer) }
    peer.setExportVNIs(vnis)
    let added = after.subtracting(before)
    if !added.isEmpty { sendAllRoutes(to: peer, vnis: added) }
    applyImportFilter(of: peer, dropped: dropped, added: added)
  }
}
