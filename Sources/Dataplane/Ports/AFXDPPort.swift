import CPacket
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A `LivePort` on one queue of a Linux interface through an AF_XDP socket (libxdp, copy
/// mode, or zero-copy where the driver offers it). Frames reach it through the interface's
/// `XDPAttachment`, which redirects what the switch owns and passes the rest to the kernel.
///
/// Memory: the queue's `SharedUMEM`, whose receive chunks the kernel fills with received
/// frames (handed to the pipeline in place, given back to the fill ring on
/// `releaseReceived`), and this socket's `transmitSlots` chunks there, laid out as a
/// `TxRing` (status, length, frame at `dataOffset`) that the pipeline fills as it fills an
/// AF_PACKET ring. `flushTransmit` posts every committed slot as a TX descriptor and kicks
/// the kernel; a slot stays `sending` until its address comes back on the completion ring.
/// Several ports may share a queue (`open(interface:queue:sockets:...)`, one per worker):
/// each has its own RX and TX rings, and they share the UMEM's fill and completion rings.
/// Or one worker's ports on several interfaces share a UMEM (`open(interface:queue:sharing:...)`),
/// and a frame received on one leaves through another without a copy: the pipeline
/// commits it to the egress ring as a slot that only holds its address
/// (`TxRing.commitInPlace`), and the port posts that address.
///
/// No offload metadata crosses AF_XDP: frames arrive as the wire would carry them, so on
/// a veth the attachment has turned the peer's TSO/GSO off and capped its MTU (the kernel
/// does that when XDP is attached); frames leave with no `virtio_net_hdr`, so the pipeline
/// neither coalesces toward nor segments onto an AF_XDP port.
///
/// One port per (worker, interface), owned by that worker's thread; `statistics` may be
/// read from any thread.
public final class AFXDPPort: LivePort {
  public struct Options: Sendable, Equatable {
    /// UMEM chunk size: the largest frame either way, with `TxRing`'s slot header.
    public var frameSize = 4096
    /// Entries in each of the four rings, and chunks for receiving and for transmitting.
    public var ringSize = 1024
    /// Recognise and finish checksums a local stack left unfinished (see `receive`); off
    /// only for `Bench baseline-forward`, which does no per-frame work by design.
    public var finishesChecksums = true
    public init() {}
  }

  /// Where a frame starts in a transmit slot: the `TxRing` status and length words come
  /// first, the frame on its own cache line.
  static let transmitDataOffset = 64
  /// How long binding waits, at most, for a queue that a socket closed a moment ago still
  /// holds: 200 x 10 ms.
  static let busyRetries = 200
  static let busyRetryMicroseconds: UInt32 = 10_000

  public let name: String
  public let queue: UInt32
  public let isUnderlay: Bool
  public var io: PortIO { .afXDP }
  private let finishesChecksums: Bool
  /// The kernel bound the socket in zero-copy mode (the driver supports it).
  public let zeroCopy: Bool
  public var switchInterface: UInt16 = 0
  public let fd: Int32
  public let transmitRing: UnsafeMutablePointer<TxRing>
  public private(set) var transmitLinkDown = false

  private let socket: OpaquePointer
  private let memory: SharedUMEM
  private let area: UnsafeMutableRawPointer
  /// UMEM offset of this socket's first transmit slot.
  private let transmitBase: Int
  private var rx: XSKRing
  private var tx: XSKRing
  /// The next transmit slot to post to the kernel (slots are committed in order).
  private var postCursor = 0
  /// The UMEM's context (interface and queue) this socket is bound to: its fill and
  /// completion rings.
  private let context: Int
  /// UMEM addresses of the frames handed out by the last `receive`.
  private let held: UnsafeMutablePointer<UInt64>
  private var heldCount = 0
  /// Completed receive chunks (sent in place), between the completion ring and their
  /// fill ring.
  private let completed: UnsafeMutablePointer<UInt64>
  /// Completions reaped at most at once.
  private static let reapBatch = 1024
  private let counters = PortCounters()
  private let kernelCounters = Mutex<cp_xdp_statistics>(cp_xdp_statistics())
  private var closed = false

  /// Opens the only socket on `queue` of `interface` (in the current network namespace)
  /// and puts it into `attachment`'s map.
  public convenience init(
    interface: String, queue: UInt32 = 0, isUnderlay: Bool, attachment: XDPAttachment,
    options: Options = Options()
  ) throws {
    let memory = try SharedUMEM(
      interface: interface, sockets: 1, frameSize: options.frameSize, ringSize: options.ringSize)
    try self.init(
      interface: interface, queue: queue, memory: memory, isUnderlay: isUnderlay, options: options)
    do {
      try attachment.insert(socket: fd, queue: queue)
    } catch {
      close()
      throw error
    }
  }

  /// Opens `sockets` sockets on `queue` of `interface` sharing one UMEM, and steers the
  /// queue's flows over them (`attachment`'s program spreads each queue over
  /// `socketsPerQueue` map slots; slot `i` goes to socket `i % sockets`). Everything opened
  /// is closed again on failure.
  public static func open(
    interface: String, queue: UInt32, sockets: Int, isUnderlay: Bool, attachment: XDPAttachment,
    options: Options = Options()
  ) throws -> [AFXDPPort] {
    let memory = try SharedUMEM(
      interface: interface, sockets: sockets, frameSize: options.frameSize, ringSize: options.ringSize)
    var ports: [AFXDPPort] = []
    do {
      for _ in 0..<sockets {
        ports.append(
          try AFXDPPort(
            interface: interface, queue: queue, memory: memory, isUnderlay: isUnderlay, options: options))
      }
      for slot in 0..<attachment.program.socketsPerQueue {
        try attachment.insert(socket: ports[slot % sockets].fd, queue: queue, slot: slot)
      }
    } catch {
      for port in ports { port.close() }
      throw error
    }
    return ports
  }

  /// Opens the one socket on `queue` of `interface` in `memory`, a UMEM the worker's other
  /// AF_XDP ports share (`SharedUMEM.sendsInPlace`), and puts it into `attachment`'s map:
  /// frames received on any of them may leave through this one from where they were
  /// received.
  static func open(
    interface: String, queue: UInt32, sharing memory: SharedUMEM, isUnderlay: Bool, attachment: XDPAttachment,
    options: Options = Options()
  ) throws -> AFXDPPort {
    let port = try AFXDPPort(
      interface: interface, queue: queue, memory: memory, isUnderlay: isUnderlay, options: options)
    do {
      for slot in 0..<attachment.program.socketsPerQueue {
        try attachment.insert(socket: port.fd, queue: queue, slot: slot)
      }
    } catch {
      port.close()
      throw error
    }
    return port
  }

  /// Opens one socket on queue 0 of each interface (each behind its attachment), all in
  /// one UMEM, so that a frame received on one leaves through another from where it was
  /// received (`TxRing.inPlace`, `InPlaceTransmit`). Everything opened is closed again
  /// on failure.
  public static func openSharingMemory(
    _ interfaces: [(name: String, isUnderlay: Bool, attachment: XDPAttachment)], options: Options = Options()
  ) throws -> [AFXDPPort] {
    let memory = try SharedUMEM(
      interface: interfaces.map(\.name).joined(separator: ","), contexts: interfaces.count,
      sockets: interfaces.count, socketsPerContext: 1, frameSize: options.frameSize,
      ringSize: options.ringSize,
      sendsInPlace: true)
    memory.holdWhileOpening()
    defer { memory.openingDone() }
    var ports: [AFXDPPort] = []
    do {
      for interface in interfaces {
        ports.append(
          try open(
            interface: interface.name, queue: 0, sharing: memory, isUnderlay: interface.isUnderlay,
            attachment: interface.attachment, options: options))
      }
    } catch {
      for port in ports { port.close() }
      throw error
    }
    return ports
  }

  private init(
    interface: String, queue: UInt32, memory: SharedUMEM, isUnderlay: Bool, options: Options
  ) throws {
    name = interface
    self.queue = queue
    self.isUnderlay = isUnderlay
    self.memory = memory
    finishesChecksums = options.finishesChecksums
    area = memory.area
    guard let context = memory.context(interface: interface, queue: queue),
      let index = memory.allocateSocket()
    else {
      throw AFPacketError.from(
        errno: ENOSPC, operation: "AF_XDP socket (queue \(queue))", interface: interface)
    }
    self.context = context
    transmitBase = memory.transmitBase(socket: index)

    var handle: OpaquePointer? = nil
    var rings = (cp_xsk_ring(), cp_xsk_ring(), cp_xsk_ring(), cp_xsk_ring())
    var zeroCopy: Int32 = 0
    var result: Int32
    var retries = 0
    repeat {
      result = cp_xsk_open(
        interface, queue, memory.handle, UInt32(context), UInt32(memory.slotsPerSocket), &handle, &rings.0,
        &rings.1, &rings.2, &rings.3, &zeroCopy)
      // A socket closed on this queue a moment ago (a restart) keeps the queue until the
      // kernel's deferred release of its buffer pool has run: EBUSY meanwhile.
      guard result == -EBUSY, retries < Self.busyRetries else { break }
      retries += 1
      usleep(Self.busyRetryMicroseconds)
    } while true
    guard result >= 0, let handle else {
      memory.contextFailed(interface: interface, queue: queue, context: context)
      throw AFPacketError.from(
        errno: -result, operation: "AF_XDP socket (queue \(queue))", interface: interface)
    }
    memory.socketOpened(context: context, fill: rings.2, completion: rings.3)
    socket = handle
    fd = result
    self.zeroCopy = zeroCopy != 0
    rx = XSKRing(rings.0, side: .consumer)
    tx = XSKRing(rings.1, side: .producer)
    held = .allocate(capacity: FrameVector.capacity)
    completed = .allocate(capacity: Self.reapBatch)
    transmitRing = .allocate(capacity: 1)
    transmitRing.initialize(
      to: TxRing(
        base: area + transmitBase, slotSize: memory.frameSize, slotCount: memory.slotsPerSocket,
        statusOffset: 0, lengthOffset: 4, dataOffset: Self.transmitDataOffset))
    transmitRing.pointee.inPlace = memory.inPlace
  }

  deinit {
    close()
    transmitRing.deinitialize(count: 1)
    transmitRing.deallocate()
    held.deallocate()
    completed.deallocate()
  }

  public func close() {
    if closed { return }
    closed = true
    cp_xsk_close(socket)
    memory.socketClosed()
  }

  // MARK: Receive

  public func receive(into vector: inout FrameVector) -> Int {
    reapCompletions()
    let count = rx.available(
      limit: min(FrameVector.capacity &- vector.count, FrameVector.capacity &- heldCount))
    if count <= 0 { return 0 }
    var completed = 0
    for offset in 0..<count {
      let descriptor = rx.descriptor(offset).pointee
      held[heldCount &+ offset] = descriptor.addr
      let frame = area + Int(truncatingIfNeeded: descriptor.addr)
      let length = Int(descriptor.len)
      var flags: UInt8 = 0
      if finishesChecksums {
        if isUnderlay {
          flags = Self.underlayChecksumFlags(frame, length: length)
        } else if ChecksumCompletion.completeIfPartial(frame: frame, length: length) {
          completed &+= 1
        }
      }
      vector.append(frame, length: length, flags: flags)
    }
    rx.release(count)
    heldCount &+= count
    PortCounters.bump(counters.receivedFrames, count)
    if completed != 0 { PortCounters.bump(counters.checksumsCompleted, completed) }
    return count
  }

  /// AF_XDP says nothing about checksums, and a frame built by the local kernel (a vxlan
  /// device in a namespace behind a veth) arrives as the kernel left it for a NIC: the outer
  /// UDP checksum holding only its pseudo-header sum, or (RFC 7348 local checksum offload)
  /// a complete outer checksum over an inner TCP/UDP checksum still to finish. Both are
  /// what `checksumNotReady` tells the pipeline for AF_PACKET: trust the outer checksum,
  /// finish the inner one. Anything else is left to the pipeline's own verification.
  static func underlayChecksumFlags(_ frame: UnsafeMutableRawPointer, length: Int) -> UInt8 {
    let bytes = UnsafeRawPointer(frame)
    // The steering program passed only untagged IPv4 without options or IPv6 + UDP.
    let udp: Int
    switch bytes.be16(EthernetLayout.etherTypeOffset) {
    case EtherType.ipv4: udp = EthernetLayout.headerLength &+ IPv4Layout.minimumHeaderLength
    case EtherType.ipv6: udp = EthernetLayout.headerLength &+ IPv6Layout.headerLength
    default: return 0
    }
    let inner = udp &+ UDPLayout.headerLength &+ VXLANLayout.headerLength
    guard inner &+ EthernetLayout.headerLength <= length else { return 0 }
    // Neither test passes over the datagram unless its checksum field holds the
    // pseudo-header sum (`ChecksumCompletion.isPartial`): a received frame costs two
    // header parses, whatever its length. An outer checksum that is complete is left to
    // the pipeline to verify; with local checksum offload it covers an inner checksum
    // still to finish, which the second test finds.
    if bytes.be16(udp &+ UDPLayout.checksumOffset) != 0
      && ChecksumCompletion.isPartial(frame: bytes, length: length)
    {
      return FrameFlags.checksumNotReady
    }
    return ChecksumCompletion.isPartial(frame: bytes + inner, length: length &- inner)
      ? FrameFlags.checksumNotReady : 0
  }

  /// Gives the chunks of the last batch back to the queue's fill ring. The fill ring has
  /// room for every receive chunk, so it cannot be full while chunks are held here.
  public func releaseReceived() {
    if heldCount == 0 { return }
    let count = memory.refill(context: context, held, count: heldCount)
    if count < heldCount {
      // Cannot happen (see above); keep the rest rather than lose the chunks.
      memmove(held, held + count, (heldCount &- count) &* 8)
    }
    heldCount &-= count
    // In copy mode the kernel fills in softirq and needs no wakeup; a zero-copy driver
    // may wait for one after the fill ring ran dry.
    if zeroCopy && memory.fillNeedsWakeup(context: context) { _ = cp_xsk_kick(fd) }
  }

  // MARK: Transmit

  /// Posts every committed slot to the TX ring and kicks the kernel. Copy mode transmits
  /// in the kick (up to the socket's budget per call, hence the loop); EAGAIN/EBUSY/ENOBUFS
  /// leave the rest for the next turn, counted as busy.
  public func flushTransmit() {
    reapCompletions()
    let ring = transmitRing.pointee
    let posting = min(ring.pending, tx.free())
    if posting > 0 {
      var sentInPlace = 0
      for offset in 0..<posting {
        let slot = ring.base + postCursor &* ring.slotSize
        let length = (slot + ring.lengthOffset).load(as: UInt32.self)
        let descriptor = tx.descriptor(offset)
        // A slot standing for a frame sent where it was received (`commitInPlace`) is
        // free as soon as that frame's address is posted.
        let marker = slot + InPlaceTransmit.markerOffset
        let inPlace = marker.load(as: UInt64.self)
        if inPlace != 0 {
          marker.storeBytes(of: 0, as: UInt64.self)
          ring.status(slot).pointee.store(TxRing.available, ordering: .releasing)
          descriptor.pointee.addr = inPlace
          sentInPlace &+= 1
        } else {
          ring.status(slot).pointee.store(TxRing.sending, ordering: .relaxed)
          descriptor.pointee.addr = UInt64(transmitBase &+ postCursor &* ring.slotSize &+ ring.dataOffset)
        }
        descriptor.pointee.len = length
        descriptor.pointee.options = 0
        postCursor = postCursor &+ 1 == ring.slotCount ? 0 : postCursor &+ 1
      }
      tx.submit(posting)
      transmitRing.pointee.pending &-= posting
      if sentInPlace != 0 { PortCounters.bump(counters.sentInPlace, sentInPlace) }
    }
    kick()
    reapCompletions()
  }

  private func kick() {
    var rounds = 0
    while tx.outstanding() > 0 && rounds < 8 {
      if !zeroCopy || tx.needsWakeup {
        let result = cp_xsk_kick(fd)
        if result < 0 {
          let e = Int32(-result)
          if e == EINTR { continue }
          if e == EAGAIN || e == EBUSY || e == ENOBUFS {
            PortCounters.bump(counters.transmitBusy)
            transmitLinkDown = false
            rounds &+= 1
            continue
          }
          transmitLinkDown = e == ENETDOWN || e == ENXIO
          PortCounters.bump(counters.transmitErrors)
          return
        }
        PortCounters.bump(counters.transmitKicks)
        transmitLinkDown = false
      } else {
        return
      }
      rounds &+= 1
    }
  }

  /// Frees the transmit slots whose frames the kernel has sent (this port's, and those
  /// of the other ports on its queue).
  @inline(__always)
  private func reapCompletions() {
    memory.reapCompletions(
      context: context, layout: transmitRing.pointee, scratch: completed, capacity: Self.reapBatch)
  }

  @discardableResult
  public func clearSocketError() -> Int32 {
    var value: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length)
    PortCounters.bump(counters.socketErrors)
    return value
  }

  // MARK: Statistics

  public var statistics: PortStatistics {
    let kernel = kernelCounters.withLock { last in
      var now = cp_xdp_statistics()
      if !closed, cp_xsk_statistics(fd, &now) == 0 { last = now }
      return last
    }
    var statistics = PortStatistics()
    statistics.receivedFrames = counters.receivedFrames.load(ordering: .relaxed)
    statistics.checksumsCompleted = counters.checksumsCompleted.load(ordering: .relaxed)
    statistics.transmitKicks = counters.transmitKicks.load(ordering: .relaxed)
    statistics.transmitBusy = counters.transmitBusy.load(ordering: .relaxed)
    statistics.transmitErrors = counters.transmitErrors.load(ordering: .relaxed)
    statistics.socketErrors = counters.socketErrors.load(ordering: .relaxed)
    statistics.sentInPlace = counters.sentInPlace.load(ordering: .relaxed)
    // A frame dropped for want of a fill-ring chunk counts in rx_dropped too.
    statistics.kernelDrops = kernel.rx_dropped &+ kernel.rx_ring_full
    return statistics
  }
}
