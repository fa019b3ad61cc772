extension Pipeline {
  /// Frames from the underlay: validate the outer headers, decapsulate, learn the inner
  /// source at the outer source VTEP, and deliver to local members (never back to a VTEP).
  func decapsulateBatch(_ vector: inout FrameVector, _ state: ForwardingState) {
    if !fastPathsEnabled || !Self.fastPathByteOrder {
      decapsulateBatchGenerally(&vector, state)
      return
    }
    let caching = decapCaching.cachesNextBatch
    var misses = 0
    if state.localIsIPv6 {
      misses =
        caching
        ? decapsulateBatch(&vector, state, IPv6Underlay.self, ProbingFlowCache.self)
        : decapsulateBatch(&vector, state, IPv6Underlay.self, BypassingFlowCache.self)
    } else {
      misses =
        caching
        ? decapsulateBatch(&vector, state, IPv4Underlay.self, ProbingFlowCache.self)
        : decapsulateBatch(&vector, state, IPv4Underlay.self, BypassingFlowCache.self)
    }
    decapCaching.record(cached: caching, misses: misses, frames: vector.count)
  }

  /// One batch from the underlay; returns how many frames missed the flow cache (the
  /// whole batch when `Caching` bypasses it: not counted per frame, the policy needs no
  /// more).
  @inline(never)
  func decapsulateBatch<Family: UnderlayFamily, Caching: FlowCacheUse>(
    _ vector: inout FrameVector, _ state: ForwardingState, _ family: Family.Type, _ caching: Caching.Type
  ) -> Int {
    // Locals, not stored properties: see `switchAccessBatch`.
    let table = fdb.reader
    let frames = vector.frames
    let frameCount = vector.count
    let ingress = vector.ingress
    let now = vector.now
    let rings = self.rings
    let counters = self.counters
    let flows = decapFlows
    let generation = flowGeneration
    let prefetching = !Caching.probes || decapPrefetch
    let sources = sourceCache
    let cacheTagBase = sourceCacheTagBase(kind: FDBTargetKind.vtep.rawValue, now: now)
    let outerLength = Family.outerLength
    let pattern = state.outerHeaderPattern
    // Frames the fast path leaves to the general path by their flags alone.
    let generalFlags = fastPathRefusedFlags
    var lane = DecapLane.none
    let laneSlot = currentDecapLane
    // Frames of one batch mostly come from few VTEPs: remember the last outer source
    // address (as loaded) and its VTEP index (seeded with a real lookup, so no sentinel
    // can be wrong).
    var lastSource: (UInt64, UInt64) = (0, 0)
    var lastVTEP = state.vtep(high: 0, low: 0)
    // Frames from an unknown VTEP, when only known ones are accepted, take the general
    // path, which counts the drop: decided when `lastVTEP` changes, not per frame.
    let onlyKnownVTEPs = state.acceptsOnlyKnownVTEPs
    var lastVTEPRefused = lastVTEP < 0 && onlyKnownVTEPs
    // The flow cache tag of the lane's frames from `lastVTEP`, kept with both.
    var sourceFlowTag = lane.flowTag(fromVTEP: lastVTEP)
    // Every frame the fast path takes is decapsulated: counted as the batch less the
    // frames left to the general path (which counts its own), not once per frame.
    var generalFrames = 0
    var misses = 0
    for index in 0..<frameCount {
      let frame = UnsafeRawPointer(frames[index])
      let length = FrameVector.length(frames, index)
      let flags = FrameVector.flags(frames, index)
      if prefetching {
        let ahead = index &+ Self.prefetchDistance
        if ahead < frameCount && FrameVector.length(frames, ahead) >= outerLength &+ 14 {
          table.prefetch(lane.domainBits | UnsafeRawPointer(frames[ahead]).be64(outerLength) &>> 16)
        }
      }

      // The fast path: the common outer frame (see `OuterHeaderPattern` and the
      // family's `acceptsOuter`; nothing for the kernel to finish), carrying a flow whose
      // decision is cached, or else known unicast for an untagged local member (whose
      // decision is then cached, once its source is known to be where it came from).
      fast: do {
        if !Family.fastPathTakes(length: length) || flags & generalFlags != 0 { break fast }
        if !Family.acceptsOuter(frame, length: length, flags: flags, pattern) { break fast }
        let vniField = Family.vniField(frame)
        if _slowPath(vniField != lane.vniField) {
          lane = Self.decapLane(state: state, table: table, vniField: vniField, flowGeneration: generation)
          laneSlot.pointee = lane
          sourceFlowTag = lane.flowTag(fromVTEP: lastVTEP)
        }
        let outerSource = Family.sourceAsLoaded(frame)
        if outerSource != lastSource {
          lastSource = outerSource
          let address = Family.address(asLoaded: outerSource)
          lastVTEP = state.vtep(high: address.high, low: address.low)
          lastVTEPRefused = lastVTEP < 0 && onlyKnownVTEPs
          sourceFlowTag = lane.flowTag(fromVTEP: lastVTEP)
        }
        if lastVTEPRefused { break fast }
        let inner = frame + outerLength
        var decision: UInt64
        if Caching.probes {
          let head = inner.raw64(0)
          let tail = inner.raw64(6)
          let entry = flows.entry(head: head, tail: tail)
          decision = entry.pointee.decision
          if entry.pointee.head != head || entry.pointee.tail != tail || entry.pointee.tag != sourceFlowTag {
            misses &+= 1
            decision = resolveDecapFlow(
              inner, head: head, tail: tail, entry: entry, flowTag: sourceFlowTag, vtep: lastVTEP,
              vtepAddress: Family.address(asLoaded: outerSource), state: state, now: now)
            if decision == 0 { break fast }
          }
        } else {
          decision =
            decideDecapFlow(
              inner, lane: lane, vtep: lastVTEP, vtepAddress: Family.address(asLoaded: outerSource),
              table: table,
              state: state, sources: sources, cacheTagBase: cacheTagBase, now: now
            ).decision
          if decision == 0 { break fast }
        }
        // What `emitLocal` does for an untagged member, its drops included.
        let interface = Int(truncatingIfNeeded: decision &>> 32)
        let innerLength = length &- outerLength
        guard let ring = rings[interface], ring.pointee.reserve() != nil else {
          drop(.txRingFull)
          continue
        }
        if innerLength > ring.pointee.maxFrameLength {
          drop(.oversize)
          continue
        }
        // Copied, or, received into the UMEM the access port shares, sent where it is.
        ring.pointee.commit(copying: inner, length: innerLength, frameFlags: flags)
        counters[Counter.txFrames(interface)] &+= 1
        counters[Counter.txBytes(interface)] &+= UInt64(truncatingIfNeeded: innerLength)
        continue
      }

      generalFrames &+= 1
      decapsulateFrame(frames[index], length: length, flags: flags, now: now, state)
    }
    if Caching.probes { decapPrefetch = Self.prefetchWanted(misses: misses, frames: frameCount) }
    countReceived(
      interface: ingress, frames: frameCount, bytes: FrameVector.totalLength(frames, count: frameCount))
    count(Counter.decapsulated, frameCount &- generalFrames)
    return Caching.probes ? misses : frameCount
  }

  /// A flow cache miss on underlay ingress, out of line: `decideDecapFlow`, then the
  /// flow cached when its source is known to be at `vtep` this second. The lane is the
  /// batch's current one (`currentDecapLane`).
  @inline(never)
  func resolveDecapFlow(
    _ inner: UnsafeRawPointer, head: UInt64, tail: UInt64, entry: UnsafeMutablePointer<FlowCacheEntry>,
    flowTag: UInt64, vtep: Int, vtepAddress: (high: UInt64, low: UInt64), state: ForwardingState, now: UInt32
  ) -> UInt64 {
    let (decision, cacheable) = decideDecapFlow(
      inner, lane: currentDecapLane.pointee, vtep: vtep, vtepAddress: vtepAddress, table: fdb.reader,
      state: state, sources: sourceCache,
      cacheTagBase: sourceCacheTagBase(kind: FDBTargetKind.vtep.rawValue, now: now), now: now)
    if cacheable {
      entry.pointee = FlowCacheEntry(head: head, tail: tail, tag: flowTag, decision: decision)
    }
    return decision
  }

  /// The fast path's decision for a decapsulated frame the flow cache does not decide:
  /// the checks the cache spares hit frames (no inner tag, a unicast source and
  /// destination, a current FDB entry at an untagged local member), then learning of the
  /// source at `vtep` (index, or -1 when unknown, and address). Returns the decision
  /// (`FlowDecision`), or 0 when the frame needs the general path (nothing learnt then,
  /// so that it learns once), and whether the source was found current at the VTEP (the
  /// flow may be cached).
  @inline(__always)
  func decideDecapFlow(
    _ inner: UnsafeRawPointer, lane: DecapLane, vtep: Int, vtepAddress: (high: UInt64, low: UInt64),
    table: ForwardingTable.Reader, state: ForwardingState, sources: UnsafeMutablePointer<SourceCacheEntry>,
    cacheTagBase: UInt64, now: UInt32
  ) -> (decision: UInt64, cacheable: Bool) {
    if inner.be16(12) == 0x8100 { return (0, false) }
    // See `decideAccessFlow`: both MACs' group bits at once, and a source that is not zero.
    let sourceField = inner.be64(6)
    let destinationField = inner.be64(0)
    if (sourceField | destinationField) & Self.groupBitOfLoadedMAC != 0 || sourceField < 0x1_0000 {
      return (0, false)
    }
    // An unknown VTEP is learnt by the general path.
    if lane.learns && vtep < 0 { return (0, false) }
    let source = sourceField &>> 16
    let destination = destinationField &>> 16
    let value = table.homeValue(lane.domainBits | destination)
    if value & FDBValuePattern.mask != lane.portPattern || !table.portIsCurrent(value) { return (0, false) }
    let member = Int(truncatingIfNeeded: value & 0xFFFF)
    if state.memberVLAN[member] != 0 { return (0, false) }
    let decision = FlowDecision.member(member, interface: Int(state.memberInterface[member]))
    if lane.learns {
      let key = lane.domainBits | source
      let tag = cacheTagBase | UInt64(truncatingIfNeeded: vtep)
      if !Self.sourceIsCached(key, tag: tag, in: sources) {
        learnOutOfLine(
          key: key, kind: FDBTargetKind.vtep.rawValue, index: UInt16(truncatingIfNeeded: vtep),
          high: vtepAddress.high, low: vtepAddress.low, domain: lane.domain, now: now)
        return (decision, Self.sourceIsCached(key, tag: tag, in: sources))
      }
    }
    return (decision, true)
  }

  /// Every frame of the batch down the general path: with the fast paths off (tests
  /// compare against it) or on a host whose byte order their masks do not fit.
  @inline(never)
  func decapsulateBatchGenerally(_ vector: inout FrameVector, _ state: ForwardingState) {
    var receivedBytes = 0
    for index in 0..<vector.count {
      let length = FrameVector.length(vector.frames, index)
      receivedBytes &+= length
      decapsulateFrame(
        vector.frames[index], length: length, flags: FrameVector.flags(vector.frames, index), now: vector.now,
        state)
    }
    countReceived(interface: vector.ingress, frames: vector.count, bytes: receivedBytes)
  }

  /// `DecapLane.init` out of line: a lane changes only when the VNI does.
  @inline(never)
  static func decapLane(
    state: ForwardingState, table: ForwardingTable.Reader, vniField: UInt32, flowGeneration: UInt32
  ) -> DecapLane {
    DecapLane(state: state, table: table, vniField: vniField, flowGeneration: flowGeneration)
  }

  /// The whole job for one frame from the underlay, for every frame the fast path
  /// leaves: full outer validation (802.1Q, IPv4 options, IPv6, UDP checksums, checksum
  /// completion of locally built frames) naming every drop reason, learning (also of
  /// unknown VTEPs), lookup with overflow probing, local delivery, split horizon and
  /// flooding to local members.
  @inline(never)
  func decapsulateFrame(
    _ mutableFrame: UnsafeMutableRawPointer, length: Int, flags: UInt8, now: UInt32, _ state: ForwardingState
  ) {
    let frame = UnsafeRawPointer(mutableFrame)
    let checksumTrusted = flags & FrameFlags.checksumValid != 0
    // Outer Ethernet + a minimal IPv4 header; every later read is bounded by the IP
    // and UDP lengths, themselves checked against the frame length.
    if length < 34 {
      drop(.runt)
      return
    }
    var ipOffset = 14
    var etherType = frame.be16(12)
    if etherType == 0x8100 {
      etherType = frame.be16(16)
      ipOffset = 18
      if length < 38 {
        drop(.runt)
        return
      }
    }
    let ip = frame + ipOffset
    let ipEnd: Int
    let udpOffset: Int
    var sourceHigh: UInt64 = 0
    let sourceLow: UInt64
    if etherType == 0x0800 {
      let versionAndLength = ip.u8(0)
      var headerLength = 20
      if versionAndLength != 0x45 {
        // Options (or garbage): the rare case gets the general checks.
        headerLength = Int(versionAndLength & 0x0F) &<< 2
        if versionAndLength &>> 4 != 4 || headerLength < 20 {
          drop(.badIPHeader)
          return
        }
      }
      let totalLength = Int(ip.be16(2))
      ipEnd = ipOffset &+ totalLength
      if totalLength < headerLength || ipEnd > length {
        drop(.badIPLength)
        return
      }
      if !checksumTrusted && !Self.ipv4HeaderChecksumIsValid(ip, headerLength: headerLength) {
        drop(.badIPChecksum)
        return
      }
      if ip.be16(6) & 0x3FFF != 0 {
        drop(.outerFragment)
        return
      }
      if ip.u8(9) != 17 {
        drop(.notUDP)
        return
      }
      if state.localIsIPv6 || UInt64(ip.be32(16)) != state.localLow {
        drop(.notForLocalVTEP)
        return
      }
      sourceLow = UInt64(ip.be32(12))
      udpOffset = ipOffset &+ headerLength
    } else if etherType == 0x86DD {
      if ip.u8(0) &>> 4 != 6 {
        drop(.badIPHeader)
        return
      }
      if ipOffset &+ 40 > length {
        drop(.runt)
        return
      }
      ipEnd = ipOffset &+ 40 &+ Int(ip.be16(4))
      if ipEnd > length {
        drop(.badIPLength)
        return
      }
      let nextHeader = ip.u8(6)
      if nextHeader != 17 {
        switch nextHeader {
        case 44: drop(.outerFragment)
        case 0, 43, 50, 51, 60, 135, 139, 140: drop(.unsupportedIPv6Extension)
        default: drop(.notUDP)
        }
        return
      }
      if !state.localIsIPv6 || ip.be64(24) != state.localHigh || ip.be64(32) != state.localLow {
        drop(.notForLocalVTEP)
        return
      }
      sourceHigh = ip.be64(8)
      sourceLow = ip.be64(16)
      udpOffset = ipOffset &+ 40
    } else {
      drop(.notIP)
      return
    }
    if udpOffset &+ 8 > ipEnd {
      drop(.badUDPLength)
      return
    }
    let udp = frame + udpOffset
    let udpLength = Int(udp.be16(4))
    if udpLength < 8 &+ 8 &+ 14 || udpOffset &+ udpLength != ipEnd {
      drop(.badUDPLength)
      return
    }
    if udp.be16(2) != state.udpPort {
      drop(.wrongUDPPort)
      return
    }
    let checksum = udp.be16(6)
    if flags & (FrameFlags.checksumNotReady | FrameFlags.innerChecksumPartial) != 0 {
      // Built by the local kernel (a vxlan device in this host): the outer checksum,
      // if any, was computed for the inner frame as completed below (RFC 7348 LCO).
    } else if checksum == 0 {
      if etherType == 0x86DD {
        drop(.badUDPChecksum)
        return
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
        return
      }
    }
    if udp.u8(8) & 0x08 == 0 {
      drop(.badVXLANFlags)
      return
    }
    let domain = state.domain(vni: frame.be32(udpOffset &+ 12) &>> 8)
    if domain == 0 {
      drop(.unknownVNI)
      return
    }
    let innerOffset = udpOffset &+ 16
    if flags & (FrameFlags.checksumNotReady | FrameFlags.innerChecksumPartial) != 0 {
      if ChecksumCompletion.complete(frame: mutableFrame + innerOffset, length: ipEnd &- innerOffset) {
        count(Counter.checksumsCompleted)
      }
    }
    let inner = frame + innerOffset
    if inner.be16(12) == 0x8100 {
      drop(.innerVLANTag)
      return
    }
    let source = inner.be64(4) & 0xFFFF_FFFF_FFFF
    if source & 0x0100_0000_0000 != 0 || source == 0 {
      drop(.badSourceMAC)
      return
    }
    let vtep = state.vtep(high: sourceHigh, low: sourceLow)
    if vtep < 0 && state.acceptsOnlyKnownVTEPs {
      drop(.unknownVTEP)
      return
    }
    count(Counter.decapsulated)
    let domainBits = UInt64(domain) &<< 48
    if state.domainLearnFlags[Int(domain)] & LearnFlags.decap != 0 {
      learn(
        key: domainBits | source, kind: FDBTargetKind.vtep.rawValue, index: UInt16(truncatingIfNeeded: vtep),
        high: sourceHigh, low: sourceLow, domain: domain, now: now, knownVTEP: vtep >= 0)
    }
    let rest = inner + 12
    let restLength = ipEnd &- innerOffset &- 12
    let destinationKey = domainBits | inner.be64(0) &>> 16
    if destinationKey & 0x0100_0000_0000 == 0 {
      var slot = 0
      let entry = fdb.lookup(destinationKey, slot: &slot)
      if entry.isPresent && fdb.isCurrent(entry, bridgeDomain: domain) {
        switch entry.kindBits {
        case FDBTargetKind.port.rawValue:
          // As the fast path does (the two must agree).
          emitLocal(
            state, member: entry.index, macs: inner, rest: rest, restLength: restLength,
            checksumTrusted: flags & FrameFlags.builtOnThisHost != 0)
        case FDBTargetKind.vtep.rawValue:
          drop(.splitHorizon)
        default:
          drop(.fdbDrop)
        }
        return
      }
    }
    // Decapsulated frames are never sent back to the underlay (split horizon).
    var out = UnderlayOutput(state: state, ring: nil)
    flood(
      state, &out, domain: domain, ingressMember: 0, fromLocal: false, macs: inner, rest: rest,
      restLength: restLength)
  }

  /// Whether a 20-byte IPv4 header (version/IHL byte non-zero) checksums to all ones:
  /// two 64-bit words and one 32-bit word added with end-around carry, and the sum tested
  /// for divisibility by 0xFFFF with one multiplication. A one's-complement sum is all
  /// ones exactly when the plain sum is a non-zero multiple of 0xFFFF (2^16, and so 2^32
  /// and 2^64, are 1 modulo 0xFFFF), in either byte order (swapping bytes multiplies by
  /// 256, which is invertible modulo 0xFFFF); an odd divisor divides `x` exactly when
  /// `x` times its inverse modulo 2^64 is at most (2^64 - 1) / divisor.
  @inline(__always)
  static func ipv4HeaderChecksumIsValid20(_ ip: UnsafeRawPointer) -> Bool {
    let (partial, carry1) = ip.raw64(0).addingReportingOverflow(ip.raw64(8))
    let (sum, carry2) = partial.addingReportingOverflow(UInt64(ip.raw32(16)) &+ (carry1 ? 1 : 0))
    return (sum &+ (carry2 ? 1 : 0)) &* 0xFFFE_FFFE_FFFE_FFFF <= 0x1_0001_0001_0001
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
}
