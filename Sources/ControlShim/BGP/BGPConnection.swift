import NIOCore

/// One TCP connection to a neighbour and its part of the RFC 4271 FSM: OpenSent,
/// OpenConfirm, Established. A peer can briefly have two (one each direction) until
/// collision resolution picks one. Confined to the speaker's event loop.
// @unchecked: confined to the speaker's event loop (checked where frames and closes enter).
final class BGPConnection: @unchecked Sendable {
  enum State { case connected, openSent, openConfirm, established, closed }

  let channel: Channel
  /// True when we initiated the TCP connection (decides collisions, RFC 4271 6.8).
  let outbound: Bool
  let remoteAddress: String
  unowned let speaker: EVPNSpeaker
  /// Nil for an incoming connection whose OPEN has not told us which peer it is yet.
  var peer: BGPPeer?
  private(set) var state: State = .connected
  private(set) var remoteOpen: OpenMessage?
  private(set) var sentOpen = false
  var negotiatedHoldTime: UInt16 = 0
  var context = DecodingContext(fourOctetAS: false)
  private var holdTimer: Scheduled<Void>?
  private var keepaliveTimer: RepeatedTask?
  /// RFC 4271 suggests a large hold time until OPEN arrives.
  static let initialHoldTime: Int64 = 240

  init(channel: Channel, outbound: Bool, remoteAddress: String, speaker: EVPNSpeaker, peer: BGPPeer?) {
    self.channel = channel
    self.outbound = outbound
    self.remoteAddress = remoteAddress
    self.speaker = speaker
    self.peer = peer
  }

  var description: String { "\(outbound ? "out" : "in") \(remoteAddress) \(state)" }

  func channelBecameActive() {
    guard state != .closed else { return }
    // Outgoing connections and incoming ones that can only be one peer send OPEN at
    // once; ambiguous incoming ones wait for the peer's OPEN to identify it.
    if peer != nil { sendOpen() }
    state = .openSent
    restartHoldTimer(seconds: Self.initialHoldTime)
  }

  func sendOpen() {
    guard let peer, !sentOpen else { return }
    sentOpen = true
    send(.open(peer.makeOpen()))
  }

  // MARK: sending

  func send(_ message: BGPMessage, flush: Bool = true) {
    guard state != .closed else { return }
    sendRaw(BGPMessageCodec.encode(message, context: context), flush: flush)
  }

  func sendRaw(_ bytes: [UInt8], flush: Bool = true) {
    guard state != .closed else { return }
    let buffer = channel.allocator.buffer(bytes: bytes)
    if flush { channel.writeAndFlush(buffer, promise: nil) } else { channel.write(buffer, promise: nil) }
  }

  func flush() { channel.flush() }

  // MARK: receiving

  /// Handles one frame; returns false once the connection is closed.
  func receive(frame: [UInt8]) -> Bool {
    channel.eventLoop.preconditionInEventLoop()
    guard state != .closed else { return false }
    let decoded: DecodedMessage
    do {
      decoded = try BGPMessageCodec.decode(frame, context: context)
    } catch let error as BGPWireError {
      fail(with: error)
      return false
    } catch {
      close(reason: "decode: \(error)")
      return false
    }
    handle(decoded)
    return state != .closed
  }

  private func handle(_ decoded: DecodedMessage) {
    switch (state, decoded.message) {
    case (_, .notification(let notification)):
      if let peer { speaker.emit(.notificationReceived(peer: peer.configuration.name, notification)) }
      close(reason: "received \(notification)", notification: notification)
    case (.openSent, .open(let open)):
      receivedOpen(open)
    case (.openConfirm, .keepalive):
      state = .established
      restartHoldTimer(seconds: Int64(negotiatedHoldTime))
      peer?.connectionEstablished(self)
    case (.established, .keepalive):
      restartHoldTimer(seconds: Int64(negotiatedHoldTime))
      peer?.receivedKeepalive(on: self)
    case (.established, .update):
      restartHoldTimer(seconds: Int64(negotiatedHoldTime))
      peer?.received(decoded, on: self)
    case (.established, .routeRefresh(let refresh)):
      restartHoldTimer(seconds: Int64(negotiatedHoldTime))
      peer?.receivedRouteRefresh(refresh, on: self)
    default:
      // RFC 4271 section 8.2.2: any other message in this state is an FSM error.
      sendNotificationAndClose(.finiteStateMachineError, reason: "unexpected message in \(state)")
    }
  }

  private func receivedOpen(_ open: OpenMessage) {
    if peer == nil {
      guard let match = speaker.peerForIncoming(address: remoteAddress, open: open) else {
        sendNotificationAndClose(
          .connectionRejected, reason: "no peer configured for \(remoteAddress) AS \(open.asn)")
        return
      }
      peer = match
      match.adoptIncoming(self)
    }
    guard let peer else { return }
    if let error = peer.validate(open) {
      sendOpen()
      fail(with: error)
      return
    }
    remoteOpen = open
    sendOpen()
    context.fourOctetAS = open.supportsFourOctetAS
    let ourHold = peer.configuredHoldTime
    negotiatedHoldTime = min(ourHold, open.holdTime)
    guard peer.resolveCollision(self, remoteIdentifier: open.bgpIdentifier) else { return }
    state = .openConfirm
    send(.keepalive)
    restartHoldTimer(seconds: Int64(negotiatedHoldTime))
    startKeepalives()
  }

  // MARK: timers

  private func restartHoldTimer(seconds: Int64) {
    holdTimer?.cancel()
    holdTimer = nil
    guard seconds > 0 else { return }
    holdTimer = channel.eventLoop.scheduleTask(in: .seconds(seconds)) { [weak self] in
      self?.sendNotificationAndClose(.holdTimerExpired, reason: "hold timer expired")
    }
  }

  private func startKeepalives() {
    keepaliveTimer?.cancel()
    guard negotiatedHoldTime > 0 else { return }
    // A third of the hold time (RFC 4271 section 10), in milliseconds for short holds.
    let interval = TimeAmount.milliseconds(Int64(negotiatedHoldTime) * 1000 / 3)
    keepaliveTimer = channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) {
      [weak self] _ in
      self?.send(.keepalive)
    }
  }

  // MARK: teardown

  /// Sends the NOTIFICATION for a wire error and closes only this connection.
  func fail(with error: BGPWireError) {
    sendNotificationAndClose(NotificationMessage(error), reason: error.description)
  }

  /// Whether both sides announced the N bit (RFC 8538): then a NOTIFICATION other than a
  /// Hard Reset leaves graceful restart in force.
  var negotiatedNotificationSupport: Bool {
    speaker.configuration.announceGracefulRestart && remoteOpen?.gracefulRestart?.notification == true
  }

  func sendNotificationAndClose(_ notification: NotificationMessage, reason: String) {
    guard state != .closed else { return }
    var notification = notification
    if state == .established, negotiatedNotificationSupport, notification.endsGracefulRestart {
      notification = notification.asHardReset
    }
    if let peer { speaker.emit(.notificationSent(peer: peer.configuration.name, notification)) }
    // Close only after the NOTIFICATION has left, so the peer learns why.
    let written = channel.writeAndFlush(
      channel.allocator.buffer(bytes: BGPMessageCodec.encode(.notification(notification), context: context)))
    close(reason: reason, notification: notification, after: written)
  }

  /// Closes the TCP connection (after pending writes) and tells the peer once.
  /// `notification` is the NOTIFICATION sent or received that ends it, if any.
  func close(
    reason: String, notification: NotificationMessage? = nil, after written: EventLoopFuture<Void>? = nil
  ) {
    channel.eventLoop.preconditionInEventLoop()
    guard state != .closed else { return }
    let wasEstablished = state == .established
    state = .closed
    holdTimer?.cancel()
    keepaliveTimer?.cancel()
    let channel = self.channel
    if let written {
      written.whenComplete { _ in channel.close(promise: nil) }
    } else {
      channel.close(promise: nil)
    }
    peer?.connectionClosed(self, wasEstablished: wasEstablished, reason: reason, notification: notification)
  }

  func channelClosed() { close(reason: "connection closed by peer") }
}
