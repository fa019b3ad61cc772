import CPacket
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The memory of one or more AF_XDP sockets: the chunks the kernel receives into and the
/// slots the switch transmits from, registered once as a UMEM. The kernel keeps one fill
/// and one completion ring per (interface, queue) a UMEM is bound to: a *context* here.
/// Two ways of sharing, chosen by `LiveSwitch`:
///
/// - **One queue, several workers** (`sendsInPlace` false, one context): every worker's
///   socket on a queue shares the queue's fill and completion rings, and the steering
///   program spreads the queue's flows over the sockets.
/// - **Several interfaces, one worker** (`sendsInPlace` true, a context per queue the
///   worker owns, one socket each): a frame received on one interface can leave through
///   another from where it was received (`InPlaceTransmit`): encapsulated with its outer
///   header written in the chunk's headroom, or decapsulated by sending from the inner
///   frame on. Such a chunk goes back to its context's fill ring when the kernel has sent
///   it (it shows up on the sending context's completion ring), not after the batch.
///
/// Layout: `receiveChunks` chunks per context (context `c` receives into chunks
/// `c * receiveChunks ..< (c + 1) * receiveChunks`, and its fill ring has room for them
/// all), then, per socket, `slotsPerSocket` chunks laid out as that port's `TxRing`
/// (status and length words, the in-place marker, the frame at
/// `AFXDPPort.transmitDataOffset`).
///
/// Thread safety: the area and the geometry are immutable. A context's fill and completion
/// rings have a single producer and a single consumer on our side, and the workers of a
/// queue share them: they are used only under the context's lock, a batch at a time (one
/// uncontended lock per batch when a queue has one worker). A transmit slot's status word
/// is an atomic, so the worker that reaps a completion frees another worker's slot with a
/// releasing store that the slot's owner acquires in `TxRing.reserve`. `keep` (in-place
/// sending) is touched only by the one worker that owns every socket of the UMEM.
final class SharedUMEM {
  let area: UnsafeMutableRawPointer
  let frameSize: Int
  /// Receive chunks per context.
  let receiveChunks: Int
  let slotsPerSocket: Int
  let contextCapacity: Int
  let socketCapacity: Int
  /// Frames may leave from the chunk they were received in (`InPlaceTransmit`).
  let sendsInPlace: Bool
  /// What the transmit rings of this UMEM's ports use to send in place; nil unless
  /// `sendsInPlace`.
  let inPlace: UnsafeMutablePointer<InPlaceTransmit>?
  private let areaSize: Int
  private let chunkMask: UInt64
  /// Bytes of receive chunks, all contexts': addresses below are receive chunks.
  private let receiveBytes: UInt64
  /// log2 of a chunk's and of a context's receive chunks' bytes (both powers of two).
  private let chunkShift: UInt64
  private let contextShift: UInt64
  private let keep: UnsafeMutablePointer<UInt8>
  let handle: OpaquePointer
  private let contexts: [ContextRings]
  private let layout = Mutex(Allocation())
  /// Sockets bound and not yet closed; the UMEM goes with the last (libxdp refuses to
  /// delete a UMEM a socket still uses).
  private let openSockets = Atomic<Int>(0)
  private let released = Atomic<Bool>(false)

  struct FillAndCompletion {
    var fill: XSKRing
    var completion: XSKRing
  }

  /// One context's rings, set when its first socket binds.
  final class ContextRings: Sendable {
    let rings = Mutex<FillAndCompletion?>(nil)
  }

  /// Which context each (interface, queue) got, and the sockets handed out.
  private struct Allocation {
    var contexts: [QueueKey: Int] = [:]
    var sockets = 0
  }

  private struct QueueKey: Hashable {
    let interface: String
    let queue: UInt32
  }

  /// Maps and registers the memory of `sockets` sockets over `contexts` (interface,
  /// queue) pairs, `socketsPerContext` at most on one (`interface` names the errors only).
  /// Each context's receive chunks go to its fill ring when its first socket binds.
  init(
    interface: String, contexts: Int = 1, sockets: Int, socketsPerContext: Int? = nil, frameSize: Int,
    ringSize: Int, sendsInPlace: Bool = false
  ) throws {
    precondition(contexts >= 1 && contexts <= Int(CP_XSK_MAX_CONTEXTS) && sockets >= 1)
    precondition(ringSize > 0 && ringSize & (ringSize - 1) == 0)
    precondition(frameSize >= 2048 && frameSize & (frameSize - 1) == 0)
    self.frameSize = frameSize
    contextCapacity = contexts
    socketCapacity = sockets
    self.sendsInPlace = sendsInPlace
    // Chunks sent in place are away from the fill ring until sent: twice the ring's worth
    // per context, so that a full TX ring of them does not leave the queue without any.
    receiveChunks = sendsInPlace ? 2 * ringSize : ringSize
    slotsPerSocket = ringSize
    chunkMask = ~UInt64(frameSize - 1)
    chunkShift = UInt64(frameSize.trailingZeroBitCount)
    contextShift = UInt64((receiveChunks * frameSize).trailingZeroBitCount)
    receiveBytes = UInt64(contexts * receiveChunks * frameSize)
    areaSize = (contexts * receiveChunks + sockets * ringSize) * frameSize
    guard
      let memory = mmap(nil, areaSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      memory != MAP_FAILED
    else { throw AFPacketError.system(operation: "mmap(UMEM)", interface: interface, errno: Glibc.errno) }
    area = memory
    // Every transmit slot of a context's sockets may be in flight at once.
    var completionSize = ringSize
    while completionSize < (socketsPerContext ?? sockets) * ringSize { completionSize <<= 1 }
    var handle: OpaquePointer? = nil
    var fill = cp_xsk_ring()
    var completion = cp_xsk_ring()
    let result = cp_xsk_umem_create(
      memory, UInt64(areaSize), UInt32(frameSize), UInt32(receiveChunks), UInt32(completionSize), &handle,
      &fill, &completion)
    guard result == 0, let handle else {
      munmap(memory, areaSize)
      throw AFPacketError.from(errno: -result, operation: "AF_XDP UMEM", interface: interface)
    }
    self.handle = handle
    self.contexts = (0..<contexts).map { _ in ContextRings() }
    keep = .allocate(capacity: contexts * receiveChunks)
    keep.initialize(repeating: 0, count: contexts * receiveChunks)
    if sendsInPlace {
      let view = UnsafeMutablePointer<InPlaceTransmit>.allocate(capacity: 1)
      view.initialize(
        to: InPlaceTransmit(
          area: memory, receiveBytes: Int(receiveBytes), chunkShift: frameSize.trailingZeroBitCount,
          keep: keep))
      inPlace = view
    } else {
      inPlace = nil
    }
  }

  deinit {
    release()
    keep.deallocate()
    inPlace?.deallocate()
  }

  /// The context of (`interface`, `queue`): the one its first socket was given, else the
  /// next free one, or nil when every context is taken.
  func context(interface: String, queue: UInt32) -> Int? {
    layout.withLock { allocation in
      let key = QueueKey(interface: interface, queue: queue)
      if let context = allocation.contexts[key] { return context }
      guard allocation.contexts.count < contextCapacity else { return nil }
      allocation.contexts[key] = allocation.contexts.count
      return allocation.contexts[key]
    }
  }

  /// Gives back a context whose first socket failed to bind, so that the next one takes
  /// its place (libxdp gives the UMEM's own rings to the first context that binds).
  func contextFailed(interface: String, queue: UInt32, context: Int) {
    layout.withLock { allocation in
      let key = QueueKey(interface: interface, queue: queue)
      if allocation.contexts[key] == context && context == allocation.contexts.count - 1
        && contexts[context].rings.withLock({ $0 == nil })
      {
        allocation.contexts[key] = nil
      }
    }
  }

  /// The next socket's index (its transmit slots), or nil when all are taken.
  func allocateSocket() -> Int? {
    layout.withLock { allocation in
      guard allocation.sockets < socketCapacity else { return nil }
      allocation.sockets += 1
      return allocation.sockets - 1
    }
  }

  /// UMEM offset of socket `index`'s first transmit slot.
  func transmitBase(socket index: Int) -> Int { Int(receiveBytes) + index * slotsPerSocket * frameSize }

  /// Called when a socket has bound to `context`, with the context's rings: the first
  /// socket of a context gives its receive chunks to its fill ring.
  func socketOpened(context: Int, fill: cp_xsk_ring, completion: cp_xsk_ring) {
    openSockets.add(1, ordering: .relaxed)
    contexts[context].rings.withLock { rings in
      if rings != nil { return }
      var filling = XSKRing(fill, side: .producer)
      let first = context * receiveChunks
      for chunk in 0..<receiveChunks { filling.address(chunk).pointee = UInt64((first + chunk) * frameSize) }
      filling.submit(receiveChunks)
      rings = FillAndCompletion(fill: filling, completion: XSKRing(completion, side: .consumer))
    }
  }

  /// Holds the UMEM while the sockets of several interfaces are opened on it, so that an
  /// interface whose sockets fail and close does not release it under the next one;
  /// `openingDone` lets it go (released then if no socket is open).
  func holdWhileOpening() { openSockets.add(1, ordering: .relaxed) }

  func openingDone() { socketClosed() }

  /// Called once per socket after it is closed; the last one releases the UMEM.
  func socketClosed() {
    if openSockets.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { release() }
  }

  private func release() {
    guard openSockets.load(ordering: .acquiring) == 0,
      !released.exchange(true, ordering: .acquiringAndReleasing)
    else { return }
    _ = cp_xsk_umem_delete(handle)
    munmap(area, areaSize)
  }

  /// Gives `count` received chunks of `context` (any address inside each) back to its fill
  /// ring, except those going out in place (`keep`: their completion gives them back);
  /// returns how many it took or kept. The fill ring has room for every receive chunk of
  /// its context, so it takes them all.
  func refill(context: Int, _ addresses: UnsafePointer<UInt64>, count: Int) -> Int {
    fill(context: context, addresses, count: count, skippingKept: sendsInPlace)
  }

  /// Puts `count` chunks into `context`'s fill ring, those marked in `keep` left out (and
  /// unmarked) when `skippingKept`; returns how many it went through.
  @inline(__always)
  private func fill(context: Int, _ addresses: UnsafePointer<UInt64>, count: Int, skippingKept: Bool) -> Int {
    contexts[context].rings.withLock { rings in
      guard rings != nil else { return 0 }
      var taken = 0
      var offset = 0
      let room = rings!.fill.free()
      while offset < count {
        let address = addresses[offset]
        if skippingKept {
          let chunk = Int(truncatingIfNeeded: address &>> chunkShift)
          if keep[chunk] != 0 {
            keep[chunk] = 0
            offset &+= 1
            continue
          }
        }
        if taken == room { break }
        rings!.fill.address(taken).pointee = address & chunkMask
        taken &+= 1
        offset &+= 1
      }
      rings!.fill.submit(taken)
      return offset
    }
  }

  /// Whether a zero-copy driver waits for a wakeup to look at `context`'s fill ring again.
  func fillNeedsWakeup(context: Int) -> Bool {
    contexts[context].rings.withLock { $0?.fill.needsWakeup ?? false }
  }

  /// Frees the transmit slots (of any socket of `context`) whose frames the kernel has
  /// sent: each completed address is the frame's, `layout.dataOffset` past its slot (every
  /// socket's `TxRing` has the same slot layout). A completed receive chunk (sent in
  /// place) goes back to the fill ring of the context that received it.
  func reapCompletions(context: Int, layout: TxRing, scratch: UnsafeMutablePointer<UInt64>, capacity: Int) {
    var chunks = 0
    contexts[context].rings.withLock { rings in
      guard rings != nil else { return }
      let count = rings!.completion.available(limit: capacity)
      if count <= 0 { return }
      for offset in 0..<count {
        let address = rings!.completion.address(offset).pointee
        if address < receiveBytes {
          scratch[chunks] = address
          chunks &+= 1
          continue
        }
        layout.status(area + (Int(truncatingIfNeeded: address) &- layout.dataOffset)).pointee.store(
          TxRing.available, ordering: .releasing)
      }
      rings!.completion.release(count)
    }
    // Chunks were received in order, so runs of one context are the rule: refilled a run
    // at a time, outside the completion ring's lock.
    var start = 0
    while start < chunks {
      let owner = scratch[start] &>> contextShift
      var end = start &+ 1
      while end < chunks && scratch[end] &>> contextShift == owner { end &+= 1 }
      // Sent, so no longer kept whatever `keep` says (its batch may not be released yet).
      _ = fill(
        context: Int(truncatingIfNeeded: owner), scratch + start, count: end &- start, skippingKept: false)
      start = end
    }
  }
}
