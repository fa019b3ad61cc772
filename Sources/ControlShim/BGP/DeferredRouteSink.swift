import Dataplane
import NIOCore

/// The sink of a restarting speaker (RFC 4724 section 4.1): while selection is deferred,
/// what the RIB decides is held back and handed to the real sink in one batch, in the
/// order it happened, when deferral ends; so the dataplane never installs a route that a
/// peer's later UPDATE (still on its way before that peer's End-of-RIB) would replace.
/// After that it passes every call straight through.
// @unchecked: confined to the speaker's event loop, as every sink call is (asserted).
final class DeferredRouteSink: EVPNRouteSink, @unchecked Sendable {
  private enum Change {
    case install(
      vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, sticky: Bool,
      peer: String)
    case remove(vni: UInt32, mac: MACAddress, ip: IPAddress?)
    case addFlood(vni: UInt32, vtep: IPAddress)
    case removeFlood(vni: UInt32, vtep: IPAddress)
    case frozen(vni: UInt32, mac: MACAddress, moves: Int)
    case conflictStarted(vni: UInt32, ip: IPAddress, mac: MACAddress)
    case conflictCleared(vni: UInt32, ip: IPAddress, mac: MACAddress?, local: Bool)
  }

  let target: EVPNRouteSink
  private let eventLoop: EventLoop
  private var held: [Change] = []
  /// Open batches, innermost last: whether the sink was told of each.
  private var batches: [Bool] = []
  private(set) var isDeferring = true

  init(target: EVPNRouteSink, eventLoop: EventLoop) {
    self.target = target
    self.eventLoop = eventLoop
  }

  /// Changes waiting for the end of deferral.
  var heldCount: Int { held.count }

  /// Ends deferral: the held changes reach the sink as one batch. Later calls pass through.
  func release() {
    eventLoop.preconditionInEventLoop()
    guard isDeferring else { return }
    isDeferring = false
    let changes = held
    held = []
    guard !changes.isEmpty else { return }
    target.beginBatch()
    for change in changes { apply(change) }
    target.endBatch()
  }

  private func submit(_ change: Change) {
    eventLoop.preconditionInEventLoop()
    if isDeferring { held.append(change) } else { apply(change) }
  }

  private func apply(_ change: Change) {
    switch change {
    case .install(let vni, let mac, let ip, let vtep, let sequence, let sticky, let peer):
      target.installMAC(
        vni: vni, mac: mac, ip: ip, vtep: vtep, sequence: sequence, sticky: sticky, peer: peer)
    case .remove(let vni, let mac, let ip): target.removeMAC(vni: vni, mac: mac, ip: ip)
    case .addFlood(let vni, let vtep): target.addFloodMember(vni: vni, vtep: vtep)
    case .removeFlood(let vni, let vtep): target.removeFloodMember(vni: vni, vtep: vtep)
    case .frozen(let vni, let mac, let moves): target.macFrozen(vni: vni, mac: mac, moves: moves)
    case .conflictStarted(let vni, let ip, let mac): target.addressConflictStarted(vni: vni, ip: ip, mac: mac)
    case .conflictCleared(let vni, let ip, let mac, let local):
      target.addressConflictCleared(vni: vni, ip: ip, mac: mac, local: local)
    }
  }

  func installMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, sticky: Bool,
    peer: String
  ) {
    submit(.install(vni: vni, mac: mac, ip: ip, vtep: vtep, sequence: sequence, sticky: sticky, peer: peer))
  }

  func removeMAC(vni: UInt32, mac: MACAddress, ip: IPAddress?) { submit(.remove(vni: vni, mac: mac, ip: ip)) }
  func addFloodMember(vni: UInt32, vtep: IPAddress) { submit(.addFlood(vni: vni, vtep: vtep)) }
  func removeFloodMember(vni: UInt32, vtep: IPAddress) { submit(.removeFlood(vni: vni, vtep: vtep)) }
  func macFrozen(vni: UInt32, mac: MACAddress, moves: Int) {
    submit(.frozen(vni: vni, mac: mac, moves: moves))
  }

  func addressConflictStarted(vni: UInt32, ip: IPAddress, mac: MACAddress) {
    submit(.conflictStarted(vni: vni, ip: ip, mac: mac))
  }

  func addressConflictCleared(vni: UInt32, ip: IPAddress, mac: MACAddress?, local: Bool) {
    submit(.conflictCleared(vni: vni, ip: ip, mac: mac, local: local))
  }

  // Batches opened while deferring are not the sink's (the release is one batch of its
  // own); the stack pairs each end with its begin when deferral ends inside a batch.
  func beginBatch() {
    batches.append(!isDeferring)
    if !isDeferring { target.beginBatch() }
  }

  func endBatch() {
    if batches.popLast() == true { target.endBatch() }
  }
}
