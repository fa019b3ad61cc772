import Dataplane

/// The rule every site applies to an address conflict, the same way on the same inputs,
/// so that sites that see the same routes reach the same outcome without exchanging
/// anything more:
///
/// 1. the claim with the higher MAC mobility sequence number wins (RFC 7432 section 15);
/// 2. on equal sequence numbers, the claim of the lower VTEP (originator) address wins
///    (RFC 7432 section 15: "the PE with the lowest IP address");
/// 3. on the same VTEP too (one site binding an IP to two MACs), the lower MAC wins.
///
/// For the same MAC at two sites (a MAC conflict) this is the RFC's best-path choice;
/// for one IP bound to different MACs (an IP conflict) it names the binding the rule
/// keeps, while ARP suppression answers for neither until only one is left.
public enum ConflictRule {
  /// One claim: a MAC (bound to the contested IP, or itself contested) announced by a
  /// VTEP with a sequence number.
  public struct Candidate: Equatable, Sendable {
    public var mac: MACAddress
    public var vtep: IPAddress
    public var sequence: UInt32
    public init(mac: MACAddress, vtep: IPAddress, sequence: UInt32) {
      self.mac = mac
      self.vtep = vtep
      self.sequence = sequence
    }
  }

  /// Which step of the rule decided between the winner and the runner-up.
  public enum Reason: String, Sendable, Codable {
    case higherSequence = "higher_sequence"
    case lowerVTEP = "lower_vtep"
    case lowerMAC = "lower_mac"
  }

  /// Whether `a` beats `b`.
  public static func beats(_ a: Candidate, _ b: Candidate) -> Bool {
    if a.sequence != b.sequence { return a.sequence > b.sequence }
    if a.vtep != b.vtep { return a.vtep < b.vtep }
    return a.mac.rawValue < b.mac.rawValue
  }

  /// The candidates best first, and the step that put the first ahead of the second
  /// (nil with fewer than two). The order does not depend on the input order.
  public static func rank(_ candidates: [Candidate]) -> (ranked: [Candidate], reason: Reason?) {
    let ranked = candidates.sorted(by: beats)
    guard ranked.count >= 2 else { return (ranked, nil) }
    let (first, second) = (ranked[0], ranked[1])
    if first.sequence != second.sequence { return (ranked, .higherSequence) }
    if first.vtep != second.vtep { return (ranked, .lowerVTEP) }
    return (ranked, .lowerMAC)
  }
}

/// One claim of a conflict as reported (`GET /v1/conflicts`).
public struct ConflictClaim: Sendable, Codable, Equatable, Hashable {
  public var mac: String
  public var vtep: String
  public var sequence: UInt32
  /// "local" for this site's own binding or MAC, else the BGP peer the route came from.
  public var peer: String
  /// The claim the rule keeps.
  public var winner: Bool

  public init(mac: String, vtep: String, sequence: UInt32, peer: String, winner: Bool) {
    self.mac = mac
    self.vtep = vtep
    self.sequence = sequence
    self.peer = peer
    self.winner = winner
  }
}

/// An address conflict the speaker sees (`GET /v1/conflicts`, `vxswitch show conflicts`).
public struct AddressConflict: Sendable, Codable, Equatable {
  public enum Kind: String, Sendable, Codable, CaseIterable {
    /// One IP bound to different MACs in a VNI (MAC/IP routes, or a local ARP binding).
    case ip
    /// One MAC announced by two VTEPs with the same sequence number.
    case mac
  }

  public var kind: Kind
  public var vni: UInt32
  /// The contested IP (kind `ip`).
  public var ip: String?
  /// The contested MAC (kind `mac`).
  public var mac: String?
  /// Best first: the first is the winner.
  public var claims: [ConflictClaim]
  /// The step of `ConflictRule` that decided.
  public var rule: ConflictRule.Reason
  /// What this site does about it: "arp_suppression_off" (kind ip: ARP requests for the
  /// IP are forwarded, not answered), "local_withdrawn" (kind mac: this site lost and
  /// withdrew its route; it does not re-announce the MAC with a higher sequence while the
  /// conflict lasts), "remote_withdraws" (kind mac: this site won; the other withdraws).
  public var outcome: String
  /// Seconds since the conflict started.
  public var duration: Double

  public init(
    kind: Kind, vni: UInt32, ip: String? = nil, mac: String? = nil, claims: [ConflictClaim],
    rule: ConflictRule.Reason, outcome: String, duration: Double = 0
  ) {
    self.kind = kind
    self.vni = vni
    self.ip = ip
    self.mac = mac
    self.claims = claims
    self.rule = rule
    self.outcome = outcome
    self.duration = duration
  }

  /// The winning claim.
  public var winner: ConflictClaim? { claims.first { $0.winner } }

  /// "IP 192.168.1.5 in VNI 100" / "MAC 02:...:01 in VNI 100".
  public var subject: String {
    kind == .ip ? "IP \(ip ?? "?") in VNI \(vni)" : "MAC \(mac ?? "?") in VNI \(vni)"
  }
}

/// Conflicts now and started since the speaker began, for `GET /v1/conflicts` and metrics.
public struct ConflictReport: Sendable, Equatable {
  /// Sorted by kind, VNI, then IP or MAC.
  public var conflicts: [AddressConflict]
  /// Conflicts started since start, per kind.
  public var started: [AddressConflict.Kind: Int]

  public init(conflicts: [AddressConflict] = [], started: [AddressConflict.Kind: Int] = [:]) {
    self.conflicts = conflicts
    self.started = started
  }
}

/// The conflicts a RIB tracks (see `EVPNRIB`).
struct ConflictTracker {
  /// Per (VNI, IP) (a `MACRouteKey` with MAC 0): the MACs that have a MAC/IP route for it.
  var claimsByIP: [MACRouteKey: [UInt64]] = [:]

  struct IPRecord {
    var conflict: AddressConflict
    var since: Double
  }
  var ipConflicts: [MACRouteKey: IPRecord] = [:]

  struct MACRecord {
    var conflict: AddressConflict
    var since: Double
    /// This site lost the tie and withdrew its route.
    var lost: Bool
    /// The winning path (VTEP and sequence): the conflict lasts while it stands.
    var winnerVTEP: UInt32
    var sequence: UInt32
    /// Lost: the MAC is still local here (learnt again since); re-announced when the
    /// winner's route goes.
    var localHeld: Bool
  }
  var macConflicts: [DuplicateMACDetector.Key: MACRecord] = [:]

  var started: [AddressConflict.Kind: Int] = [:]

  static func ipKey(_ key: MACRouteKey) -> MACRouteKey { MACRouteKey(vni: key.vni, mac: 0, ip: key.ip) }
}

/// A conflict starting or ending, for the speaker (logs, events).
enum ConflictChange {
  case started(AddressConflict)
  /// `remaining`: kind ip, the binding left (nil: none); `reason` says why it ended.
  case cleared(AddressConflict, reason: String)
  /// A MAC conflict this site lost ended while the MAC is still local: announce it.
  case reannounce(vni: UInt32, mac: MACAddress)
}
