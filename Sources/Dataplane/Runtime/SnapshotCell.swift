import Synchronization

/// Publishes immutable snapshots (forwarding state) to packet workers without locks or
/// reference counting on the read side, with deferred reclamation in the manner of RCU.
///
/// ## Thread-safety contract
/// - Workers each own a `QuiescentToken` and, once per batch, call `enter(_:)` to read
///   the current snapshot; the reference stays valid until that worker's next `enter`
///   or `idle`. Reading costs two atomic loads and one store, no lock, no retain.
/// - `publish` may be called from any thread (serialised internally). A replaced snapshot
///   is released only once every registered worker has since entered a later epoch or
///   gone idle; `reclaim()` (called from `publish` and periodically by the owner) frees
///   what is safe.
/// - `value` (control-plane readers, which hold no token) loads and retains the current
///   snapshot under the same lock `publish` swaps it under: the snapshot it loads cannot
///   be retired, let alone freed, before it holds its own reference.
// @unchecked: `current` holds a +1 reference the cell owns; `retired` and `tokens` are
// behind mutexes; the epoch protocol above is what keeps unretained reads valid.
public final class SnapshotCell<Snapshot: AnyObject>: @unchecked Sendable {
  private let current: Atomic<Unmanaged<Snapshot>>
  private let epoch = Atomic<UInt64>(1)
  private let retired = Mutex<[(epoch: UInt64, snapshot: Unmanaged<Snapshot>)]>([])
  private let tokens = Mutex<[QuiescentToken]>([])
  /// Held while `publish` swaps the snapshot and while `value` loads and retains it.
  private let swapping = Mutex<Void>(())
  /// Runs in `value` between the load and the retain: lets a test hold a reader in the
  /// window a concurrent `publish` must not be able to free the snapshot in.
  private let afterControlLoad: (@Sendable () -> Void)?

  /// One worker's announcement of the epoch it last read in (`UInt64.max` when idle).
  public final class QuiescentToken: Sendable {
    fileprivate let observed = Atomic<UInt64>(UInt64.max)
  }

  public convenience init(_ initial: Snapshot) { self.init(initial, afterControlLoad: nil) }

  init(_ initial: Snapshot, afterControlLoad: (@Sendable () -> Void)?) {
    current = Atomic(Unmanaged.passRetained(initial))
    self.afterControlLoad = afterControlLoad
  }

  deinit {
    current.load(ordering: .acquiring).release()
    for (_, snapshot) in retired.withLock({ $0 }) { snapshot.release() }
  }

  public func register() -> QuiescentToken {
    let token = QuiescentToken()
    tokens.withLock { $0.append(token) }
    return token
  }

  public func unregister(_ token: QuiescentToken) {
    tokens.withLock { $0.removeAll { $0 === token } }
    reclaim()
  }

  /// Marks the worker as reading from now on and returns the snapshot to use for this
  /// batch, unretained: valid until the worker's next `enter` or `idle`.
  @inline(__always)
  public func enter(_ token: QuiescentToken) -> Unmanaged<Snapshot> {
    token.observed.store(epoch.load(ordering: .acquiring), ordering: .sequentiallyConsistent)
    // Sequentially consistent so that the load cannot move before the store above (a
    // plain load on x86 all the same).
    return current.load(ordering: .sequentiallyConsistent)
  }

  /// Marks the worker as holding no snapshot (e.g. before blocking in poll).
  @inline(__always)
  public func idle(_ token: QuiescentToken) {
    token.observed.store(UInt64.max, ordering: .releasing)
  }

  /// The current snapshot, retained: for control-plane readers.
  public var value: Snapshot {
    swapping.withLock { _ in
      let loaded = current.load(ordering: .acquiring)
      afterControlLoad?()
      return loaded.takeUnretainedValue()
    }
  }

  public func publish(_ snapshot: Snapshot) {
    swapping.withLock { _ in
      let old = current.exchange(Unmanaged.passRetained(snapshot), ordering: .sequentiallyConsistent)
      let retiredAt = epoch.add(1, ordering: .sequentiallyConsistent).oldValue
      retired.withLock { $0.append((retiredAt, old)) }
    }
    reclaim()
  }

  /// Releases replaced snapshots no worker can still be reading.
  public func reclaim() {
    let oldestReader = tokens.withLock { tokens in
      tokens.reduce(UInt64.max) { min($0, $1.observed.load(ordering: .sequentiallyConsistent)) }
    }
    let free = retired.withLock { list -> [Unmanaged<Snapshot>] in
      let (done, keep) = (list.filter { $0.epoch < oldestReader }, list.filter { $0.epoch >= oldestReader })
      list = keep
      return done.map { $0.snapshot }
    }
    for snapshot in free { snapshot.release() }
  }
}
