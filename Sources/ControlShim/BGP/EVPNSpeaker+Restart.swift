import NIOCore

/// Where a restarting speaker is in RFC 4724 section 4.1. A speaker that did not
/// restart starts (and stays) past every step.
struct RestartProgress {
  /// This start is a restart (`SpeakerConfiguration.restarting`).
  let restarted: Bool
  /// Our OPENs carry the Restart State bit: until the local state went out and
  /// selection deferral ended. A session that comes up later is no restart for its peer.
  var restartState: Bool
  /// The local state (restored MACs and bindings) is in the RIB, so End-of-RIB may go:
  /// sent before it, it would make the helpers sweep the routes still to be re-advertised.
  var localStateRestored: Bool
  /// Received routes are held from the sink (`DeferredRouteSink`).
  var selectionDeferred: Bool
  var deferralTimer: Scheduled<Void>?
  /// Peers that need not be waited for any more (End-of-RIB received, or no End-of-RIB
  /// to come), by index.
  var peersSynchronised: Set<UInt16> = []

  init(restarting: Bool) {
    restarted = restarting
    restartState = restarting
    localStateRestored = !restarting
    selectionDeferred = restarting
  }
}

/// The restarting-speaker side of graceful restart (RFC 4724 section 4.1): the Restart
/// State bit, End-of-RIB held until the local state is re-advertised, and best-path
/// installation deferred until every peer's End-of-RIB or the selection deferral timer.
extension EVPNSpeaker {
  /// Tells the speaker that every restored local MAC and binding has been handed to it
  /// (`advertiseMAC`, `bindLocalIP`): End-of-RIB goes to the peers after those routes.
  /// Calls queued before this one are applied first (same loop, call order).
  public func localStateRestored() {
    eventLoop.execute { self.markLocalStateRestored() }
  }

  /// On `start`: arms the selection deferral timer (nothing to wait for without peers).
  func beginRestart() {
    eventLoop.preconditionInEventLoop()
    guard restart.selectionDeferred else { return }
    let deferral = configuration.selectionDeferralTime
    emit(.restarting(selectionDeferral: deferral))
    restart.deferralTimer = eventLoop.scheduleTask(in: .milliseconds(Int64(max(0, deferral) * 1000))) {
      [weak self] in
      self?.endSelectionDeferral(reason: .timer)
    }
    checkSelectionDeferral()
  }

  func markLocalStateRestored() {
    eventLoop.preconditionInEventLoop()
    guard !restart.localStateRestored else { return }
    restart.localStateRestored = true
    for peer in peers where peer.endOfRIBHeld {
      peer.endOfRIBHeld = false
      peer.established?.send(.update(.endOfRIB(.l2vpnEVPN)))
    }
    finishRestartIfDone()
  }

  /// EVPN End-of-RIB after our table, held while the local state is not restored yet.
  func sendEndOfRIB(to peer: BGPPeer) {
    guard let connection = peer.established else { return }
    if restart.localStateRestored {
      connection.send(.update(.endOfRIB(.l2vpnEVPN)))
    } else {
      peer.endOfRIBHeld = true
    }
  }

  /// `peer` sent its End-of-RIB, or will send none (no graceful restart for EVPN, or it
  /// is restarting too: RFC 4724 section 4.1 leaves both out of the wait).
  func peerSynchronised(_ peer: BGPPeer) {
    guard restart.selectionDeferred else { return }
    restart.peersSynchronised.insert(peer.index)
    checkSelectionDeferral()
  }

  /// Ends deferral once no peer is waited for (peers removed meanwhile count out).
  func checkSelectionDeferral() {
    guard restart.selectionDeferred, isStarted else { return }
    if peers.allSatisfy({ restart.peersSynchronised.contains($0.index) }) {
      endSelectionDeferral(reason: .endOfRIB)
    }
  }

  func endSelectionDeferral(reason: SelectionDeferralEnd) {
    eventLoop.preconditionInEventLoop()
    guard restart.selectionDeferred else { return }
    restart.selectionDeferred = false
    restart.deferralTimer?.cancel()
    restart.deferralTimer = nil
    let held = deferredSink?.heldCount ?? 0
    deferredSink?.release()
    emit(.selectionDeferralEnded(reason: reason, changes: held))
    finishRestartIfDone()
  }

  private func finishRestartIfDone() {
    guard restart.restartState, restart.localStateRestored, !restart.selectionDeferred else { return }
    restart.restartState = false
    emit(.restartFinished)
  }

  func restartStatus() -> GracefulRestartStatus {
    GracefulRestartStatus(
      restarted: restart.restarted, restartState: restart.restartState,
      forwardingStatePreserved: configuration.forwardingStatePreserved,
      localStateRestored: restart.localStateRestored, selectionDeferral: restart.selectionDeferred,
      restartTime: configuration.gracefulRestartTime)
  }
}

/// Why a restarting speaker stopped deferring route installation.
public enum SelectionDeferralEnd: String, Sendable, Codable {
  /// Every peer sent End-of-RIB (or has none to send).
  case endOfRIB = "end_of_rib"
  /// The selection deferral timer ran out first.
  case timer
}
