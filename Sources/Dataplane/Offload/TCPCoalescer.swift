import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Merges the TCP segments of a flow, on their way to a port that takes super-frames (a
/// packet socket with `PACKET_VNET_HDR`), into one TSO super-frame, so that the VM's stack
/// receives one skb per run of segments instead of one per segment, as it would from a NIC
/// with GRO/LRO.
///
/// The rules are the Linux `tcp_gro_receive` ones, stricter where in doubt: segments
/// merge only within one batch toward one ring (same port, so same member and bridge
/// domain), carry the same Ethernet, VLAN, IP and TCP headers but for lengths, checksums,
/// the IPv4 identification (which must count up by one) and the sequence number (which
/// must continue exactly), IPv4 without options or fragmentation, IPv6 without extension
/// headers, flags ACK only (PSH allowed on the last segment), identical TCP options
/// (timestamps included, as GRO does), no payload longer than the first segment's, and
/// checksums (IPv4 header and TCP) that verify. A shorter segment or PSH ends the
/// super-frame. It never grows past 64 KiB of IP length nor past the ring slot.
///
/// Up to `runCapacity` flows are merged at once, as GRO holds several flows per NAPI
/// poll: the segments of streams that share a port can arrive interleaved (several
/// remote senders; not one vxswitch sender's streams, whose UDP GSO frames each carry one
/// flow, as measured), and one run per ring would let every flow end the others' runs. Frames of one flow keep their order: a
/// segment of a flow whose run it cannot continue hands that run over first, and a frame
/// that is not a segment the coalescer takes (FIN, SYN, a pure ACK, not TCP) hands every
/// run over before it, since it may belong to any of them. Frames of different flows may
/// leave in another order than they came, as with GRO. With every run taken, a new flow
/// hands over the run opened first.
///
/// A super-frame is built in place in the ring slot of its first segment, which is
/// claimed but not handed to the consumer until the run ends: at the latest when the
/// pipeline finishes the batch (`Pipeline.flushCoalescers`), so nothing waits for a
/// later batch. It leaves with `NEEDS_CSUM` (the TCP checksum field holds the
/// pseudo-header sum, the receiving stack trusts it as verified, as it would a NIC's),
/// gso type TCPV4/TCPV6 and gso size the first segment's payload length. A run of one
/// segment leaves as it came, behind a plain header. Anything else leaves the ring
/// exactly as it would without coalescing.
///
/// One value per (worker, ring), owned by the worker's pipeline; not thread-safe.
public struct TCPCoalescer {
  /// Flows merged at once (GRO's `MAX_GRO_SKBS`).
  public static let runCapacity = 8

  /// `runCapacity` entries (a generic argument must be a literal).
  var runs = InlineArray<8, CoalescingRun>(repeating: CoalescingRun())
  /// Runs in `runs` that are open (their slots are the first `openRuns` entries).
  var openRuns = 0

  /// Super-frames handed out (runs of two or more segments) and the segments they held.
  public internal(set) var superFrames: UInt64 = 0
  public internal(set) var mergedSegments: UInt64 = 0
  /// The part of both not yet added to the switch's counters (`Pipeline.flushCoalescers`).
  var unreportedSuperFrames: UInt64 = 0
  var unreportedSegments: UInt64 = 0

  /// Runs open at most (1 to `runCapacity`): fewer only to measure what several bring.
  let flowLimit: Int

  /// The port's tap (`RedirectingTap`, `Pipeline.useAccessTap`), -1 without one. With
  /// it, a run whose first segment was read where the underlay port received it (a
  /// `source`) is built outside the ring: its headers in one of `runCapacity` buffers
  /// laid out as a ring slot (so that the run's code reads them where it reads a slot's),
  /// its segments' payloads left where they are and listed; it goes to the tap in one
  /// write, which the kernel copies once, where the ring's copy and the veth's copy of
  /// the ring's zero-copy pages cost two. The port's packet socket is kicked first if
  /// the ring holds frames, so that nothing overtakes them.
  var tap: Int32 = -1
  var ringSocket: Int32 = -1
  var buffers: UnsafeMutableRawPointer? = nil
  var pieceLists: UnsafeMutablePointer<iovec>? = nil
  /// The buffers not taken by a run, one bit each.
  var freeBuffers: UInt32 = (1 << UInt32(TCPCoalescer.runCapacity)) - 1
  /// Writes to the tap the kernel refused, not yet added to the switch's counters.
  var unreportedTapRefusals: UInt64 = 0
  public internal(set) var tapWrites: UInt64 = 0
  public internal(set) var lastTapRefusal: Int32 = 0

  /// Bytes per run buffer, and payload pieces per run (a piece per segment, the headers
  /// first: 64 segments of at least 1 KiB, or fewer, fill 64 KiB).
  static let bufferBytes = 512
  static let maxPieces = 64

  public init(flowLimit: Int = TCPCoalescer.runCapacity) {
    self.flowLimit = min(max(flowLimit, 1), Self.runCapacity)
    assert(runs.count == Self.runCapacity)
  }
}

/// One super-frame being built: where, how far, and what the next segment must carry.
struct CoalescingRun {
  /// The ring slot of the super-frame (nil in a closed entry).
  var slot: UnsafeMutableRawPointer? = nil
  /// Its frame length so far, segment count, header offsets and family.
  var length = 0
  var segments = 0
  var networkOffset = 0
  var transportOffset = 0
  var payloadOffset = 0
  var isIPv6 = false
  /// The first segment's payload length: the gso size.
  var segmentSize = 0
  var nextSequence: UInt32 = 0
  var nextIdentification: UInt16 = 0
  /// Largest frame the super-frame may become.
  var limit = 0
  /// The TCP ports as stored in the frame: finds a flow's run with one compare.
  var ports: UInt32 = 0
  /// Whether the first segment's TCP checksum was left unfinished by its sender (see
  /// `commitCoalescing`): a run of one leaves with it unfinished.
  var checksumPartial = false
  /// The buffer of a run built for the tap (`TCPCoalescer.tap`), -1 for one built in a
  /// ring slot; its payload pieces so far.
  var buffer = -1
  var pieces = 0
}

extension UnsafeMutablePointer where Pointee == TCPCoalescer {
  /// Entry `index` of the coalescer's runs, in place.
  @inline(__always)
  func run(_ index: Int) -> UnsafeMutablePointer<CoalescingRun> {
    (UnsafeMutableRawPointer(self) + MemoryLayout<TCPCoalescer>.offset(of: \TCPCoalescer.runs)!)
      .assumingMemoryBound(to: CoalescingRun.self) + index
  }

  /// Takes a free tap buffer (one is free whenever a run may open: `runCapacity` of
  /// them, one per open run).
  @inline(__always)
  func takeBuffer() -> Int {
    let index = pointee.freeBuffers.trailingZeroBitCount
    pointee.freeBuffers &= ~(1 &<< UInt32(index))
    return index
  }

  /// Buffer `index`'s memory (laid out as a ring slot) and its list of pieces.
  @inline(__always)
  func buffer(_ index: Int) -> UnsafeMutableRawPointer {
    pointee.buffers.unsafelyUnwrapped + index &* TCPCoalescer.bufferBytes
  }
  @inline(__always)
  func pieces(_ index: Int) -> UnsafeMutablePointer<iovec> {
    pointee.pieceLists.unsafelyUnwrapped + index &* (TCPCoalescer.maxPieces &+ 1)
  }
}

/// Where a frame's IP and TCP headers and payload are, once it is known to be a TCP
/// segment the coalescer may take.
struct CoalescibleSegment {
  let networkOffset: Int
  let transportOffset: Int
  let payloadOffset: Int
  let isIPv6: Bool
  let flags: UInt8

  /// Flags a segment may carry: ACK, and PSH (which ends a super-frame).
  static let ack: UInt8 = 0x10

  /// The segment at `frame` (`length` bytes, Ethernet header first, an 802.1Q tag in
  /// band allowed), or nil when it is not one the coalescer takes: not TCP over IPv4
  /// without options or IPv6 without extension headers, a fragment, lengths that do not
  /// match the frame exactly (Ethernet padding), no payload, flags other than ACK and
  /// PSH, or a checksum that does not verify (the TCP one only when `verifyingChecksum`).
  init?(frame: UnsafeRawPointer, length: Int, verifyingChecksum: Bool = true) {
    var network = EthernetLayout.headerLength
    var etherType = frame.be16(EthernetLayout.etherTypeOffset)
    if etherType == EtherType.vlan {
      network &+= VLANLayout.tagLength
      etherType = frame.be16(EthernetLayout.etherTypeOffset &+ VLANLayout.tagLength)
    }
    let transport: Int
    let pseudo: UInt64
    if etherType == EtherType.ipv4 {
      transport = network &+ IPv4Layout.minimumHeaderLength
      guard length >= transport &+ TCPLayout.minimumHeaderLength else { return nil }
      let ip = frame + network
      guard ip.u8(0) == IPv4Layout.versionWithoutOptions,
        ip.u8(IPv4Layout.protocolOffset) == IPProtocol.tcp,
        ip.be16(IPv4Layout.fragmentOffset) & IPv4Layout.fragmentMask == 0,
        Int(ip.be16(IPv4Layout.totalLengthOffset)) == length &- network,
        OnesComplement.fold16(OnesComplement.sum(ip, count: IPv4Layout.minimumHeaderLength)) == 0xFFFF
      else { return nil }
      pseudo = OnesComplement.sum(ip + IPv4Layout.sourceOffset, count: 8)
      isIPv6 = false
    } else if etherType == EtherType.ipv6 {
      transport = network &+ IPv6Layout.headerLength
      guard length >= transport &+ TCPLayout.minimumHeaderLength else { return nil }
      let ip = frame + network
      guard ip.u8(0) &>> 4 == 6, ip.u8(IPv6Layout.nextHeaderOffset) == IPProtocol.tcp,
        Int(ip.be16(IPv6Layout.payloadLengthOffset)) == length &- transport
      else { return nil }
      pseudo = OnesComplement.sum(ip + IPv6Layout.sourceOffset, count: 32)
      isIPv6 = true
    } else {
      return nil
    }
    let tcp = frame + transport
    let payload = transport &+ Int(tcp.u8(TCPLayout.dataOffsetOffset) &>> 4) &* 4
    flags = tcp.u8(TCPLayout.flagsOffset)
    guard payload >= transport &+ TCPLayout.minimumHeaderLength, payload < length,
      flags & ~TCPLayout.psh == Self.ack
    else { return nil }
    if verifyingChecksum {
      let l4Length = length &- transport
      let sum = OnesComplement.sum(
        tcp, count: l4Length, initial: pseudo &+ UInt64(IPProtocol.tcp) &+ UInt64(l4Length))
      guard OnesComplement.fold16(sum) == 0xFFFF else { return nil }
    }
    networkOffset = network
    transportOffset = transport
    payloadOffset = payload
  }
}

extension TxRing {
  /// `commit` for a ring with a coalescer: the frame written at the reserved slot
  /// (`length` bytes) joins its flow's super-frame, starts one, or is handed over behind a
  /// plain `virtio_net_hdr` (after the super-frames it must not overtake). With a
  /// `source`, the frame is not written yet: it is read there, and copied to the slot
  /// only when it does not join a super-frame. `frameFlags` (`FrameFlags`): with
  /// `builtOnThisHost` the TCP checksum is trusted, not verified; with
  /// `innerChecksumPartial` it was left unfinished by a sender on this host (trusted): a
  /// super-frame gets its own, a frame that leaves alone carries it unfinished behind a
  /// `NEEDS_CSUM` header, or finished when its headers are not a TCP segment's the
  /// coalescer knows.
  @inline(never)
  mutating func commitCoalescing(
    length: Int, _ state: UnsafeMutablePointer<TCPCoalescer>, frameFlags: UInt8 = 0,
    source: UnsafeRawPointer? = nil
  ) {
    // A run's slot is claimed but still free to `reserve`: a batch that comes round the
    // ring (more outputs to one port than slots, as flooding to several members of one
    // port can make) would write over it. Handed over before that, the ring is found full.
    defer { if pending &+ 1 >= slotCount && state.pointee.openRuns != 0 { publishAllCoalesced(state) } }
    let frame = source ?? UnsafeRawPointer(next + dataOffset)
    let checksumPartial = frameFlags & FrameFlags.innerChecksumPartial != 0
    guard
      let segment = CoalescibleSegment(
        frame: frame, length: length, verifyingChecksum: frameFlags & FrameFlags.builtOnThisHost == 0)
    else {
      publishAllCoalesced(state)
      if let source { (next + dataOffset).copyFrameBytes(from: source, count: length) }
      if _slowPath(checksumPartial) { ChecksumCompletion.complete(frame: next + dataOffset, length: length) }
      commitBehindPlainHeader(length: length)
      return
    }
    let ports = frame.loadUnaligned(fromByteOffset: segment.transportOffset, as: UInt32.self)
    for index in 0..<state.pointee.openRuns {
      let run = state.run(index)
      guard run.pointee.ports == ports, let open = run.pointee.slot,
        Self.sameFlow(run.pointee, UnsafeRawPointer(open + dataOffset), segment, frame)
      else { continue }
      if Self.continues(run.pointee, open + dataOffset, segment, frame, length)
        && (run.pointee.buffer < 0 || source != nil)
      {
        append(state, index, segment, frame, length)
        return
      }
      publishCoalesced(state, index)
      break
    }
    // From here the frame goes to the reserved slot, as a run's first or alone; or, for
    // the tap, to a buffer, its payload where it is.
    let tapping = source != nil && state.pointee.tap >= 0
    if !tapping, let source { (next + dataOffset).copyFrameBytes(from: source, count: length) }
    if segment.flags == CoalescibleSegment.ack {
      let payload = length &- segment.payloadOffset
      let ipLimit = segment.networkOffset &+ Int(UInt16.max) &+ (segment.isIPv6 ? IPv6Layout.headerLength : 0)
      let limit = min(maxFrameLength, ipLimit)
      if length &+ payload <= limit {
        // The run opened first is entry 0 (entries stay in opening order).
        if state.pointee.openRuns == state.pointee.flowLimit { publishCoalesced(state, 0) }
        let run = state.run(state.pointee.openRuns)
        state.pointee.openRuns &+= 1
        var slot = next
        var buffer = -1
        if tapping {
          buffer = state.takeBuffer()
          slot = state.buffer(buffer)
          (slot + dataOffset).copyMemory(from: frame, byteCount: segment.payloadOffset)
          state.pieces(buffer)[1] = iovec(
            iov_base: UnsafeMutableRawPointer(mutating: frame + segment.payloadOffset), iov_len: payload)
        }
        run.pointee = CoalescingRun(
          slot: slot, length: length, segments: 1, networkOffset: segment.networkOffset,
          transportOffset: segment.transportOffset, payloadOffset: segment.payloadOffset,
          isIPv6: segment.isIPv6, segmentSize: payload,
          nextSequence: frame.be32(segment.transportOffset &+ TCPLayout.sequenceOffset)
            &+ UInt32(truncatingIfNeeded: payload),
          nextIdentification: segment.isIPv6
            ? 0 : frame.be16(segment.networkOffset &+ IPv4Layout.identificationOffset) &+ 1,
          limit: limit, ports: ports, checksumPartial: checksumPartial, buffer: buffer,
          pieces: tapping ? 1 : 0)
        if !tapping { claimSlot() }
        return
      }
    }
    if tapping, let source { (next + dataOffset).copyFrameBytes(from: source, count: length) }
    if checksumPartial {
      VirtioNetHeader.partialChecksum(
        at: next + (dataOffset &- framePrefix), frameLength: length, checksumStart: segment.transportOffset,
        checksumOffset: TCPLayout.checksumOffset)
      commitUncoalesced(length: length)
      return
    }
    commitBehindPlainHeader(length: length)
  }

  @inline(__always)
  mutating func commitBehindPlainHeader(length: Int) {
    VirtioNetHeader.plain(at: next + (dataOffset &- framePrefix), frameLength: length)
    commitUncoalesced(length: length)
  }

  /// Hands over every super-frame being built, in the order their runs opened.
  mutating func publishAllCoalesced(_ state: UnsafeMutablePointer<TCPCoalescer>) {
    let open = state.pointee.openRuns
    if open == 0 { return }
    for index in 0..<open { publish(state, state.run(index).pointee) }
    state.pointee.openRuns = 0
  }

  /// Hands over the super-frame of run `index` and closes the run (later entries move
  /// up, keeping the opening order).
  mutating func publishCoalesced(_ state: UnsafeMutablePointer<TCPCoalescer>, _ index: Int) {
    publish(state, state.run(index).pointee)
    let last = state.pointee.openRuns &- 1
    var position = index
    while position < last {
      state.run(position).pointee = state.run(position &+ 1).pointee
      position &+= 1
    }
    state.pointee.openRuns = last
  }

  /// Hands over a run's super-frame: lengths, IPv4 header checksum, the TCP checksum's
  /// pseudo-header part and the `virtio_net_hdr` for a run of two or more segments; a run
  /// of one as it came.
  private mutating func publish(_ state: UnsafeMutablePointer<TCPCoalescer>, _ coalesced: CoalescingRun) {
    guard let slot = coalesced.slot else { return }
    let frame = slot + dataOffset
    let length = coalesced.length
    let header = slot + (dataOffset &- framePrefix)
    if coalesced.segments < 2 {
      if coalesced.checksumPartial {
        VirtioNetHeader.partialChecksum(
          at: header, frameLength: length, checksumStart: coalesced.transportOffset,
          checksumOffset: TCPLayout.checksumOffset)
      } else {
        VirtioNetHeader.plain(at: header, frameLength: length)
      }
    } else {
      let ip = frame + coalesced.networkOffset
      let l4Length = length &- coalesced.transportOffset
      let pseudo =
        coalesced.isIPv6
        ? IPLengthFixup.ipv6(ip, payloadLength: l4Length)
        : IPLengthFixup.ipv4(ip, totalLength: length &- coalesced.networkOffset)
      // CHECKSUM_PARTIAL convention: the field holds the folded pseudo-header sum, not
      // complemented; whoever finishes the checksum adds the rest.
      (frame + coalesced.transportOffset).setBE16(
        TCPLayout.checksumOffset,
        UInt16(
          truncatingIfNeeded: OnesComplement.fold16(pseudo &+ UInt64(IPProtocol.tcp) &+ UInt64(l4Length))))
      VirtioNetHeader(
        flags: VirtioNetHeader.needsChecksum,
        gsoType: (coalesced.isIPv6 ? VirtioNetHeader.SegmentationType.tcpIPv6 : .tcpIPv4).rawValue,
        headerLength: UInt16(truncatingIfNeeded: coalesced.payloadOffset),
        gsoSize: UInt16(truncatingIfNeeded: coalesced.segmentSize),
        checksumStart: UInt16(truncatingIfNeeded: coalesced.transportOffset),
        checksumOffset: UInt16(truncatingIfNeeded: TCPLayout.checksumOffset)
      ).store(to: header)
      state.pointee.superFrames &+= 1
      state.pointee.mergedSegments &+= UInt64(truncatingIfNeeded: coalesced.segments)
      state.pointee.unreportedSuperFrames &+= 1
      state.pointee.unreportedSegments &+= UInt64(truncatingIfNeeded: coalesced.segments)
    }
    if coalesced.buffer >= 0 {
      writeToTap(state, coalesced)
      return
    }
    (slot + lengthOffset).storeBytes(of: UInt32(truncatingIfNeeded: length &+ framePrefix), as: UInt32.self)
    status(slot).pointee.store(Self.sendRequest, ordering: .releasing)
  }

  /// Whether `segment` (at `frame`, its ports already found equal) belongs to the flow of
  /// the run whose first frame is at `first`: same family, offsets and addresses.
  static func sameFlow(
    _ run: CoalescingRun, _ first: UnsafeRawPointer, _ segment: CoalescibleSegment, _ frame: UnsafeRawPointer
  ) -> Bool {
    guard segment.isIPv6 == run.isIPv6, segment.networkOffset == run.networkOffset,
      segment.transportOffset == run.transportOffset
    else { return false }
    let addresses = run.networkOffset &+ (run.isIPv6 ? IPv6Layout.sourceOffset : IPv4Layout.sourceOffset)
    return same(first, frame, addresses, run.transportOffset)
  }

  /// Whether `segment` (at `frame`) continues the super-frame at `open`: same offsets,
  /// the next sequence number and IPv4 identification, a payload no longer than the
  /// first's that fits, and the same headers but for the fields segmentation changes.
  static func continues(
    _ state: CoalescingRun, _ open: UnsafeMutableRawPointer, _ segment: CoalescibleSegment,
    _ frame: UnsafeRawPointer,
    _ length: Int
  ) -> Bool {
    let transport = state.transportOffset
    let payload = length &- segment.payloadOffset
    guard segment.payloadOffset == state.payloadOffset, segment.transportOffset == transport,
      segment.isIPv6 == state.isIPv6, payload <= state.segmentSize, state.length &+ payload <= state.limit,
      frame.be32(transport &+ TCPLayout.sequenceOffset) == state.nextSequence
    else { return false }
    let network = state.networkOffset
    let first = UnsafeRawPointer(open)
    if state.isIPv6 {
      // Everything but the payload length: MACs, tag, version/class/flow label, next
      // header, hop limit, addresses.
      guard Self.same(first, frame, 0, network &+ IPv6Layout.payloadLengthOffset),
        Self.same(first, frame, network &+ IPv6Layout.nextHeaderOffset, transport)
      else { return false }
    } else {
      guard frame.be16(network &+ IPv4Layout.identificationOffset) == state.nextIdentification,
        Self.same(first, frame, 0, network &+ IPv4Layout.totalLengthOffset),
        Self.same(first, frame, network &+ IPv4Layout.fragmentOffset, network &+ IPv4Layout.checksumOffset),
        Self.same(first, frame, network &+ IPv4Layout.sourceOffset, transport)
      else { return false }
    }
    // Ports; acknowledgement, data offset; flags but PSH; window; urgent pointer and
    // options.
    return Self.same(first, frame, transport, transport &+ TCPLayout.sequenceOffset)
      && Self.same(
        first, frame, transport &+ TCPLayout.acknowledgementOffset, transport &+ TCPLayout.flagsOffset)
      && first.u8(transport &+ TCPLayout.flagsOffset) == segment.flags & ~TCPLayout.psh
      && Self.same(first, frame, transport &+ TCPLayout.windowOffset, transport &+ TCPLayout.checksumOffset)
      && Self.same(first, frame, transport &+ TCPLayout.urgentPointerOffset, segment.payloadOffset)
  }

  /// Appends the segment's payload to run `index`'s super-frame; hands it over when the
  /// segment ends the run (PSH, a short payload) or no further full segment would fit.
  mutating func append(
    _ state: UnsafeMutablePointer<TCPCoalescer>, _ index: Int, _ segment: CoalescibleSegment,
    _ frame: UnsafeRawPointer, _ length: Int
  ) {
    let run = state.run(index)
    let open = run.pointee.slot.unsafelyUnwrapped + dataOffset
    let payload = length &- segment.payloadOffset
    if run.pointee.buffer >= 0 {
      run.pointee.pieces &+= 1
      state.pieces(run.pointee.buffer)[run.pointee.pieces] = iovec(
        iov_base: UnsafeMutableRawPointer(mutating: frame + segment.payloadOffset), iov_len: payload)
    } else {
      (open + run.pointee.length).copyMemory(from: frame + segment.payloadOffset, byteCount: payload)
    }
    run.pointee.length &+= payload
    run.pointee.segments &+= 1
    run.pointee.nextSequence &+= UInt32(truncatingIfNeeded: payload)
    run.pointee.nextIdentification &+= 1
    let pushed = segment.flags & TCPLayout.psh != 0
    if pushed {
      let flags = open + (run.pointee.transportOffset &+ TCPLayout.flagsOffset)
      flags.setU8(0, UnsafeRawPointer(flags).u8(0) | TCPLayout.psh)
    }
    if pushed || payload < run.pointee.segmentSize
      || run.pointee.length &+ run.pointee.segmentSize > run.pointee.limit
      || run.pointee.pieces == TCPCoalescer.maxPieces
    {
      publishCoalesced(state, index)
    }
  }

  /// Writes a run built for the tap (its headers and `virtio_net_hdr` finished in its
  /// buffer) and frees the buffer: after the ring's frames, so that none is overtaken.
  mutating func writeToTap(_ state: UnsafeMutablePointer<TCPCoalescer>, _ coalesced: CoalescingRun) {
    let buffer = coalesced.buffer
    if pending != 0 && cp_packet_tx_kick(state.pointee.ringSocket) >= 0 { pending = 0 }
    let pieces = state.pieces(buffer)
    pieces[0] = iovec(
      iov_base: coalesced.slot.unsafelyUnwrapped + (dataOffset &- framePrefix),
      iov_len: framePrefix &+ coalesced.payloadOffset)
    if writev(state.pointee.tap, pieces, Int32(truncatingIfNeeded: coalesced.pieces &+ 1)) < 0 {
      state.pointee.unreportedTapRefusals &+= 1
      state.pointee.lastTapRefusal = errno
    } else {
      state.pointee.tapWrites &+= 1
    }
    state.pointee.freeBuffers |= 1 &<< UInt32(buffer)
  }

  /// Whether bytes `start..<end` of two frames are equal.
  @inline(__always)
  static func same(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ start: Int, _ end: Int) -> Bool {
    memcmp(a + start, b + start, end &- start) == 0
  }
}
