import Synchronization

/// A ring of fixed-size transmit slots that the pipeline fills in place, one per
/// (worker, interface). Its slot layout is the kernel's TPACKET TX layout (a status word,
/// a length word, frame data at a fixed offset), so an AF_PACKET port hands the mmap'd
/// ring itself to the pipeline and in-memory ports use the same code path.
///
/// A slot is free while its status has neither `sendRequest` nor `sending` set; the
/// pipeline writes the frame, then the length, then sets `sendRequest` with release
/// ordering; the consumer (kernel, or `MemoryPort.flushTransmit`) clears it.
///
/// Not thread-safe: one producer (the worker) and one consumer.
public struct TxRing {
  public static let available: UInt32 = 0
  public static let sendRequest: UInt32 = 1
  public static let sending: UInt32 = 2

  public let base: UnsafeMutableRawPointer
  public let slotSize: Int
  public let slotMask: Int
  public let statusOffset: Int
  public let lengthOffset: Int
  /// Where a frame's first byte goes in a slot: the kernel's data offset plus
  /// `framePrefix`.
  public let dataOffset: Int
  /// Bytes the consumer expects in front of every frame and counted in its length (a
  /// zeroed `virtio_net_hdr` on a packet socket with `PACKET_VNET_HDR`, else 0). The
  /// pipeline never writes them: they stay as the ring was set up.
  public let framePrefix: Int
  /// Largest frame a slot holds.
  public let maxFrameLength: Int
  /// One past the last slot.
  let end: UnsafeMutableRawPointer
  /// The next slot to fill: a pointer rather than an index, so that reserving and
  /// committing a frame cost no multiplication.
  public var next: UnsafeMutableRawPointer
  /// Slots filled since the consumer was last kicked.
  public var pending = 0
  /// The TCP coalescer of a ring toward a port that takes super-frames (set by
  /// `Pipeline.attach`), nil elsewhere. With one, every frame goes through it: it also
  /// rewrites the `virtio_net_hdr` in front of each, since a slot that held a
  /// super-frame holds its header until written again.
  public var coalescer: UnsafeMutablePointer<TCPCoalescer>? = nil {
    didSet { commitsSpecially = coalescer != nil || inPlace != nil }
  }
  /// The UDP GSO segmenter of the underlay ring toward a packet socket with
  /// `PACKET_VNET_HDR` (set by `Pipeline.attach`), nil elsewhere; see `commitEncapsulated`.
  public var segmenter: UnsafeMutablePointer<UnderlaySegmenter>? = nil
  /// The shared UMEM of an AF_XDP port that sends received frames where they are (set by
  /// the port), nil elsewhere; see `commitInPlace`.
  public var inPlace: UnsafeMutablePointer<InPlaceTransmit>? = nil {
    didSet { commitsSpecially = coalescer != nil || inPlace != nil }
  }
  /// The ring has a coalescer or sends in place: `commit(copying:)` tests this one flag
  /// before its plain copy, not both pointers.
  private(set) var commitsSpecially = false

  public init(
    base: UnsafeMutableRawPointer, slotSize: Int, slotCount: Int, statusOffset: Int, lengthOffset: Int,
    dataOffset: Int, framePrefix: Int = 0
  ) {
    precondition(slotCount > 0 && slotCount & (slotCount - 1) == 0, "slot count must be a power of two")
    self.base = base
    self.slotSize = slotSize
    slotMask = slotCount - 1
    self.statusOffset = statusOffset
    self.lengthOffset = lengthOffset
    self.dataOffset = dataOffset + framePrefix
    self.framePrefix = framePrefix
    maxFrameLength = slotSize - self.dataOffset
    end = base + slotSize * slotCount
    next = base
  }

  public var slotCount: Int { slotMask + 1 }
  /// Index of the next slot to fill.
  public var head: Int { (next - base) / slotSize }

  @inline(__always)
  func status(_ slot: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt32>> {
    (slot + statusOffset).assumingMemoryBound(to: Atomic<UInt32>.self)
  }

  /// Where to write the next frame, or nil when the ring is full.
  @inline(__always)
  public func reserve() -> UnsafeMutableRawPointer? {
    let state = status(next).pointee.load(ordering: .acquiring)
    if state & (Self.sendRequest | Self.sending) != 0 { return nil }
    return next + dataOffset
  }

  /// Hands the frame written at the reserved slot to the consumer (through the ring's
  /// coalescer, if it has one; `checksumTrusted`: the frame's TCP checksum need not be
  /// verified before it is merged, see `FrameFlags.builtOnThisHost`).
  @inline(__always)
  public mutating func commit(length: Int, checksumTrusted: Bool = false) {
    if let coalescer {
      commitCoalescing(
        length: length, coalescer, frameFlags: checksumTrusted ? FrameFlags.builtOnThisHost : 0)
      return
    }
    commitUncoalesced(length: length)
  }

  /// `commit` of a frame not yet written: the `length` bytes at `source` are copied to
  /// the reserved slot, except when the ring's coalescer appends them to a super-frame
  /// (then only their payload is copied, there) or when `source` lies in the receive area
  /// of the UMEM the ring's port shares (`inPlace`: then the frame leaves from there). (The coalescer reads `source`, not the
  /// slot: reading a slot just written waits for the copy's stores.) `frameFlags` are the
  /// received frame's (`FrameFlags`), for the coalescer: with `builtOnThisHost` it trusts
  /// the TCP checksum; with `innerChecksumPartial` that checksum is unfinished, which it
  /// deals with (a ring without one never gets such a frame).
  @inline(__always)
  public mutating func commit(copying source: UnsafeRawPointer, length: Int, frameFlags: UInt8 = 0) {
    if commitsSpecially {
      if let coalescer {
        commitCoalescing(length: length, coalescer, frameFlags: frameFlags, source: source)
        return
      }
      // Received into the UMEM this ring's port shares: the frame leaves where it is.
      if let offset = inPlace.unsafelyUnwrapped.pointee.claim(source, headroom: 0) {
        commitInPlace(offset: offset, length: length)
        return
      }
    }
    // No `innerChecksumPartial` here: the pipeline's fast path leaves such frames to the
    // general path unless every access ring has a coalescer (`fastPathRefusedFlags`).
    (next + dataOffset).copyFrameBytes(from: source, count: length)
    commitUncoalesced(length: length)
  }

  /// Moves past the reserved slot without handing it over: a coalescer or segmenter
  /// builds a run in it and sets its status when the run ends.
  @inline(__always)
  mutating func claimSlot() {
    next += slotSize
    if next == end { next = base }
    pending &+= 1
  }

  /// Hands over the reserved slot as standing for the `length`-byte frame at UMEM offset
  /// `offset` (`InPlaceTransmit.claim`), which the port sends from where it is. Only for
  /// a ring with `inPlace`, which has neither a coalescer nor a segmenter.
  @inline(__always)
  public mutating func commitInPlace(offset: Int, length: Int) {
    (next + InPlaceTransmit.markerOffset).storeBytes(of: UInt64(truncatingIfNeeded: offset), as: UInt64.self)
    commitUncoalesced(length: length)
  }

  /// `commit` for a ring that has neither a coalescer nor a segmenter: no check.
  @inline(__always)
  public mutating func commitUncoalesced(length: Int) {
    (next + lengthOffset).storeBytes(of: UInt32(truncatingIfNeeded: length &+ framePrefix), as: UInt32.self)
    status(next).pointee.store(Self.sendRequest, ordering: .releasing)
    next += slotSize
    if next == end { next = base }
    pending &+= 1
  }
}

extension TxRing {
  /// A ring whose only slot is never free: `reserve()` always fails. Stands in for an
  /// interface that has no ring attached, so that callers need no optional check.
  static let unattached: TxRing = {
    let memory = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
    memory.initializeMemory(as: UInt32.self, repeating: TxRing.sending, count: 16)
    return TxRing(base: memory, slotSize: 64, slotCount: 1, statusOffset: 0, lengthOffset: 4, dataOffset: 32)
  }()
}

/// Ring memory for ports that are not kernel rings (tests, Bench, pcap output).
public final class TxRingStorage {
  public let ring: UnsafeMutablePointer<TxRing>
  private let memory: UnsafeMutableRawPointer
  /// The consumer's position.
  public var tail = 0

  /// Slot header as TPACKET_V2's: status at 0, length at 4, data at 32 (after
  /// `framePrefix` bytes of `virtio_net_hdr`, when given, as a packet socket with
  /// `PACKET_VNET_HDR` has it).
  public init(slotCount: Int = 1024, maxFrameLength: Int = 9216 + 128, framePrefix: Int = 0) {
    let slotSize = (32 + framePrefix + maxFrameLength + 63) & ~63
    memory = .allocate(byteCount: slotSize * slotCount, alignment: 64)
    memory.initializeMemory(as: UInt8.self, repeating: 0, count: slotSize * slotCount)
    ring = .allocate(capacity: 1)
    ring.initialize(
      to: TxRing(
        base: memory, slotSize: slotSize, slotCount: slotCount, statusOffset: 0, lengthOffset: 4,
        dataOffset: 32, framePrefix: framePrefix))
  }

  deinit {
    ring.deinitialize(count: 1)
    ring.deallocate()
    memory.deallocate()
  }

  /// Frees every slot committed since the last drain without reading it, and returns
  /// how many (Bench: a port that only counts what it sends). The producer runs on the
  /// caller's thread, so `pending` says how many there are.
  public func discard() -> Int {
    let r = ring.pointee
    let count = r.pending
    let slotCount = r.slotMask + 1
    // Up to the end of the ring, then from its start: no wrap test per slot.
    let beforeWrap = min(count, slotCount - tail)
    var status = r.base + tail * r.slotSize + r.statusOffset
    for _ in 0..<beforeWrap {
      status.assumingMemoryBound(to: Atomic<UInt32>.self).pointee.store(
        TxRing.available, ordering: .releasing)
      status += r.slotSize
    }
    status = r.base + r.statusOffset
    for _ in beforeWrap..<count {
      status.assumingMemoryBound(to: Atomic<UInt32>.self).pointee.store(
        TxRing.available, ordering: .releasing)
      status += r.slotSize
    }
    tail = (tail + count) & r.slotMask
    ring.pointee.pending = 0
    return count
  }

  /// Calls `body` with each frame committed since the last drain, oldest first, and
  /// frees the slots.
  public func drain(_ body: (UnsafeRawBufferPointer) -> Void) {
    let r = ring.pointee
    while true {
      let slot = r.base + tail * r.slotSize
      guard r.status(slot).pointee.load(ordering: .acquiring) == TxRing.sendRequest else { break }
      let length = Int((slot + r.lengthOffset).load(as: UInt32.self))
      // A slot standing for a frame sent where it was received (`commitInPlace`).
      let marker = slot + InPlaceTransmit.markerOffset
      let offset = Int(truncatingIfNeeded: marker.load(as: UInt64.self))
      if let inPlace = r.inPlace, offset != 0 {
        body(UnsafeRawBufferPointer(start: inPlace.pointee.area + offset, count: length))
        marker.storeBytes(of: 0, as: UInt64.self)
      } else {
        // The frame prefix (a `virtio_net_hdr`) is part of what the consumer gets.
        body(UnsafeRawBufferPointer(start: slot + (r.dataOffset - r.framePrefix), count: length))
      }
      r.status(slot).pointee.store(TxRing.available, ordering: .releasing)
      tail = (tail + 1) & r.slotMask
    }
    ring.pointee.pending = 0
  }
}
