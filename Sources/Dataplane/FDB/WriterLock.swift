#if canImport(Glibc)
  import Glibc
#endif

/// A pthread mutex guarding a value: the FDB's writer lock.
///
/// Why not `Synchronization.Mutex`: its Linux implementation parks on a raw futex inside
/// the (uninstrumented) Swift runtime, so ThreadSanitizer cannot see the happens-before
/// edges it creates and reports every writer as racing with the previous one. The FDB's
/// stress test runs under ThreadSanitizer in CI, and writers are off the packet path, so
/// an intercepted pthread mutex costs nothing that matters.
///
/// Thread-safety: `withLock` from any thread; `body` runs with the lock held.
// @unchecked: `State` is only reached inside `withLock`, with the lock held.
final class WriterLock<State>: @unchecked Sendable {
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private var state: State

  init(_ state: State) {
    self.state = state
    mutex = .allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
  }

  func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body(&state)
  }
}
