import CPacket

/// One worker's forwarding pipeline: takes a `FrameVector` from one interface and, in
/// two passes over the batch, parses, learns, looks up and writes every frame into the
/// transmit rings of the interfaces it leaves by.
///
/// Pass 1 parses and validates headers, maps the frame to its bridge domain, builds the
/// packed source and destination FDB keys and prefetches their buckets; pass 2, by then
/// mostly hitting cache, learns, looks up and emits (local delivery, encapsulation, or
/// flooding with split horizon).
///
/// Nothing here allocates, retains, or calls through an existential per frame: state is
/// reached through raw pointers held in locals, counters are plain words flushed to
/// `SwitchStatistics` once per batch.
///
/// Not thread-safe: one pipeline per worker thread. It shares the FDB (as a reader),
/// the `SnapshotCell` (as a registered reader) and `SwitchStatistics` with other threads.
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
  var countersTouched = false

  /// Per-batch scratch, one slot per frame of the vector.
  let scratch = BatchScratch(capacity: FrameVector.capacity)

  // Recently queued learn events (direct-mapped), so that a burst from one MAC queues
  // one event per second rather than one per frame.
  static let filterSize = 1024
  let filterKeys: UnsafeMutablePointer<UInt64>
  let filterTags: UnsafeMutablePointer<UInt64>

  // Sources found current in the FDB during this second (direct-mapped): later frames
  // from the same source and port skip the FDB lookup until the clock ticks or the FDB
  // changes (see `sourceCacheEpoch`). The entry's age stamp is still refreshed once a
  // second.
  static let sourceCacheSize = 256
  let sourceCacheKeys: UnsafeMutablePointer<UInt64>
  let sourceCacheTags: UnsafeMutablePointer<UInt64>
  /// The FDB's change epoch at the start of the batch: part of every cache tag, so any
  /// removal, move or flush invalidates the whole cache at once.
  var sourceCacheEpoch: UInt64 = 0

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
    sourceCacheKeys = .allocate(capacity: Self.sourceCacheSize)
    sourceCacheKeys.initialize(repeating: 0, count: Self.sourceCacheSize)
    sourceCacheTags = .allocate(capacity: Self.sourceCacheSize)
    sourceCacheTags.initialize(repeating: 0, count: Self.sourceCacheSize)
  }

  deinit {
    cell.unregister(token)
    scratch.deallocate()
    rings.deallocate()
    counters.deallocate()
    filterKeys.deallocate()
    filterTags.deallocate()
    sourceCacheKeys.deallocate()
    sourceCacheTags.deallocate()
  }

  /// Connects an interface's transmit ring; frames for an unattached interface are
  /// dropped as `txRingFull`.
  public func attach(interface: UInt16, ring: UnsafeMutablePointer<TxRing>) {
    rings[Int(interface)] = ring
  }

  /// Declares that this worker holds no snapshot while it blocks waiting for frames.
  public func idle() { cell.idle(token) }

  /// Forwards every frame of the vector. The vector's frame memory is read (and may be
  /// patched in place); transmit rings receive the output; the caller then flushes the
  /// rings that have `pending` frames and releases the received memory.
  public func process(_ vector: inout FrameVector) {
    sourceCacheEpoch = UInt64(fdb.changeEpoch.load(ordering: .acquiring)) &<< 18
    let snapshot = cell.enter(token)
    var interfaces = Int(vector.ingress) &+ 1
    snapshot._withUnsafeGuaranteedRef { state in
      interfaces = max(interfaces, state.interfaceCount)
      if vector.ingress == state.underlayInterface {
        decapsulateBatch(&vector, state)
      } else {
        switchAccessBatch(&vector, state)
      }
    }
    statistics.absorb(counters, touched: &countersTouched, interfaces: interfaces)
  }

  // MARK: Counters

  @inline(__always) func count(_ index: Int, _ amount: Int = 1) {
    counters[index] &+= UInt64(truncatingIfNeeded: amount)
  }

  @inline(__always) func drop(_ reason: DropReason) {
    counters[Counter.drop(reason)] &+= 1
  }

  @inline(__always) func countReceived(_ vector: borrowing FrameVector) {
    var bytes = 0
    for index in 0..<vector.count { bytes &+= Int(vector.lengths[index]) }
    count(Counter.rxFrames(Int(vector.ingress)), vector.count)
    count(Counter.rxBytes(Int(vector.ingress)), bytes)
    countersTouched = true
  }

  // MARK: Access ingress (learn, switch locally, encapsulate)

  @inline(never)
  func switchAccessBatch(_ vector: inout FrameVector, _ state: ForwardingState) {
    countReceived(vector)
    // Locals, not stored properties: after a store through a raw pointer the optimiser
    // cannot assume `self`'s (or `state`'s) fields unchanged and would reload them, and
    // the pointers behind them, for every frame.
    let table = fdb.reader
    let metas = scratch.frames
    let frames = vector.frames
    let lengths = vector.lengths
    let vlanTags = vector.vlanTags
    let memberRow = state.memberByVLAN + Int(vector.ingress) &* ForwardingState.vlanColumns
    let memberDomain = state.memberDomain
    let learnFlags = state.domainLearnFlags
    let cacheKeys = sourceCacheKeys
    let cacheTags = sourceCacheTags
    let now = vector.now
    let cacheTagBase = sourceCacheTagBase(kind: FDBTargetKind.port.rawValue, now: now)
    let frameCount = vector.count
    for index in 0..<frameCount {
      metas[index].domain = 0
      let frame = UnsafeRawPointer(frames[index])
      let length = Int(lengths[index])
      if length < 14 {
        drop(.runt)
        continue
      }
      var column = ForwardingState.untaggedColumn
      var rest = 12
      let tag = vlanTags[index]
      if tag & FrameVector.vlanTagPresent != 0 {
        let vlan = Int(tag & 0xFFF)
        if vlan != 0 { column = vlan }
      } else if frame.be16(12) == 0x8100 {
        if length < 18 {
          drop(.runt)
          continue
        }
        let vlan = Int(frame.be16(14) & 0xFFF)
        if vlan != 0 { column = vlan }
        rest = 16
      }
      let member = memberRow[column]
      if member == 0 {
        drop(.unmappedVLAN)
        continue
      }
      let source = frame.be64(4) & 0xFFFF_FFFF_FFFF
      if source & 0x0100_0000_0000 != 0 || source == 0 {
        drop(.badSourceMAC)
        continue
      }
      let domain = memberDomain[Int(member)]
      let domainBits = UInt64(domain) &<< 48
      let sourceKey = domainBits | source
      let destinationKey = domainBits | frame.be64(0) &>> 16
      // Sources already verified this second need no FDB visit in pass 2 (0: nothing to learn).
      var learnKey: UInt64 = 0
      if learnFlags[Int(domain)] & LearnFlags.local != 0 {
        let cacheSlot = Self.sourceCacheSlot(sourceKey)
        if cacheKeys[cacheSlot] != sourceKey || cacheTags[cacheSlot] != cacheTagBase | UInt64(member) {
          learnKey = sourceKey
          table.prefetch(sourceKey)
        }
      }
      metas[index] = FrameMeta(
        source: learnKey, destination: destinationKey, destinationBucket: table.prefetchHome(destinationKey),
        domain: domain, origin: member, macs: 0, rest: rest, restLength: length &- rest)
    }

    var out = UnderlayOutput(state: state, ring: rings[Int(state.underlayInterface)])
    let arpSuppression = state.domainARPSuppression
    for index in 0..<frameCount {
      let meta = metas[index]
      let domain = meta.domain
      if domain == 0 { continue }
      let frame = UnsafeRawPointer(frames[index])
      let member = meta.origin
      let rest = Int(meta.rest)
      let restLength = Int(meta.restLength)

      if _slowPath(meta.source != 0) {
        learn(
          key: meta.source, kind: FDBTargetKind.port.rawValue, index: member, high: 0, low: 0,
          domain: domain, now: now)
      }
      let destinationKey = meta.destination
      if _slowPath(arpSuppression[Int(domain)]) {
        if learnFlags[Int(domain)] & LearnFlags.local != 0 {
          learnARP(
            domain: domain, member: member, source: frame.be64(4) & 0xFFFF_FFFF_FFFF,
            rest: frame + rest, restLength: restLength, now: now)
        }
        if destinationKey & 0x0100_0000_0000 != 0
          && answerARP(state, domain: domain, member: member, rest: frame + rest, restLength: restLength)
        {
          continue
        }
      }
      if destinationKey & 0x0100_0000_0000 == 0 {
        var slot = 0
        let entry = table.lookup(destinationKey, home: Int(meta.destinationBucket), slot: &slot)
        if entry.isPresent && table.isCurrent(entry, bridgeDomain: domain) {
          switch entry.kindBits {
          case FDBTargetKind.port.rawValue:
            if entry.index == member {
              drop(.sameInterface)
            } else {
              emitLocalCopy(
                state, member: entry.index, macs: frame, rest: frame + rest, restLength: restLength)
            }
          case FDBTargetKind.vtep.rawValue:
            encapsulate(
              state, &out, vtep: Int(entry.index), domain: domain, macs: frame, rest: frame + rest,
              restLength: restLength,
              hash: Self.flowHash(macs: frame, rest: frame + rest, restLength: restLength))
          default:
            drop(.fdbDrop)
          }
          continue
        }
      }
      flood(
        state, &out, domain: domain, ingressMember: member, fromLocal: true, macs: frame, rest: frame + rest,
        restLength: restLength)
    }
    flush(out)
  }

  // MARK: Underlay ingress (validate, decapsulate, learn, deliver)

  @inline(never)
  func decapsulateBatch(_ vector: inout FrameVector, _ state: ForwardingState) {
    countReceived(vector)
    // Locals, not stored properties: see `switchAccessBatch`.
    let table = fdb.reader
    let scratch = self.scratch
    let metas = scratch.frames
    let frames = vector.frames
    let lengths = vector.lengths
    let frameFlags = vector.flags
    let learnFlags = state.domainLearnFlags
    let cacheKeys = sourceCacheKeys
    let cacheTags = sourceCacheTags
    let now = vector.now
    let cacheTagBase = sourceCacheTagBase(kind: FDBTargetKind.vtep.rawValue, now: now)
    let frameCount = vector.count
    let localIsIPv6 = state.localIsIPv6
    // What the fast path's masked compares expect (little-endian loads): the local IPv4
    // address at bytes 30-33, and at 36-43 the destination port, a zero UDP checksum and
    // the VXLAN I flag. No IPv4 frame matches when the local VTEP is IPv6.
    let fastAddress: UInt64 =
      localIsIPv6 ? UInt64.max : UInt64(UInt32(truncatingIfNeeded: state.localLow).byteSwapped) &<< 16
    let fastPortAndFlags = UInt64(state.udpPort.byteSwapped) | 0x0008_0000_0000_0000
    let localHigh = state.localHigh
    let localLow = state.localLow
    let port = state.udpPort
    // Frames of one batch mostly come from few VTEPs and carry few VNIs: remember the
    // last of each (seeded with a real lookup, so no sentinel can be wrong).
    var lastVTEPHigh = UInt64.max
    var lastVTEPLow = UInt64.max
    var lastVTEP = state.vtep(high: lastVTEPHigh, low: lastVTEPLow)
    var lastVNI = UInt32.max  // wider than any 24-bit VNI
    var lastDomain: UInt16 = 0
    for index in 0..<frameCount {
      metas[index].domain = 0
      let frame = UnsafeRawPointer(frames[index])
      let length = Int(lengths[index])
      let flags = frameFlags[index]
      let checksumTrusted = flags & FrameFlags.checksumValid != 0
      var udpOffset = 34
      var ipEnd = 0
      var sourceHigh: UInt64 = 0
      var sourceLow: UInt64 = 0
      // The common frame (untagged IPv4 without options, not a fragment, UDP to our
      // address and port without a checksum, VXLAN I flag, nothing for the kernel to
      // finish) is recognised by four masked 64-bit compares and two length checks;
      // anything else takes the general path below, which also names the drop reason.
      var fast = false
      if Self.fastPathByteOrder && length >= 50 && flags & FrameFlags.checksumNotReady == 0
        && frame.raw64(12) & 0x00FF_FFFF == 0x45_0008
        && frame.raw64(20) & 0xFF00_FF3F == 0x1100_0000
        && frame.raw64(28) & 0xFFFF_FFFF_0000 == fastAddress
        && frame.raw64(36) & 0x0008_FFFF_0000_FFFF == fastPortAndFlags
      {
        let totalLength = Int(frame.be16(16))
        ipEnd = 14 &+ totalLength
        let udpLength = Int(frame.be16(38))
        if ipEnd <= length && udpLength >= 8 &+ 8 &+ 14 && 34 &+ udpLength == ipEnd
          && (checksumTrusted || Self.ipv4HeaderChecksumIsValid(frame + 14, headerLength: 20))
        {
          sourceLow = UInt64(frame.be32(26))
          fast = true
        }
      }
      if !fast {
        // Outer Ethernet + a minimal IPv4 header; every later read is bounded by the IP
        // and UDP lengths, themselves checked against the frame length.
        if length < 34 {
          drop(.runt)
          continue
        }
        var ipOffset = 14
        var etherType = frame.be16(12)
        if etherType == 0x8100 {
          etherType = frame.be16(16)
          ipOffset = 18
          if length < 38 {
            drop(.runt)
            continue
          }
        }
        let ip = frame + ipOffset
        if etherType == 0x0800 {
          let versionAndLength = ip.u8(0)
          var headerLength = 20
          if versionAndLength != 0x45 {
            // Options (or garbage): the rare case gets the general checks.
            headerLength = Int(versionAndLength & 0x0F) &<< 2
            if versionAndLength &>> 4 != 4 || headerLength < 20 {
              drop(.badIPHeader)
              continue
            }
          }
          let totalLength = Int(ip.be16(2))
          ipEnd = ipOffset &+ totalLength
          if totalLength < headerLength || ipEnd > length {
            drop(.badIPLength)
            continue
          }
          if !checksumTrusted && !Self.ipv4HeaderChecksumIsValid(ip, headerLength: headerLength) {
            drop(.badIPChecksum)
            continue
          }
          if ip.be16(6) & 0x3FFF != 0 {
            drop(.outerFragment)
            continue
          }
          if ip.u8(9) != 17 {
            drop(.notUDP)
            continue
          }
          if localIsIPv6 || UInt64(ip.be32(16)) != localLow {
            drop(.notForLocalVTEP)
            continue
          }
          sourceLow = UInt64(ip.be32(12))
          udpOffset = ipOffset &+ headerLength
        } else if etherType == 0x86DD {
          if ip.u8(0) &>> 4 != 6 {
            drop(.badIPHeader)
            continue
          }
          if ipOffset &+ 40 > length {
            drop(.runt)
            continue
          }
          ipEnd = ipOffset &+ 40 &+ Int(ip.be16(4))
          if ipEnd > length {
            drop(.badIPLength)
            continue
          }
          let nextHeader = ip.u8(6)
          if nextHeader != 17 {
            switch nextHeader {
            case 44: drop(.outerFragment)
            case 0, 43, 50, 51, 60, 135, 139, 140: drop(.unsupportedIPv6Extension)
            default: drop(.notUDP)
            }
            continue
          }
          if !localIsIPv6 || ip.be64(24) != localHigh || ip.be64(32) != localLow {
            drop(.notForLocalVTEP)
            continue
          }
          sourceHigh = ip.be64(8)
          sourceLow = ip.be64(16)
          udpOffset = ipOffset &+ 40
        } else {
          drop(.notIP)
          continue
        }
        if udpOffset &+ 8 > ipEnd {
          drop(.badUDPLength)
          continue
        }
        let udp = frame + udpOffset
        let udpLength = Int(udp.be16(4))
        if udpLength < 8 &+ 8 &+ 14 || udpOffset &+ udpLength != ipEnd {
          drop(.badUDPLength)
          continue
        }
        if udp.be16(2) != port {
          drop(.wrongUDPPort)
          continue
        }
        let checksum = udp.be16(6)
        if flags & FrameFlags.checksumNotReady != 0 {
          // Built by the local kernel (a vxlan device in this host): the outer checksum,
          // if any, was computed for the inner frame as completed below (RFC 7348 LCO).
        } else if checksum == 0 {
          if etherType == 0x86DD {
            drop(.badUDPChecksum)
            continue
          }
        } else if !checksumTrusted {
          // Source and destination addresses and next header: the pseudo-header.
          let pseudoHeaderSum =
            etherType == 0x0800
            ? OnesComplement.sum(ip + 12, count: 8, initial: 17)
            : OnesComplement.sum(ip + 8, count: 32, initial: 17)
          let sum = OnesComplement.sum(udp, count: udpLength, initial: pseudoHeaderSum &+ UInt64(udpLength))
          if OnesComplement.fold16(sum) != 0xFFFF {
            drop(.badUDPChecksum)
            continue
          }
        }
        if udp.u8(8) & 0x08 == 0 {
          drop(.badVXLANFlags)
          continue
        }
      }
      let vni = frame.be32(udpOffset &+ 12) &>> 8
      if vni != lastVNI {
        lastVNI = vni
        lastDomain = state.domain(vni: vni)
      }
      let domain = lastDomain
      if domain == 0 {
        drop(.unknownVNI)
        continue
      }
      let inner = udpOffset &+ 16
      if flags & FrameFlags.checksumNotReady != 0 {
        if ChecksumCompletion.complete(frame: frames[index] + inner, length: ipEnd &- inner) {
          count(Counter.checksumsCompleted)
        }
      }
      if frame.be16(inner &+ 12) == 0x8100 {
        drop(.innerVLANTag)
        continue
      }
      let source = frame.be64(inner &+ 4) & 0xFFFF_FFFF_FFFF
      if source & 0x0100_0000_0000 != 0 || source == 0 {
        drop(.badSourceMAC)
        continue
      }
      let domainBits = UInt64(domain) &<< 48
      let sourceKey = domainBits | source
      let destinationKey = domainBits | frame.be64(inner) &>> 16
      if sourceLow != lastVTEPLow || sourceHigh != lastVTEPHigh {
        lastVTEPHigh = sourceHigh
        lastVTEPLow = sourceLow
        lastVTEP = state.vtep(high: sourceHigh, low: sourceLow)
      }
      // As on access ports: a source verified this second (from a known VTEP) is not
      // learnt again; 0 = nothing to learn.
      var learnKey: UInt64 = 0
      if learnFlags[Int(domain)] & LearnFlags.decap != 0 {
        let cacheSlot = Self.sourceCacheSlot(sourceKey)
        if lastVTEP < 0 || cacheKeys[cacheSlot] != sourceKey
          || cacheTags[cacheSlot] != cacheTagBase | UInt64(truncatingIfNeeded: lastVTEP)
        {
          learnKey = sourceKey
          table.prefetch(sourceKey)
        }
      }
      metas[index] = FrameMeta(
        source: learnKey, destination: destinationKey, destinationBucket: table.prefetchHome(destinationKey),
        domain: domain, origin: UInt16(truncatingIfNeeded: lastVTEP &+ 1), macs: inner, rest: inner &+ 12,
        restLength: ipEnd &- inner &- 12)
      scratch.vtepHigh[index] = sourceHigh
      scratch.vtepLow[index] = sourceLow
    }

    var decapsulated = 0
    // Decapsulated frames are never sent back to the underlay (split horizon).
    var out = UnderlayOutput(state: state, ring: nil)
    for index in 0..<frameCount {
      let meta = metas[index]
      let domain = meta.domain
      if domain == 0 { continue }
      decapsulated &+= 1
      let frame = UnsafeRawPointer(frames[index])
      let macs = frame + Int(meta.macs)
      let rest = frame + Int(meta.rest)
      let restLength = Int(meta.restLength)
      let vtepPlusOne = meta.origin

      if meta.source != 0 {
        learn(
          key: meta.source, kind: FDBTargetKind.vtep.rawValue, index: vtepPlusOne &- 1,
          high: scratch.vtepHigh[index], low: scratch.vtepLow[index], domain: domain, now: now,
          knownVTEP: vtepPlusOne != 0)
      }

      let destinationKey = meta.destination
      if destinationKey & 0x0100_0000_0000 == 0 {
        var slot = 0
        let entry = table.lookup(destinationKey, home: Int(meta.destinationBucket), slot: &slot)
        if entry.isPresent && table.isCurrent(entry, bridgeDomain: domain) {
          switch entry.kindBits {
          case FDBTargetKind.port.rawValue:
            emitLocal(state, member: entry.index, macs: macs, rest: rest, restLength: restLength)
          case FDBTargetKind.vtep.rawValue:
            drop(.splitHorizon)
          default:
            drop(.fdbDrop)
          }
          continue
        }
      }
      flood(
        state, &out, domain: domain, ingressMember: 0, fromLocal: false, macs: macs, rest: rest,
        restLength: restLength)
    }
    count(Counter.decapsulated, decapsulated)
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

  // MARK: Learning

  /// Where the source cache keeps `key`.
  @inline(__always)
  static func sourceCacheSlot(_ key: UInt64) -> Int {
    Int(truncatingIfNeeded: (key &* 0xD6E8_FEB8_6659_FD93) &>> 56)
  }

  /// The source cache tag that says "seen at target `index` of `kind` this second, in
  /// this FDB epoch" is `sourceCacheTagBase(kind:now:) | index`: the base is computed
  /// once per batch, the index (16 bits, clear of the other fields) per frame.
  @inline(__always)
  func sourceCacheTagBase(kind: UInt64, now: UInt32) -> UInt64 {
    (kind &<< 16 | sourceCacheEpoch) ^ UInt64(now) &<< 50
  }

  /// Refreshes the source's entry when it already points where the frame came from;
  /// otherwise queues a learn event for the learner (deduplicated per second).
  @inline(__always)
  func learn(
    key: UInt64, kind: UInt64, index: UInt16, high: UInt64, low: UInt64, domain: UInt16, now: UInt32,
    knownVTEP: Bool = true
  ) {
    let target = kind &<< 16 | UInt64(index)
    let cacheSlot = Self.sourceCacheSlot(key)
    let cacheTag = sourceCacheTagBase(kind: kind, now: now) | UInt64(index)
    if knownVTEP && sourceCacheKeys[cacheSlot] == key && sourceCacheTags[cacheSlot] == cacheTag { return }
    var slot = 0
    let entry = fdb.lookup(key, slot: &slot)
    if entry.isPresent && fdb.isCurrent(entry, bridgeDomain: domain) {
      if knownVTEP && entry.target == target {
        if entry.stamp != now & UInt32(FDBEntry.stampMask) && entry.origin != .static {
          fdb.refreshStamp(slot: slot, entry: entry, stamp: now)
        }
        sourceCacheKeys[cacheSlot] = key
        sourceCacheTags[cacheSlot] = cacheTag
        return
      }
      if entry.origin == .static {
        count(Counter.staticMACViolations)
        return
      }
    }
    queueLearn(key: key, kind: kind, index: index, high: high, low: low, now: now)
  }

  /// The learn slow path, out of line: the source is new, moved or stale. Queues an event
  /// for the learner unless one for the same move went out this second.
  @inline(never)
  func queueLearn(key: UInt64, kind: UInt64, index: UInt16, high: UInt64, low: UInt64, now: UInt32) {
    let filterSlot = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) &>> 54)
    let tag =
      kind &<< 60 ^ UInt64(index) &<< 40 ^ UInt64(now) ^ (high ^ low) &* 0x100_0000_01B3 &<< 8
      ^ sourceCacheEpoch &<< 14
    if filterKeys[filterSlot] == key && filterTags[filterSlot] == tag { return }
    var event = LearnEvent()
    event.key = key
    event.kind = UInt8(truncatingIfNeeded: kind)
    event.member = index
    event.stamp = now
    event.vtepHigh = high
    event.vtepLow = low
    if learnQueue.push(event) {
      filterKeys[filterSlot] = key
      filterTags[filterSlot] = tag
      count(Counter.learnEventsQueued)
    } else {
      count(Counter.learnQueueOverflow)
    }
  }

  // MARK: ARP suppression

  /// Queues the (sender IP, sender MAC) binding of a local ARP request or reply for the
  /// learner when the ARP table does not already hold it. Only when the sender hardware
  /// address is the frame's source MAC, and never over a control-plane binding; the
  /// binding lives as long as the MAC's local FDB entry (the ager removes both).
  @inline(never)
  func learnARP(
    domain: UInt16, member: UInt16, source: UInt64, rest: UnsafeRawPointer, restLength: Int, now: UInt32
  ) {
    if restLength < 30 || rest.be16(0) != 0x0806 { return }
    let arp = rest + 2
    let header = arp.be64(0)
    if header != 0x0001_0800_0604_0001 && header != 0x0001_0800_0604_0002 { return }
    let senderIP = arp.be32(14)
    // 0.0.0.0 (probes), multicast, class E and broadcast are not host addresses.
    if senderIP == 0 || senderIP >= 0xE000_0000 { return }
    if arp.be64(8) &>> 16 != source { return }
    let value = self.arp.lookup(domain: domain, ipv4: senderIP)
    if value & ARPTable.presentBit != 0
      && (value & ARPTable.controlBit != 0 || value & ARPTable.macMask == source)
    {
      return
    }
    var event = LearnEvent()
    event.key = ARPTable.key(domain: domain, ipv4: senderIP)
    event.kind = LearnEvent.arpBinding
    event.member = member
    event.stamp = now
    event.vtepLow = source
    if learnQueue.push(event) {
      count(Counter.learnEventsQueued)
    } else {
      count(Counter.learnQueueOverflow)
    }
  }

  /// If the frame (from `rest`, its EtherType) is an Ethernet/IPv4 ARP request for an IP
  /// bound in the domain's ARP table, writes the ARP reply a host owning the IP would
  /// send, out of the ingress member (tagged as the member is), and returns true: the
  /// request is consumed, not flooded. Gratuitous ARP (sender IP = target IP), probes
  /// (sender IP 0.0.0.0, RFC 5227), replies, and requests for the requester's own MAC
  /// return false and are forwarded as before.
  @inline(never)
  func answerARP(
    _ state: ForwardingState, domain: UInt16, member: UInt16, rest: UnsafeRawPointer, restLength: Int
  ) -> Bool {
    // EtherType, then htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (request).
    if restLength < 30 || rest.be16(0) != 0x0806 { return false }
    let arp = rest + 2
    if arp.be64(0) != 0x0001_0800_0604_0001 { return false }
    let senderIP = arp.be32(14)
    let targetIP = arp.be32(24)
    if senderIP == 0 || senderIP == targetIP { return false }
    let value = self.arp.lookup(domain: domain, ipv4: targetIP)
    if value & ARPTable.presentBit == 0 { return false }
    let boundMAC = value & ARPTable.macMask
    let senderMAC = arp.be64(8) &>> 16
    if boundMAC == senderMAC { return false }

    let interface = Int(state.memberInterface[Int(member)])
    let vlan = state.memberVLAN[Int(member)]
    guard let ring = rings[interface], let output = ring.pointee.reserve() else {
      drop(.txRingFull)
      return true
    }
    let tagLength = vlan == 0 ? 0 : 4
    let length = 42 &+ tagLength
    // Ethernet: to the requester's hardware address, from the bound MAC.
    output.setBE16(0, UInt16(truncatingIfNeeded: senderMAC &>> 32))
    output.setBE32(2, UInt32(truncatingIfNeeded: senderMAC))
    output.setBE16(6, UInt16(truncatingIfNeeded: boundMAC &>> 32))
    output.setBE32(8, UInt32(truncatingIfNeeded: boundMAC))
    if vlan != 0 {
      output.setBE16(12, 0x8100)
      output.setBE16(14, vlan)
    }
    let reply = output + (12 &+ tagLength)
    reply.setBE16(0, 0x0806)
    // htype, ptype, hlen, plen, op 2 (reply).
    reply.setBE32(2, 0x0001_0800)
    reply.setBE32(6, 0x0604_0002)
    // Sender: the bound MAC and the asked-for IP; target: the requester.
    reply.setBE16(10, UInt16(truncatingIfNeeded: boundMAC &>> 32))
    reply.setBE32(12, UInt32(truncatingIfNeeded: boundMAC))
    reply.setBE32(16, targetIP)
    reply.setBE16(20, UInt16(truncatingIfNeeded: senderMAC &>> 32))
    reply.setBE32(22, UInt32(truncatingIfNeeded: senderMAC))
    reply.setBE32(26, senderIP)
    ring.pointee.commit(length: length)
    count(Counter.txFrames(interface))
    count(Counter.txBytes(interface), length)
    count(Counter.arpSuppressed)
    return true
  }

  // MARK: Output

  /// Writes a frame to a local port member: its two MACs, the member's VLAN tag if it
  /// has one, then everything after the MACs (EtherType onwards).
  @inline(__always)
  func emitLocal(
    _ state: ForwardingState, member: UInt16, macs: UnsafeRawPointer, rest: UnsafeRawPointer, restLength: Int
  ) {
    let interface = Int(state.memberInterface[Int(member)])
    let vlan = state.memberVLAN[Int(member)]
    guard let ring = rings[interface], let output = ring.pointee.reserve() else {
      drop(.txRingFull)
      return
    }
    let tagLength = vlan == 0 ? 0 : 4
    let length = 12 &+ tagLength &+ restLength
    if length > ring.pointee.maxFrameLength {
      drop(.oversize)
      return
    }
    if vlan == 0 && rest == macs + 12 {
      // Untagged in, untagged out: the frame is one run of bytes.
      output.copyFrameBytes(from: macs, count: length)
    } else {
      output.setRaw64(0, macs.raw64(0))
      output.setRaw32(8, macs.raw32(8))
      if vlan != 0 {
        output.setBE16(12, 0x8100)
        output.setBE16(14, vlan)
      }
      (output + (12 &+ tagLength)).copyFrameBytes(from: rest, count: restLength)
    }
    ring.pointee.commit(length: length)
    count(Counter.txFrames(interface))
    count(Counter.txBytes(interface), length)
  }

  /// `emitLocal` out of line, for access ingress: there local switching shares the loop
  /// with encapsulation, and an inlined copy would tie up registers the encapsulation
  /// path needs (its values spilled on every frame).
  @inline(never)
  func emitLocalCopy(
    _ state: ForwardingState, member: UInt16, macs: UnsafeRawPointer, rest: UnsafeRawPointer, restLength: Int
  ) {
    emitLocal(state, member: member, macs: macs, rest: rest, restLength: restLength)
  }

  /// Prepends the VTEP's precomputed outer header to the (untagged) inner frame and
  /// patches lengths, checksum, UDP source port, VNI and, when inherited, DSCP. `hash` is
  /// the inner flow's `flowHash`, computed once per frame by the caller (a flooded frame
  /// is encapsulated once per VTEP); `out` carries what the batch's encapsulations share.
  @inline(always)
  func encapsulate(
    _ state: ForwardingState, _ out: inout UnderlayOutput, vtep: Int, domain: UInt16, macs: UnsafeRawPointer,
    rest: UnsafeRawPointer, restLength: Int, hash: UInt64
  ) {
    if vtep >= state.vtepCount || !state.vtepResolved[vtep] {
      drop(.noNextHop)
      return
    }
    if restLength > out.maxRestLength {
      drop(out.overLimitReason(state: state, restLength: restLength))
      return
    }
    guard let output = out.tx.reserve() else {
      drop(.txRingFull)
      return
    }
    let headerLength = out.headerLength
    let innerLength = 12 &+ restLength
    let length = headerLength &+ innerLength
    let header = UnsafeRawPointer(state.vtepHeaders + vtep &* ForwardingState.headerSlot)
    // 48 bytes as three 16-byte moves, then the tail (2 bytes over IPv4, 22 over IPv6).
    output.setRaw128(0, header.raw128(0))
    output.setRaw128(16, header.raw128(16))
    output.setRaw128(32, header.raw128(32))
    if out.isIPv6 {
      output.setRaw128(48, header.raw128(48))
      output.setRaw32(64, header.raw32(64))
      output.setRaw16(68, header.raw16(68))
    } else {
      output.setRaw16(48, header.raw16(48))
    }
    if rest == macs + 12 {
      // Untagged inner frame: MACs and the rest are one run of bytes.
      (output + headerLength).copyFrameBytes(from: macs, count: innerLength)
    } else {
      output.setRaw64(headerLength, macs.raw64(0))
      output.setRaw32(headerLength &+ 8, macs.raw32(8))
      (output + (headerLength &+ 12)).copyFrameBytes(from: rest, count: restLength)
    }

    // Lemire's multiply-shift maps the hash onto the port range without a division.
    let spread = (hash &>> 32) &* UInt64(state.sourcePortSpan)
    let sourcePort = UInt16(
      truncatingIfNeeded: state.sourcePortBase &+ UInt32(truncatingIfNeeded: spread &>> 32))
    let vni = state.domainVNI[Int(domain)]
    if out.isIPv6 {
      let payloadLength = innerLength &+ 16
      if state.inheritDSCP {
        let tos = UInt32(Self.innerTOS(rest: rest, restLength: restLength))
        output.setBE32(14, 0x6000_0000 | tos &<< 20 | UInt32(truncatingIfNeeded: hash &>> 44))
      } else {
        output.setBE32(14, UnsafeRawPointer(output).be32(14) | UInt32(truncatingIfNeeded: hash &>> 44))
      }
      output.setBE16(18, UInt16(truncatingIfNeeded: payloadLength))
      output.setBE16(54, sourcePort)
      output.setBE16(58, UInt16(truncatingIfNeeded: payloadLength))
      output.setBE32(66, vni &<< 8)
      output.setBE16(
        60,
        Self.udpChecksum(
          output + 54, count: payloadLength,
          pseudoHeader: UInt64(state.vtepChecksumBase[vtep]) &+ UInt64(payloadLength)))
    } else {
      let ipLength = innerLength &+ 36
      var sum = state.vtepChecksumBase[vtep] &+ UInt32(truncatingIfNeeded: ipLength)
      if state.inheritDSCP {
        let tos = Self.innerTOS(rest: rest, restLength: restLength)
        output.setU8(15, tos)
        sum &+= UInt32(tos)
      }
      output.setBE16(16, UInt16(truncatingIfNeeded: ipLength))
      // One fold is enough: the base is folded to 16 bits and `ipLength` (bounded by the
      // MTU) plus TOS stays far below 0xFFFF, so the sum cannot carry twice.
      output.setBE16(24, ~UInt16(truncatingIfNeeded: (sum & 0xFFFF) &+ (sum &>> 16)))
      output.setBE16(34, sourcePort)
      output.setBE16(38, UInt16(truncatingIfNeeded: ipLength &- 20))
      output.setBE32(46, vni &<< 8)
      if state.ipv4UDPChecksum {
        let pseudo = OnesComplement.sum(output + 26, count: 8) &+ 17 &+ UInt64(ipLength &- 20)
        output.setBE16(40, Self.udpChecksum(output + 34, count: ipLength &- 20, pseudoHeader: pseudo))
      }
    }
    out.tx.commit(length: length)
    out.frames &+= 1
    out.bytes &+= length
  }

  /// `encapsulate` for the flooding path, out of line so that the known-unicast path
  /// keeps its inlined copy.
  @inline(never)
  func encapsulateCopy(
    _ state: ForwardingState, _ out: inout UnderlayOutput, vtep: Int, domain: UInt16, macs: UnsafeRawPointer,
    rest: UnsafeRawPointer, restLength: Int, hash: UInt64
  ) {
    encapsulate(
      state, &out, vtep: vtep, domain: domain, macs: macs, rest: rest, restLength: restLength, hash: hash)
  }

  /// The UDP checksum field for `count` bytes of UDP header and payload, given the
  /// pseudo-header's sum (0 is sent as 0xFFFF). Out of line: a loop over the payload.
  @inline(never)
  static func udpChecksum(_ udp: UnsafeRawPointer, count: Int, pseudoHeader: UInt64) -> UInt16 {
    let checksum = OnesComplement.finish(OnesComplement.sum(udp, count: count, initial: pseudoHeader))
    return checksum == 0 ? 0xFFFF : checksum
  }

  /// Adds a batch's underlay transmissions to the counters.
  @inline(__always)
  func flush(_ out: UnderlayOutput) {
    if out.frames == 0 { return }
    out.finish()
    count(Counter.txFrames(out.interface), out.frames)
    count(Counter.txBytes(out.interface), out.bytes)
    count(Counter.encapsulated, out.frames)
  }

  /// Sends a copy to every local member of the domain but the ingress one and, for
  /// frames from a local port only (split horizon), to every VTEP of its flood list.
  @inline(never)
  func flood(
    _ state: ForwardingState, _ out: inout UnderlayOutput, domain: UInt16, ingressMember: UInt16,
    fromLocal: Bool,
    macs: UnsafeRawPointer, rest: UnsafeRawPointer, restLength: Int
  ) {
    var copies = 0
    let memberStart = Int(state.domainMemberStart[Int(domain)])
    let memberEnd = memberStart &+ Int(state.domainMemberCount[Int(domain)])
    for position in memberStart..<memberEnd {
      let member = state.floodMembers[position]
      if member == ingressMember { continue }
      emitLocal(state, member: member, macs: macs, rest: rest, restLength: restLength)
      copies &+= 1
    }
    if fromLocal {
      let vtepStart = Int(state.domainVTEPStart[Int(domain)])
      let vtepEnd = vtepStart &+ Int(state.domainVTEPCount[Int(domain)])
      let hash = vtepStart < vtepEnd ? Self.flowHash(macs: macs, rest: rest, restLength: restLength) : 0
      for position in vtepStart..<vtepEnd {
        encapsulateCopy(
          state, &out, vtep: Int(state.floodVTEPs[position]), domain: domain, macs: macs, rest: rest,
          restLength: restLength, hash: hash)
        copies &+= 1
      }
    }
    if copies == 0 { drop(.noFloodTargets) }
    count(Counter.floodCopies, copies)
  }

  // MARK: Inner-frame helpers

  /// Odd, with well-mixed high bits; both of `flowHash`'s paths multiply by it, so a
  /// flow hashes alike whichever path its frames take.
  static let flowHashMultiplier: UInt64 = 0xBF58_476D_1CE4_E5B9

  /// A hash of the inner flow for the outer UDP source port (RFC 7348 section 5): the
  /// IP addresses, protocol and ports when the inner frame is IPv4/IPv6, else the MACs
  /// and EtherType, so that one flow always takes one underlay path.
  @inline(__always)
  static func flowHash(macs: UnsafeRawPointer, rest: UnsafeRawPointer, restLength: Int) -> UInt64 {
    // The common case first: IPv4 without options carrying an unfragmented TCP or UDP
    // segment, recognised with two masked loads (EtherType and version/IHL; fragment bits
    // and protocol); the ports then sit at a fixed offset.
    if fastPathByteOrder && restLength >= 26 && rest.raw64(0) & 0xFF_FFFF == 0x45_0008 {
      let fragmentAndProtocol = rest.raw64(8) & 0xFF00_FF1F
      if fragmentAndProtocol == 0x1100_0000 || fragmentAndProtocol == 0x0600_0000 {
        return (rest.raw64(14) ^ fragmentAndProtocol &>> 24 ^ UInt64(rest.raw32(22)) &<< 24)
          &* flowHashMultiplier
      }
    }
    let etherType = rest.be16(0)
    var hash: UInt64
    if etherType == 0x0800 && restLength >= 22 {
      let ip = rest + 2
      let headerLength = Int(ip.u8(0) & 0x0F) &<< 2
      let proto = ip.u8(9)
      hash = ip.raw64(12) ^ UInt64(proto)
      if (proto == 6 || proto == 17) && ip.be16(6) & 0x1FFF == 0 && restLength >= 2 &+ headerLength &+ 4 {
        hash ^= UInt64(ip.raw32(headerLength)) &<< 24
      }
    } else if etherType == 0x86DD && restLength >= 42 {
      let ip = rest + 2
      let nextHeader = ip.u8(6)
      hash = ip.raw64(8) ^ ip.raw64(16) ^ ip.raw64(24) &* 31 ^ ip.raw64(32) &* 31 ^ UInt64(nextHeader)
      if (nextHeader == 6 || nextHeader == 17) && restLength >= 46 { hash ^= UInt64(ip.raw32(40)) &<< 24 }
    } else {
      hash = macs.raw64(0) ^ macs.raw64(4) &* 31 ^ UInt64(etherType)
    }
    // Multiplicative hashing: the high bits of the product depend on every input bit,
    // and only high bits are used (the source port from bits 32-63, the IPv6 flow label
    // from bits 44-63).
    return hash &* flowHashMultiplier
  }

  /// Whether an IPv4 header's checksum verifies; the common 20-byte header as five
  /// words, without the general loop.
  @inline(__always)
  static func ipv4HeaderChecksumIsValid(_ ip: UnsafeRawPointer, headerLength: Int) -> Bool {
    if headerLength == 20 {
      let sum =
        UInt64(ip.raw32(0)) &+ UInt64(ip.raw32(4)) &+ UInt64(ip.raw32(8)) &+ UInt64(ip.raw32(12))
        &+ UInt64(ip.raw32(16))
      // The one's-complement sum is all ones exactly when the plain sum is a non-zero
      // multiple of 0xFFFF (2^16 and 2^32 are 1 modulo 0xFFFF), in either byte order
      // (swapping bytes multiplies by 256, which is invertible modulo 0xFFFF). A
      // remainder by a constant is a multiplication; folding would take three rounds.
      return sum % 0xFFFF == 0 && sum != 0
    }
    return OnesComplement.fold16(OnesComplement.sum(ip, count: headerLength)) == 0xFFFF
  }

  /// The inner IPv4 TOS / IPv6 traffic class byte, or 0.
  @inline(__always)
  static func innerTOS(rest: UnsafeRawPointer, restLength: Int) -> UInt8 {
    let etherType = rest.be16(0)
    if etherType == 0x0800 && restLength >= 22 { return rest.u8(3) }
    if etherType == 0x86DD && restLength >= 42 { return UInt8(truncatingIfNeeded: rest.be16(2) &>> 4) }
    return 0
  }
}

/// What a batch's first pass found out about one frame, for its second pass: 32 bytes,
/// two to a cache line, read back with one load per field from one base pointer.
struct FrameMeta {
  /// Packed FDB keys (bridge domain, MAC) of the source and destination. `source` is 0
  /// when there is nothing to learn (learning off, or the source cache says current).
  var source: UInt64
  var destination: UInt64
  /// 0 when the first pass dropped the frame.
  var domain: UInt16
  /// Access ingress: the ingress member. Decap ingress: source VTEP index + 1 (0 = unknown).
  var origin: UInt16
  /// Offset of the (inner) Ethernet header, and of the bytes after its two MACs (the
  /// EtherType, past an in-band VLAN tag).
  var macs: UInt16
  var rest: UInt16
  /// Bytes from `rest` to the end of the (inner) frame.
  var restLength: UInt32
  /// The destination key's home bucket, computed for the prefetch.
  var destinationBucket: UInt32

  @inline(__always)
  init(
    source: UInt64, destination: UInt64, destinationBucket: Int, domain: UInt16, origin: UInt16, macs: Int,
    rest: Int, restLength: Int
  ) {
    self.source = source
    self.destination = destination
    self.destinationBucket = UInt32(truncatingIfNeeded: destinationBucket)
    self.domain = domain
    self.origin = origin
    self.macs = UInt16(truncatingIfNeeded: macs)
    self.rest = UInt16(truncatingIfNeeded: rest)
    self.restLength = UInt32(truncatingIfNeeded: restLength)
  }
}

/// Per-frame results of a batch's first pass, read by its second pass: raw buffers,
/// allocated once per pipeline, copied into a local at the start of a batch so that the
/// optimiser keeps the pointers in registers.
struct BatchScratch {
  let frames: UnsafeMutablePointer<FrameMeta>
  /// Decap ingress: the outer source address (learning of unknown VTEPs needs it).
  let vtepHigh: UnsafeMutablePointer<UInt64>
  let vtepLow: UnsafeMutablePointer<UInt64>

  init(capacity: Int) {
    frames = .allocate(capacity: capacity)
    frames.initialize(
      repeating: FrameMeta(
        source: 0, destination: 0, destinationBucket: 0, domain: 0, origin: 0, macs: 0, rest: 0, restLength: 0
      ),
      count: capacity)
    vtepHigh = .allocate(capacity: capacity)
    vtepHigh.initialize(repeating: 0, count: capacity)
    vtepLow = .allocate(capacity: capacity)
    vtepLow.initialize(repeating: 0, count: capacity)
  }

  func deallocate() {
    frames.deallocate()
    vtepHigh.deallocate()
    vtepLow.deallocate()
  }
}
