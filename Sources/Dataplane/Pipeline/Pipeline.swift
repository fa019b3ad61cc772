import CPacket

/// One worker's forwarding pipeline: takes a `FrameVector` from one interface and writes
/// every frame into the transmit rings of the interfaces it leaves by.
///
/// Each batch runs one loop over its frames. The loop hoists what frames of one batch
/// share (the ingress VLAN's member and bridge domain, the VNI's domain, the underlay
/// ring, the current flush generations) into a lane value and sends each frame down its
/// fast path: a flow whose decision the per-worker `FlowCache` holds, or else known
/// unicast from a source already verified this second, forwarded with one probe of the
/// FDB home bucket (prefetched a few frames ahead when lookups are frequent). Any frame
/// the fast path does not finish (a new or moving source, flooding, ARP, VLAN tags in
/// band, drops, a bucket being rewritten) takes the general path, which does the whole
/// job for that frame and names every drop. The two paths produce the same bytes and
/// counts; tests run traffic through both and compare. Each direction's loop is generic
/// over the encapsulation flavour or underlay family and over whether it probes the
/// flow cache (`FlowCachePolicy` chooses per batch), so that each variant is compiled
/// with its constants and without the others' branches.
///
/// Nothing here allocates, retains, or calls through an existential per frame: state is
/// reached through raw pointers held in locals, counters are plain words flushed to
/// `SwitchStatistics` once per batch.
///
/// Not thread-safe: one pipeline per worker thread. It shares the FDB (as a reader),
/// the `SnapshotCell` (as a registered reader) and `SwitchStatistics` with other threads.
/// Its per-batch state is `@exclusivity(unchecked)`: only the owning thread touches it,
/// and no access to it is held across a call that reaches it again (the compiler's
/// static checks still apply); the runtime checks cost about five instructions per
/// 64-byte frame (callgrind), a call each, for nothing.
public final class Pipeline {
  let fdb: ForwardingTable
  let arp: ARPTable
  let cell: SnapshotCell<ForwardingState>
  let token: SnapshotCell<ForwardingState>.QuiescentToken
  public let learnQueue: LearnQueue
  let statistics: SwitchStatistics
  /// Transmit ring per interface index (nil while not attached).
  let rings: UnsafeMutablePointer<UnsafeMutablePointer<TxRing>?>
  let counters: UnsafeMutablePointer<UInt64>
  @exclusivity(unchecked) var countersTouched = false

  /// Where path MTU replies are built, and this second's count of them.
  let pathMTUScratch: UnsafeMutableRawPointer
  @exclusivity(unchecked) var pathMTUSecond: UInt32 = 0
  @exclusivity(unchecked) var pathMTURepliesThisSecond = 0

  /// Frames ahead of the current one whose FDB bucket the batch loops prefetch: far
  /// enough for a memory access to complete behind the work on the frames in between.
  static let prefetchDistance = 4
  /// The group (multicast) bit of a MAC address loaded as the top six bytes of a
  /// big-endian 64-bit word (`be64` at the address's offset).
  static let groupBitOfLoadedMAC: UInt64 = 1 &<< 56

  /// Off only in tests, which compare the general path's output with the fast paths'.
  @exclusivity(unchecked) var fastPathsEnabled = true

  /// TCP coalescing state per interface (`TCPCoalescer`), and the interfaces whose rings
  /// have one, flushed at the end of every batch so that no frame waits for the next.
  let coalescers: UnsafeMutablePointer<TCPCoalescer>
  let coalescingInterfaces: UnsafeMutablePointer<UInt16>
  @exclusivity(unchecked) var coalescingCount = 0
  /// Whether rings toward ports that take super-frames (a `virtio_net_hdr` prefix) get a
  /// coalescer when attached.
  public var coalescesTCP = true
  /// Flows each coalescer merges at once (see `TCPCoalescer.flowLimit`).
  public var coalescedFlows = TCPCoalescer.runCapacity

  /// The underlay ring's UDP GSO segmenter (`UnderlaySegmenter`) and the ring it is
  /// attached to, if any: its run is handed over at the end of every batch, and its
  /// counts taken into the counters.
  let segmenter: UnsafeMutablePointer<UnderlaySegmenter>
  @exclusivity(unchecked) var segmentingRing: UnsafeMutablePointer<TxRing>? = nil
  /// The segmenter's tunnel run's header scratch (`useTunnelTap`), owned here.
  var tunnelScratch: UnsafeMutableRawPointer? = nil
  /// Frame flags that send a decapsulated frame to the general path: an unfinished
  /// checksum the kernel left (`checksumNotReady`), and an inner one a sender left
  /// (`innerChecksumPartial`) while some access ring has no coalescer to pass it on
  /// (the general path finishes it; with coalescers everywhere the fast path takes
  /// such frames and the coalescers deal with them, no test per frame in the rings).
  @exclusivity(unchecked) var fastPathRefusedFlags =
    FrameFlags.checksumNotReady | FrameFlags.innerChecksumPartial
  /// The coalescers' tap buffers and piece lists (`useAccessTap`), owned here.
  var tapAllocations: [(UnsafeMutableRawPointer, UnsafeMutablePointer<iovec>)] = []
  /// Whether an underlay ring with a `virtio_net_hdr` prefix gets runs of datagrams
  /// joined into UDP GSO frames (else each behind a plain header).
  @exclusivity(unchecked) public var segmentsUnderlay = true
  /// Whether datagrams joining a run are encapsulated in the run itself
  /// (`TxRing.stagePayload`) rather than copied there.
  @exclusivity(unchecked) public var joinsUnderlayInPlace = true
  /// Whether the next access batch joins datagrams (see the policy).
  @exclusivity(unchecked) var underlayPolicy = UnderlaySegmentingPolicy()

  // Recently queued learn events (direct-mapped), so that a burst from one MAC queues
  // one event per second rather than one per frame.
  static let filterBits = 10
  static let filterSize = 1 << filterBits
  let filterKeys: UnsafeMutablePointer<UInt64>
  let filterTags: UnsafeMutablePointer<UInt64>

  // Sources found current in the FDB during this second (direct-mapped): later frames
  // from the same source and port skip the FDB lookup until the clock ticks or the FDB
  // changes (see `sourceCacheEpoch`). The entry's age stamp is still refreshed once a
  // second. 4096 entries, so that a site's hosts rarely evict each other.
  static let sourceCacheBits = 12
  static let sourceCacheSize = 1 << sourceCacheBits
  let sourceCache: UnsafeMutablePointer<SourceCacheEntry>
  /// The FDB's change epoch at the start of the batch: part of every cache tag, so any
  /// removal, move or flush invalidates the whole cache at once.
  @exclusivity(unchecked) var sourceCacheEpoch: UInt64 = 0

  /// The batch's current lanes, for the out-of-line flow cache miss handlers: a copy in
  /// memory that changes with the loop's own (rarely), so that a call passes no lane.
  let currentAccessLane: UnsafeMutablePointer<AccessLane>
  let currentDecapLane: UnsafeMutablePointer<DecapLane>

  // Decisions for recent flows (see `FlowCache`), one cache per direction, and the
  // generation their current entries carry.
  let accessFlows = FlowCache()
  let decapFlows = FlowCache()
  @exclusivity(unchecked) var flowGeneration: UInt32 = 1
  @exclusivity(unchecked) var flowValidity = FlowCacheValidity()
  /// Whether the last batch of each direction missed the flow cache often enough that
  /// FDB buckets are worth prefetching ahead of the lookups.
  @exclusivity(unchecked) var accessPrefetch = true
  @exclusivity(unchecked) var decapPrefetch = true
  /// Whether each direction's next batch probes the flow cache.
  @exclusivity(unchecked) var accessCaching = FlowCachePolicy()
  @exclusivity(unchecked) var decapCaching = FlowCachePolicy()
  /// The generation of the snapshot the current batch is switched under, stamped on the
  /// batch's learn events.
  @exclusivity(unchecked) var snapshotGeneration: UInt64 = 0

  init(fdb: ForwardingTable, arp: ARPTable, cell: SnapshotCell<ForwardingState>, statistics: SwitchStatistics)
  {
    self.fdb = fdb
    self.arp = arp
    self.cell = cell
    self.statistics = statistics
    token = cell.register()
    learnQueue = LearnQueue()
    rings = .allocate(capacity: ForwardingState.maxInterfaces)
    rings.initialize(repeating: nil, count: ForwardingState.maxInterfaces)
    counters = .allocate(capacity: Counter.count)
    counters.initialize(repeating: 0, count: Counter.count)
    filterKeys = .allocate(capacity: Self.filterSize)
    filterKeys.initialize(repeating: 0, count: Self.filterSize)
    filterTags = .allocate(capacity: Self.filterSize)
    filterTags.initialize(repeating: 0, count: Self.filterSize)
    currentAccessLane = .allocate(capacity: 1)
    currentAccessLane.initialize(to: AccessLane())
    currentDecapLane = .allocate(capacity: 1)
    currentDecapLane.initialize(to: .none)
    sourceCache = .allocate(capacity: Self.sourceCacheSize)
    sourceCache.initialize(repeating: SourceCacheEntry(), count: Self.sourceCacheSize)
    pathMTUScratch = .allocate(byteCount: Self.pathMTUScratchBytes, alignment: 64)
    coalescers = .allocate(capacity: ForwardingState.maxInterfaces)
    coalescers.initialize(repeating: TCPCoalescer(), count: ForwardingState.maxInterfaces)
    coalescingInterfaces = .allocate(capacity: ForwardingState.maxInterfaces)
    coalescingInterfaces.initialize(repeating: 0, count: ForwardingState.maxInterfaces)
    segmenter = .allocate(capacity: 1)
    segmenter.initialize(to: UnderlaySegmenter())
  }

  deinit {
    cell.unregister(token)
    rings.deallocate()
    counters.deallocate()
    filterKeys.deallocate()
    filterTags.deallocate()
    sourceCache.deallocate()
    pathMTUScratch.deallocate()
    currentAccessLane.deallocate()
    currentDecapLane.deallocate()
    accessFlows.deallocate()
    decapFlows.deallocate()
    coalescers.deallocate()
    coalescingInterfaces.deallocate()
    segmenter.deallocate()
    tunnelScratch?.deallocate()
    for (buffers, pieces) in tapAllocations {
      buffers.deallocate()
      pieces.deallocate()
    }
  }

  /// Connects an interface's transmit ring; frames for an unattached interface are
  /// dropped as `txRingFull`. A ring with a `virtio_net_hdr` prefix gets a TCP
  /// coalescer toward an access port, the UDP GSO segmenter on the `underlay`.
  public func attach(interface: UInt16, ring: UnsafeMutablePointer<TxRing>, underlay: Bool = false) {
    rings[Int(interface)] = ring
    if underlay {
      guard ring.pointee.framePrefix == VirtioNetHeader.length else { return }
      segmenter.pointee = UnderlaySegmenter(merging: segmentsUnderlay, inPlace: joinsUnderlayInPlace)
      ring.pointee.segmenter = segmenter
      segmentingRing = ring
      return
    }
    guard coalescesTCP && ring.pointee.framePrefix == VirtioNetHeader.length else {
      uncoalescedRings.insert(interface)
      updateFastPathFlags()
      return
    }
    uncoalescedRings.remove(interface)
    defer { updateFastPathFlags() }
    let state = coalescers + Int(interface)
    state.pointee = TCPCoalescer(flowLimit: coalescedFlows)
    ring.pointee.coalescer = state
    if !(0..<coalescingCount).contains(where: { coalescingInterfaces[$0] == interface }) {
      coalescingInterfaces[coalescingCount] = interface
      coalescingCount += 1
    }
  }

  /// Sends the super-frames coalesced toward `interface` through `tap` (a
  /// `RedirectingTap` to that interface, with a `virtio_net_hdr` as long as the ring's
  /// prefix), `ringSocket` being the interface's packet socket (see `TCPCoalescer.tap`);
  /// call after `attach`ing the interface's ring, before the first batch.
  public func useAccessTap(interface: UInt16, _ tap: Int32, ringSocket: Int32) {
    guard let ring = rings[Int(interface)], let state = ring.pointee.coalescer,
      ring.pointee.dataOffset &+ 256 <= TCPCoalescer.bufferBytes
    else { return }
    if state.pointee.buffers == nil {
      let buffers = UnsafeMutableRawPointer.allocate(
        byteCount: TCPCoalescer.runCapacity * TCPCoalescer.bufferBytes, alignment: 64)
      let pieces = UnsafeMutablePointer<iovec>.allocate(
        capacity: TCPCoalescer.runCapacity * (TCPCoalescer.maxPieces + 1))
      tapAllocations.append((buffers, pieces))
      state.pointee.buffers = buffers
      state.pointee.pieceLists = pieces
    }
    state.pointee.tap = tap
    state.pointee.ringSocket = ringSocket
  }

  /// Access rings attached without a coalescer (see `fastPathRefusedFlags`).
  var uncoalescedRings: Set<UInt16> = []

  func updateFastPathFlags() {
    fastPathRefusedFlags =
      FrameFlags.checksumNotReady
      | (uncoalescedRings.isEmpty && coalescingCount != 0 ? 0 : FrameFlags.innerChecksumPartial)
  }

  /// The coalescer of an interface's ring (counts for tests and statistics).
  public func coalescer(interface: UInt16) -> TCPCoalescer { coalescers[Int(interface)] }

  /// Hands over every super-frame still being built: the end of a batch ends every run.
  @inline(never)
  func flushCoalescers() {
    for position in 0..<coalescingCount {
      let interface = Int(coalescingInterfaces[position])
      guard let ring = rings[interface], let state = ring.pointee.coalescer else { continue }
      ring.pointee.publishAllCoalesced(state)
      if state.pointee.unreportedSuperFrames != 0 {
        count(Counter.coalescedSuperFrames, Int(truncatingIfNeeded: state.pointee.unreportedSuperFrames))
        count(Counter.coalescedSegments, Int(truncatingIfNeeded: state.pointee.unreportedSegments))
        state.pointee.unreportedSuperFrames = 0
        state.pointee.unreportedSegments = 0
        countersTouched = true
      }
      if state.pointee.unreportedTapRefusals != 0 {
        count(Counter.tapRefusals, Int(truncatingIfNeeded: state.pointee.unreportedTapRefusals))
        state.pointee.unreportedTapRefusals = 0
        countersTouched = true
      }
    }
  }

  /// The underlay segmenter's state (counts for tests).
  public var underlaySegmenter: UnderlaySegmenter { segmenter.pointee }

  /// Hands over the UDP GSO run still being built, counts what the segmenter sent and
  /// tells the policy how the batch went.
  @inline(never)
  func flushSegmenter(_ ring: UnsafeMutablePointer<TxRing>) {
    ring.pointee.publishTunnelRun(segmenter)
    ring.pointee.publishSegmented(segmenter)
    // The batch's encapsulations so far (the scratch counters are zeroed per batch).
    underlayPolicy.record(
      tried: segmenter.pointee.merging, committed: Int(truncatingIfNeeded: counters[Counter.encapsulated]),
      joined: segmenter.pointee.datagrams &+ segmenter.pointee.tunnel.datagrams)
    if segmenter.pointee.frames != 0 {
      count(Counter.underlayGSOFrames, segmenter.pointee.frames)
      count(Counter.underlayGSODatagrams, segmenter.pointee.datagrams)
      segmenter.pointee.frames = 0
      segmenter.pointee.datagrams = 0
      countersTouched = true
    }
    if segmenter.pointee.tunnel.frames | segmenter.pointee.tunnel.refusals != 0 {
      count(Counter.underlayTunnelFrames, segmenter.pointee.tunnel.frames)
      count(Counter.underlayTunnelSegments, segmenter.pointee.tunnel.datagrams)
      count(Counter.tapRefusals, segmenter.pointee.tunnel.refusals)
      segmenter.pointee.tunnel.frames = 0
      segmenter.pointee.tunnel.datagrams = 0
      segmenter.pointee.tunnel.refusals = 0
      countersTouched = true
    }
  }

  /// Sends the segments of VM super-frames bound for the underlay through `tap`
  /// (`TunnelRun`), `ringSocket` being the underlay packet socket that sends the ring's
  /// frames; call after `attach`ing the underlay ring, before the first batch.
  public func useTunnelTap(_ tap: Int32, ringSocket: Int32) {
    guard segmentingRing != nil else { return }
    if tunnelScratch == nil { tunnelScratch = .allocate(byteCount: TunnelRun.scratchBytes, alignment: 64) }
    segmenter.pointee.tunnel.scratch = tunnelScratch
    segmenter.pointee.tunnel.tap = tap
    segmenter.pointee.tunnel.ringSocket = ringSocket
  }

  /// Declares that this worker holds no snapshot while it blocks waiting for frames.
  public func idle() { cell.idle(token) }

  /// Forwards every frame of the vector. The vector's frame memory is read (and may be
  /// patched in place); transmit rings receive the output; the caller then flushes the
  /// rings that have `pending` frames and releases the received memory.
  public func process(_ vector: inout FrameVector) {
    let epoch = fdb.changeEpoch.load(ordering: .acquiring)
    sourceCacheEpoch = UInt64(epoch) &<< 18
    let snapshot = cell.enter(token)
    var interfaces = Int(vector.ingress) &+ 1
    snapshot._withUnsafeGuaranteedRef { state in
      interfaces = max(interfaces, state.interfaceCount)
      snapshotGeneration = state.generation
      let validity = FlowCacheValidity(fdbEpoch: epoch, now: vector.now, snapshot: state.generation)
      if validity != flowValidity {
        flowValidity = validity
        advanceFlowGeneration()
      }
      if vector.ingress == state.underlayInterface {
        if vector.hasDeferredPayloads { DeferredPayload.materializeAll(&vector) }
        decapsulateBatch(&vector, state)
      } else {
        switchAccessBatch(&vector, state)
      }
    }
    if coalescingCount != 0 { flushCoalescers() }
    if let ring = segmentingRing { flushSegmenter(ring) }
    statistics.absorb(counters, touched: &countersTouched, interfaces: interfaces)
  }

  /// Whether both directions' flow cache policies have settled (`FlowCachePolicy.isSettled`).
  public var flowCachePoliciesSettled: Bool { accessCaching.isSettled && decapCaching.isSettled }

  /// Starts a new flow cache generation: every cached decision misses from now on.
  func advanceFlowGeneration() {
    flowGeneration &+= 1
    if flowGeneration == 0 {
      accessFlows.clear()
      decapFlows.clear()
      flowGeneration = 1
    }
  }

  /// Whether a batch that missed the flow cache `misses` times in `frames` should have
  /// the next batch prefetch FDB buckets: when a quarter or more of its frames missed.
  @inline(__always)
  static func prefetchWanted(misses: Int, frames: Int) -> Bool { misses &* 4 >= frames }

  // MARK: Counters

  @inline(__always) func count(_ index: Int, _ amount: Int = 1) {
    counters[index] &+= UInt64(truncatingIfNeeded: amount)
  }

  @inline(__always) func drop(_ reason: DropReason) {
    counters[Counter.drop(reason)] &+= 1
  }

  /// Adds a batch's received frames and bytes (every frame, dropped or not).
  @inline(__always) func countReceived(interface: UInt16, frames: Int, bytes: Int) {
    count(Counter.rxFrames(Int(interface)), frames)
    count(Counter.rxBytes(Int(interface)), bytes)
    countersTouched = true
  }

  /// The fast paths' masks (decap outer headers, inner flow hash) are written for
  /// little-endian loads; a big-endian host takes the general paths for every frame.
  @inline(__always) static var fastPathByteOrder: Bool {
    #if _endian(little)
      return true
    #else
      return false
    #endif
  }
}

/// One source cache entry: an FDB key and the tag it was verified under
/// (`Pipeline.sourceCacheTagBase | target index`); key 0 never matches a real key.
struct SourceCacheEntry {
  var key: UInt64 = 0
  var tag: UInt64 = 0
}
