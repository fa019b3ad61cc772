import Dataplane

/// Address conflicts (see `EVPNRIB+Conflicts.swift` and `ConflictRule`): events, the
/// re-announcement a lost MAC conflict owes when it ends, and the report.
extension EVPNSpeaker {
  /// Called by the RIB (inside a change): events now, RIB changes later.
  func conflictChanged(_ change: ConflictChange) {
    switch change {
    case .started(let conflict):
      emit(.conflictStarted(conflict))
    case .cleared(let conflict, let reason):
      emit(.conflictCleared(conflict, reason: reason))
    case .reannounce(let vni, let mac):
      advertiseMAC(vni: vni, mac: mac)
    }
  }

  /// The conflicts now, and how many started since start (any thread but the loop's).
  public func conflictReport() async -> ConflictReport {
    (try? await eventLoop.submit { self.rib.conflictReport() }.get()) ?? ConflictReport()
  }

  /// `conflictReport` for plain threads; must not be called on the speaker's event loop.
  public func conflictReportBlocking() -> ConflictReport {
    (try? eventLoop.submit { self.rib.conflictReport() }.wait()) ?? ConflictReport()
  }
}
