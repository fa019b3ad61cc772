import CPacket
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The UMEM of one queue of an interface: the memory that every AF_XDP socket bound to
/// that queue receives into and transmits from, with its fill and completion rings. The
/// kernel keeps one fill and one completion ring per (interface, queue), whatever the
/// number of sockets bound there (XDP_SHARED_UMEM), so the switch's workers can share a
/// queue: each has its own socket (its own RX and TX rings), and the steering program
/// spreads the queue's flows over them.
///
/// Layout: `receiveChunks` chunks that the kernel fills with received frames (any socket
/// of the queue may receive into any of them), then, per socket, `slotsPerSocket` chunks
/// laid out as that port's `TxRing` (status and length words, the frame at
/// `AFXDPPort.transmitDataOffset`).
///
/// Thread safety: the area and the geometry are immutable. The fill and completion rings
/// have a single producer and a single consumer on our side, and the workers of a queue
/// share them: they are used only under `rings`' lock, a batch at a time (one uncontended
/// lock per batch when a queue has one worker). A transmit slot's status word is an
/// atomic, so the worker that reaps a completion frees another worker's slot with a
/// releasing store that the slot's owner acquires in `TxRing.reserve`.
final class SharedUMEM {
  let area: UnsafeMutableRawPointer
  let frameSize: Int
  let receiveChunks: Int
  let slotsPerSocket: Int
  let sockets: Int
  private let areaSize: Int
  private let chunkMask: UInt64
  let handle: OpaquePointer
  private let rings: Mutex<FillAndCompletion>
  /// Sockets bound and not yet closed; the UMEM goes with the last (libxdp refuses to
  /// delete a UMEM a socket still uses).
  private let openSockets = Atomic<Int>(0)
  private let released = Atomic<Bool>(false)

  struct FillAndCompletion {
    var fill: XSKRing
    var completion: XSKRing
  }

  /// Maps and registers the memory of `sockets` sockets on one queue of `interface` (the
  /// interface names the errors only). Every receive chunk goes to the fill ring at once.
  init(interface: String, sockets: Int, frameSize: Int, ringSize: Int) throws {
    precondition(sockets >= 1)
    precondition(ringSize > 0 && ringSize & (ringSize - 1) == 0)
    precondition(frameSize >= 2048 && frameSize & (frameSize - 1) == 0)
    self.frameSize = frameSize
    self.sockets = sockets
    receiveChunks = ringSize
    slotsPerSocket = ringSize
    chunkMask = ~UInt64(frameSize - 1)
    areaSize = (1 + sockets) * ringSize * frameSize
    guard
      let memory = mmap(nil, areaSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      memory != MAP_FAILED
    else { throw AFPacketError.system(operation: "mmap(UMEM)", interface: interface, errno: Glibc.errno) }
    area = memory
    // Every socket's transmit slots may be in flight at once.
    var completionSize = ringSize
    while completionSize < sockets * ringSize { completionSize <<= 1 }
    var handle: OpaquePointer? = nil
    var fill = cp_xsk_ring()
    var completion = cp_xsk_ring()
    let result = cp_xsk_umem_create(
      memory, UInt64(areaSize), UInt32(frameSize), UInt32(ringSize), UInt32(completionSize), &handle, &fill,
      &completion)
    guard result == 0, let handle else {
      munmap(memory, areaSize)
      throw AFPacketError.from(errno: -result, operation: "AF_XDP UMEM", interface: interface)
    }
    self.handle = handle
    var filling = XSKRing(fill, side: .producer)
    for chunk in 0..<ringSize { filling.address(chunk).pointee = UInt64(chunk * frameSize) }
    filling.submit(ringSize)
    rings = Mutex(FillAndCompletion(fill: filling, completion: XSKRing(completion, side: .consumer)))
  }

  deinit { release() }

  /// UMEM offset of socket `index`'s first transmit slot.
  func transmitBase(socket index: Int) -> Int { (receiveChunks + index * slotsPerSocket) * frameSize }

  func socketOpened() { openSockets.add(1, ordering: .relaxed) }

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

  /// Gives `count` received chunks (any address inside each) back to the fill ring;
  /// returns how many it took. The fill ring has room for every receive chunk, so it
  /// takes them all.
  func refill(_ addresses: UnsafePointer<UInt64>, count: Int) -> Int {
    rings.withLock { rings in
      let taking = min(count, rings.fill.free())
      for offset in 0..<taking { rings.fill.address(offset).pointee = addresses[offset] & chunkMask }
      rings.fill.submit(taking)
      return taking
    }
  }

  /// Whether a zero-copy driver waits for a wakeup to look at the fill ring again.
  var fillNeedsWakeup: Bool { rings.withLock { $0.fill.needsWakeup } }

  /// Frees the transmit slots (of any socket of the queue) whose frames the kernel has
  /// sent: each completed address is the frame's, `layout.dataOffset` past its slot (every
  /// socket's `TxRing` has the same slot layout).
  func reapCompletions(layout: TxRing) {
    rings.withLock { rings in
      let count = rings.completion.available(limit: Int.max)
      if count <= 0 { return }
      for offset in 0..<count {
        let address = Int(truncatingIfNeeded: rings.completion.address(offset).pointee)
        layout.status(area + (address &- layout.dataOffset)).pointee.store(
          TxRing.available, ordering: .releasing)
      }
      rings.completion.release(count)
    }
  }
}
