/// A per-worker exact-match cache of forwarding decisions, after Open vSwitch's EMC: the
/// first 14 bytes of a frame (destination MAC, source MAC, EtherType) and where it came
/// from (access member, or bridge domain and source VTEP) map to the target the FDB gave
/// for it. A hit forwards a frame without parsing its MACs, checking its source or
/// probing the FDB.
///
/// ## Exactness
/// An entry is filled only by the fast path, after it verified the frame in full: a
/// unicast destination with a current FDB entry at a reachable target, and a source
/// found current at the frame's origin this second (so nothing to learn). Every entry
/// carries the cache generation it was filled under, and a generation holds only while
/// the FDB's change epoch (bumped by every removal, retarget and flush), the switch
/// clock's second and the forwarding-state snapshot all stay the same: any of them
/// changing starts a new generation, which misses on every older entry. So a hit
/// forwards exactly where the full path would, the source's age stamp is still refreshed
/// once a second (its first frame each second misses), and the cache never needs a scan
/// to invalidate. When the 32-bit generation wraps, the entries are cleared.
///
/// Frames never filled in (flooded, ARP where suppression watches, tagged in band,
/// learning) keep taking the full path; their first 14 bytes differ, or their origin
/// does, from anything cached.
///
/// Not thread-safe: owned by one pipeline (worker thread).
struct FlowCache {
  static let slotBits = 11
  static let slotCount = 1 << slotBits

  let entries: UnsafeMutablePointer<FlowCacheEntry>

  init() {
    entries = .allocate(capacity: Self.slotCount)
    entries.initialize(repeating: FlowCacheEntry(), count: Self.slotCount)
  }

  func deallocate() { entries.deallocate() }

  /// Forgets every entry (on generation wrap-around).
  func clear() { entries.update(repeating: FlowCacheEntry(), count: Self.slotCount) }

  /// The entry where a frame whose bytes 0-7 are `head` and 6-13 are `tail` (as loaded,
  /// native order) is cached.
  @inline(__always)
  func entry(head: UInt64, tail: UInt64) -> UnsafeMutablePointer<FlowCacheEntry> {
    entries
      + Int(truncatingIfNeeded: ((head ^ tail &<< 5) &* 0x9E37_79B9_7F4A_7C15) &>> (64 &- Self.slotBits))
  }

  /// The tag of entries filled under `generation` for frames from `origin` (32 bits).
  @inline(__always)
  static func tag(generation: UInt32, origin: UInt32) -> UInt64 {
    UInt64(generation) &<< 32 | UInt64(origin)
  }
}

/// One cached decision: 32 bytes, two to a cache line.
struct FlowCacheEntry {
  /// Frame bytes 0-7 and 6-13 as loaded (native order).
  var head: UInt64 = 0
  var tail: UInt64 = 0
  /// `FlowCache.tag(generation:origin:)`; generation 0 is never current, so a zeroed
  /// entry never hits.
  var tag: UInt64 = 0
  /// What to do: see `FlowDecision`.
  var decision: UInt64 = 0
}

/// How a `FlowCacheEntry` says where frames go: the FDB target (kind in bits 16-17,
/// index in 0-15) and, for a local member, its interface in bits 32-47.
enum FlowDecision {
  static let targetMask: UInt64 = 0x3_FFFF
  static let kindMask: UInt64 = 0x3_0000
  static let vtep: UInt64 = FDBTargetKind.vtep.rawValue &<< 16
  static let port: UInt64 = FDBTargetKind.port.rawValue &<< 16

  @inline(__always)
  static func member(_ member: Int, interface: Int) -> UInt64 {
    port | UInt64(truncatingIfNeeded: member) | UInt64(truncatingIfNeeded: interface) &<< 32
  }
}

/// When the flow caches' generation must advance: what the entries of one generation
/// assume unchanged.
struct FlowCacheValidity: Equatable {
  var fdbEpoch: UInt32 = .max
  var now: UInt32 = .max
  var snapshot: UInt64 = .max
}

/// Whether a batch loop probes and fills the flow cache (`ProbingFlowCache`) or goes
/// straight to the FDB (`BypassingFlowCache`, for traffic with more flows than the cache
/// holds, where probing and filling would be pure cost). A type parameter, so that each
/// loop is compiled without the other's branches.
protocol FlowCacheUse {
  static var probes: Bool { get }
}

enum ProbingFlowCache: FlowCacheUse {
  @inline(__always) static var probes: Bool { true }
}

enum BypassingFlowCache: FlowCacheUse {
  @inline(__always) static var probes: Bool { false }
}

/// Chooses, batch by batch, whether a direction's loop uses the flow cache: it stops
/// after a batch of 32 frames or more in which three quarters missed, and tries again
/// after 32 batches without (two batches then: the first fills the cache, the second
/// judges it). Each retry that finds the traffic still missing doubles the wait, up to
/// 256 batches; one that keeps the cache resets it. (A retry batch costs about 1.3 times a
/// bypassing one: retrying every 32 batches put about 4 instructions on every frame of
/// traffic that always misses.)
/// Per pipeline and direction; not shared.
struct FlowCachePolicy {
  static let firstRetryWait = 32
  static let longestRetryWait = 256

  private var bypassedBatches = 0
  private var caching = true
  private var grace = 0
  private var retryWait = Self.firstRetryWait
  /// Whether the batches since the last retry are the retry's own (filled, then judged).
  private var retrying = false
  /// Tests pin the choice, to compare each loop with the general path.
  var forced: Bool? = nil

  var cachesNextBatch: Bool { forced ?? caching }

  /// Whether the choice has settled for the traffic seen: caching, or bypassing with
  /// retries as far apart as they get (a benchmark warms up until it has, so that it
  /// measures the steady state, not the back-off's first, closer retries).
  var isSettled: Bool {
    if forced != nil { return true }
    return caching ? grace == 0 && !retrying : retryWait == Self.longestRetryWait
  }

  mutating func record(cached: Bool, misses: Int, frames: Int) {
    if cached {
      if grace > 0 {
        grace -= 1
      } else {
        if frames >= 32 && misses &* 4 >= frames &* 3 {
          caching = false
          bypassedBatches = 0
          retryWait = retrying ? min(retryWait &* 2, Self.longestRetryWait) : Self.firstRetryWait
        }
        retrying = false
      }
    } else {
      bypassedBatches += 1
      if bypassedBatches >= retryWait {
        caching = true
        grace = 1
        retrying = true
      }
    }
  }
}
