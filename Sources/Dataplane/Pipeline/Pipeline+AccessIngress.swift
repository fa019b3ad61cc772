extension Pipeline {
  /// Frames from a local access port: learn the source, then switch locally, encapsulate
  /// towards the destination's VTEP, or flood.
  func switchAccessBatch(_ vector: inout FrameVector, _ state: ForwardingState) {
    let caching = accessCaching.cachesNextBatch
    let misses: Int
    if let segmenter = rings[Int(state.underlayInterface)]?.pointee.segmenter {
      // The general path commits through the segmenter too: told not to join, it only
      // writes plain headers, so that no datagram overtakes another of its flow.
      let joining = segmentsUnderlay && underlayPolicy.segmentsNextBatch
      segmenter.pointee.merging = joining
      segmenter.pointee.udpChecksums = state.localIsIPv6 || state.ipv4UDPChecksum
      // Only a joining batch copies deferred payloads where they go (`DeferredPayload`).
      if vector.hasDeferredPayloads && !joining { DeferredPayload.materializeAll(&vector) }
      if joining && segmenter.pointee.tunnel.isActive {
        misses = switchAccessBatch(&vector, state, caching: caching, TunnelTapUnderlayCommit.self)
      } else {
        misses =
          joining
          ? switchAccessBatch(&vector, state, caching: caching, SegmentingUnderlayCommit.self)
          : switchAccessBatch(&vector, state, caching: caching, PlainHeaderUnderlayCommit.self)
      }
    } else {
      if vector.hasDeferredPayloads { DeferredPayload.materializeAll(&vector) }
      misses =
        rings[Int(state.underlayInterface)]?.pointee.inPlace != nil
        ? switchAccessBatch(&vector, state, caching: caching, InPlaceUnderlayCommit.self)
        : switchAccessBatch(&vector, state, caching: caching, PlainUnderlayCommit.self)
    }
    vector.hasDeferredPayloads = false
    accessCaching.record(cached: caching, misses: misses, frames: vector.count)
  }

  /// The loop variant for the site's encapsulation flavor and the batch's flow cache use.
  @inline(__always)
  private func switchAccessBatch<Commit: UnderlayCommit>(
    _ vector: inout FrameVector, _ state: ForwardingState, caching: Bool, _ commit: Commit.Type
  ) -> Int {
    if PlainIPv4Encapsulation.matches(state) {
      return caching
        ? switchAccessBatch(&vector, state, PlainIPv4Encapsulation.self, ProbingFlowCache.self, commit)
        : switchAccessBatch(&vector, state, PlainIPv4Encapsulation.self, BypassingFlowCache.self, commit)
    } else if PlainIPv6Encapsulation.matches(state) {
      return caching
        ? switchAccessBatch(&vector, state, PlainIPv6Encapsulation.self, ProbingFlowCache.self, commit)
        : switchAccessBatch(&vector, state, PlainIPv6Encapsulation.self, BypassingFlowCache.self, commit)
    }
    return switchAccessBatch(&vector, state, ConfiguredEncapsulation.self, ProbingFlowCache.self, commit)
  }

  /// One batch from an access port; returns how many frames missed the flow cache (the
  /// whole batch when `Caching` bypasses it: not counted per frame, the policy needs no
  /// more).
  @inline(never)
  func switchAccessBatch<Flavor: EncapsulationFlavor, Caching: FlowCacheUse, Commit: UnderlayCommit>(
    _ vector: inout FrameVector, _ state: ForwardingState, _ flavor: Flavor.Type, _ caching: Caching.Type,
    _ commit: Commit.Type
  ) -> Int {
    // Locals, not stored properties: after a store through a raw pointer the optimiser
    // cannot assume `self`'s (or `state`'s) fields unchanged and would reload them, and
    // the pointers behind them, for every frame.
    let table = fdb.reader
    let frames = vector.frames
    let frameCount = vector.count
    let ingress = vector.ingress
    let now = vector.now
    let cacheTagBase = sourceCacheTagBase(kind: FDBTargetKind.port.rawValue, now: now)
    let flows = accessFlows
    let generation = flowGeneration
    let enabled = fastPathsEnabled
    let prefetching = !Caching.probes || accessPrefetch
    let sources = sourceCache
    var out = UnderlayOutput(state: state, ring: rings[Int(state.underlayInterface)])
    // The lane lives in memory and is read there: a loop-carried struct would have its
    // fields copied between stack slots on every frame.
    let lane = currentAccessLane
    lane.pointee = AccessLane(
      state: state, table: table, interface: ingress, tag: 0, sourceCacheTagBase: cacheTagBase,
      flowGeneration: generation, maxRestLength: out.maxRestLength, enabled: enabled)
    var receivedBytes = 0
    // The frames the fast path does not encapsulate (local, dropped, general path), and
    // their bytes: the batch's encapsulations are the rest, counted without a per-frame
    // add on the common path.
    var otherFrames = 0
    var otherBytes = 0
    var misses = 0
    for index in 0..<frameCount {
      let frame = UnsafeRawPointer(frames[index])
      let length = FrameVector.length(frames, index)
      receivedBytes &+= length
      let tag = FrameVector.vlanTag(frames, index)
      if prefetching {
        let ahead = index &+ Self.prefetchDistance
        if ahead < frameCount && FrameVector.length(frames, ahead) >= 14 {
          table.prefetch(lane.pointee.domainBits | UnsafeRawPointer(frames[ahead]).be64(0) &>> 16)
        }
      }
      if _slowPath(tag != lane.pointee.tag) {
        lane.pointee = Self.lane(
          state: state, table: table, interface: ingress, tag: tag, sourceCacheTagBase: cacheTagBase,
          flowGeneration: generation, maxRestLength: out.maxRestLength, enabled: enabled)
      }

      // The fast path: a flow whose decision is cached, or else known unicast (whose
      // decision is then cached, once its source is known to be where it came from).
      fast: do {
        if UInt(bitPattern: length &- 14) >= lane.pointee.lengthSpan { break fast }
        var decision: UInt64
        if Caching.probes {
          let head = frame.raw64(0)
          let tail = frame.raw64(6)
          let entry = flows.entry(head: head, tail: tail)
          decision = entry.pointee.decision
          if entry.pointee.head != head || entry.pointee.tail != tail
            || entry.pointee.tag != lane.pointee.flowTag
          {
            misses &+= 1
            decision = resolveAccessFlow(frame, head: head, tail: tail, entry: entry, state: state, now: now)
            if decision == 0 { break fast }
          }
        } else {
          decision =
            decideAccessFlow(
              frame, lane: lane, table: table, vtepCount: out.vtepCount, resolved: out.resolved,
              sources: sources,
              now: now
            ).decision
          if decision == 0 { break fast }
        }
        let restLength = length &- 12
        if decision & FlowDecision.kindMask == FlowDecision.vtep {
          guard var output = out.tx.reserve() else {
            drop(.txRingFull)
            otherFrames &+= 1
            otherBytes &+= length
            continue
          }
          let headerLength = Flavor.headerLength(out)
          // Received into the underlay port's UMEM: the outer header goes in front of the
          // frame where it is, and the slot only says where that is.
          var inPlace = -1
          if Commit.sendsInPlace,
            let offset = out.tx.inPlace.unsafelyUnwrapped.pointee.claim(frame, headroom: headerLength)
          {
            inPlace = offset
            output = UnsafeMutableRawPointer(mutating: frame) - headerLength
          }
          let payload = Commit.payload(
            &out.tx, output: output, offset: headerLength &- 8, length: length &+ headerLength)
          // A segment whose payload is still in its super-frame is copied from there.
          let deferred =
            Commit.takesDeferredPayloads
            && FrameVector.flags(frames, index) & FrameFlags.payloadDeferred != 0
          let whole = deferred ? Commit.writeDeferred(&out.tx, frame, length: length, to: payload + 8) : true
          // Staged in a GSO run, whose header replaces its own unless it leaves the run.
          let staged = Commit.takesDeferredPayloads && payload != output + (headerLength &- 8)
          _ = Self.writeEncapsulation(
            output, payload: payload, out, vtep: Int(truncatingIfNeeded: decision & 0xFFFF),
            vniField: lane.pointee.vniField,
            macs: frame,
            rest: frame + 12, restLength: restLength,
            hash: InnerFrame.flowHash(macs: frame, rest: frame + 12, restLength: restLength),
            copiesInner: !deferred && (!Commit.sendsInPlace || inPlace < 0), summingUDP: !staged && whole,
            Flavor.self)
          if Commit.sendsInPlace && inPlace >= 0 {
            out.tx.commitInPlace(offset: inPlace, length: length &+ headerLength)
          } else {
            Commit.commit(&out.tx, length: length &+ headerLength)
          }
          continue
        }
        otherFrames &+= 1
        otherBytes &+= length
        if Commit.takesDeferredPayloads { DeferredPayload.materialize(frames, index) }
        emitLocalCopy(
          state, member: UInt16(truncatingIfNeeded: decision), macs: frame, rest: frame + 12,
          restLength: restLength)
        continue
      }

      otherFrames &+= 1
      otherBytes &+= length
      if Commit.takesDeferredPayloads { DeferredPayload.materialize(frames, index) }
      out.finish()
      switchAccessFrame(frame, length: length, vlanTag: tag, ingress: ingress, now: now, state)
      out.resume()
    }
    if Caching.probes { accessPrefetch = Self.prefetchWanted(misses: misses, frames: frameCount) }
    countReceived(interface: ingress, frames: frameCount, bytes: receivedBytes)
    out.frames &+= frameCount &- otherFrames
    out.innerBytes &+= receivedBytes &- otherBytes
    flush(out)
    return Caching.probes ? misses : frameCount
  }

  /// A flow cache miss on access ingress, out of line: `decideAccessFlow`, then the flow
  /// cached when its source is known to be at the lane's member this second. The lane
  /// is the batch's current one (`currentAccessLane`).
  @inline(never)
  func resolveAccessFlow(
    _ frame: UnsafeRawPointer, head: UInt64, tail: UInt64, entry: UnsafeMutablePointer<FlowCacheEntry>,
    state: ForwardingState, now: UInt32
  ) -> UInt64 {
    let lane = currentAccessLane
    let (decision, cacheable) = decideAccessFlow(
      frame, lane: lane, table: fdb.reader, vtepCount: state.vtepCount, resolved: state.vtepResolved,
      sources: sourceCache, now: now)
    if cacheable {
      entry.pointee = FlowCacheEntry(head: head, tail: tail, tag: lane.pointee.flowTag, decision: decision)
    }
    return decision
  }

  /// The fast path's decision for a frame the flow cache does not decide (`lane` read
  /// where its fields are needed, not copied whole): the checks the
  /// cache spares hit frames (no in-band tag, no ARP for a watching domain, a unicast
  /// source and destination, a current FDB entry at a reachable VTEP or another local
  /// member), then learning of the source. Returns the decision (`FlowDecision`), or 0
  /// when the frame needs the general path (nothing learnt then, so that it learns
  /// once), and whether the source was found current at the member (the flow may be
  /// cached).
  @inline(__always)
  func decideAccessFlow(
    _ frame: UnsafeRawPointer, lane: UnsafeMutablePointer<AccessLane>, table: ForwardingTable.Reader,
    vtepCount: Int,
    resolved: UnsafeMutablePointer<Bool>, sources: UnsafeMutablePointer<SourceCacheEntry>, now: UInt32
  ) -> (decision: UInt64, cacheable: Bool) {
    if frame.be16(12) == 0x8100 { return (0, false) }
    if lane.pointee.watchesARP && frame.be16(12) == 0x0806 { return (0, false) }
    // Bytes 6-13 and 0-7 loaded and shifted: the source and destination MACs, in one load
    // each and no mask. Their group bits (bit 56 of either load) tested at once.
    let sourceField = frame.be64(6)
    let destinationField = frame.be64(0)
    if (sourceField | destinationField) & Self.groupBitOfLoadedMAC != 0 || sourceField < 0x1_0000 {
      return (0, false)
    }
    let source = sourceField &>> 16
    let destination = destinationField &>> 16
    let value = table.homeValue(lane.pointee.domainBits | destination)
    let pattern = value & FDBValuePattern.mask
    if pattern == lane.pointee.vtepPattern {
      let vtep = Int(truncatingIfNeeded: value & 0xFFFF)
      if !table.vtepIsCurrent(value) || vtep >= vtepCount || !resolved[vtep] { return (0, false) }
    } else if pattern == lane.pointee.portPattern {
      if UInt16(truncatingIfNeeded: value) == lane.pointee.member || !table.portIsCurrent(value) {
        return (0, false)
      }
    } else {
      return (0, false)
    }
    let decision = value & FlowDecision.targetMask
    if lane.pointee.learns {
      let key = lane.pointee.domainBits | source
      if !Self.sourceIsCached(key, tag: lane.pointee.sourceCacheTag, in: sources) {
        learnOutOfLine(
          key: key, kind: FDBTargetKind.port.rawValue, index: lane.pointee.member, high: 0, low: 0,
          domain: lane.pointee.domain,
          now: now)
        return (decision, Self.sourceIsCached(key, tag: lane.pointee.sourceCacheTag, in: sources))
      }
    }
    return (decision, true)
  }

  /// `AccessLane.init` out of line: a lane changes only when the VLAN tag does.
  @inline(never)
  static func lane(
    state: ForwardingState, table: ForwardingTable.Reader, interface: UInt16, tag: UInt32,
    sourceCacheTagBase: UInt64,
    flowGeneration: UInt32, maxRestLength: Int, enabled: Bool
  ) -> AccessLane {
    AccessLane(
      state: state, table: table, interface: interface, tag: tag, sourceCacheTagBase: sourceCacheTagBase,
      flowGeneration: flowGeneration, maxRestLength: maxRestLength, enabled: enabled)
  }

  /// The whole job for one frame from an access port, for every frame the fast path
  /// leaves: VLAN mapping (in-band tags too), learning, ARP suppression, lookup with
  /// overflow probing, local delivery, encapsulation or flooding, and every drop reason.
  @inline(never)
  func switchAccessFrame(
    _ frame: UnsafeRawPointer, length: Int, vlanTag tag: UInt32, ingress: UInt16, now: UInt32,
    _ state: ForwardingState
  ) {
    if length < 14 {
      drop(.runt)
      return
    }
    var column = ForwardingState.untaggedColumn
    var restOffset = 12
    if tag & FrameVector.vlanTagPresent != 0 {
      let vlan = Int(tag & 0xFFF)
      if vlan != 0 { column = vlan }
    } else if frame.be16(12) == 0x8100 {
      if length < 18 {
        drop(.runt)
        return
      }
      let vlan = Int(frame.be16(14) & 0xFFF)
      if vlan != 0 { column = vlan }
      restOffset = 16
    }
    let member = state.member(interface: ingress, vlan: column)
    if member == 0 {
      drop(.unmappedVLAN)
      return
    }
    let source = frame.be64(4) & 0xFFFF_FFFF_FFFF
    if source & 0x0100_0000_0000 != 0 || source == 0 {
      drop(.badSourceMAC)
      return
    }
    let domain = state.memberDomain[Int(member)]
    let domainBits = UInt64(domain) &<< 48
    let rest = frame + restOffset
    let restLength = length &- restOffset
    let learnsLocally = state.domainLearnFlags[Int(domain)] & LearnFlags.local != 0
    if learnsLocally {
      learn(
        key: domainBits | source, kind: FDBTargetKind.port.rawValue, index: member, high: 0, low: 0,
        domain: domain, now: now)
    }
    let destinationKey = domainBits | frame.be64(0) &>> 16
    if state.domainARPSuppression[Int(domain)] {
      if learnsLocally {
        learnARP(domain: domain, member: member, source: source, rest: rest, restLength: restLength, now: now)
      }
      if destinationKey & 0x0100_0000_0000 != 0
        && answerARP(state, domain: domain, member: member, rest: rest, restLength: restLength)
      {
        return
      }
    }
    if destinationKey & 0x0100_0000_0000 == 0 {
      var slot = 0
      let entry = fdb.lookup(destinationKey, slot: &slot)
      if entry.isPresent && fdb.isCurrent(entry, bridgeDomain: domain) {
        switch entry.kindBits {
        case FDBTargetKind.port.rawValue:
          if entry.index == member {
            drop(.sameInterface)
          } else {
            emitLocal(state, member: entry.index, macs: frame, rest: rest, restLength: restLength)
          }
        case FDBTargetKind.vtep.rawValue:
          var out = UnderlayOutput(state: state, ring: rings[Int(state.underlayInterface)])
          if restLength > out.maxRestLength && out.overLimitReason(restLength: restLength) == .mtuExceeded {
            answerTooBig(
              state, member: member, macs: frame, rest: rest, restLength: restLength,
              innerMTU: Self.innerIPMTU(out), now: now)
          }
          encapsulate(
            &out, vtep: Int(entry.index), domain: domain, macs: frame, rest: rest, restLength: restLength,
            hash: InnerFrame.flowHash(macs: frame, rest: rest, restLength: restLength))
          flush(out)
        default:
          drop(.fdbDrop)
        }
        return
      }
    }
    var out = UnderlayOutput(state: state, ring: rings[Int(state.underlayInterface)])
    flood(
      state, &out, domain: domain, ingressMember: member, fromLocal: true, macs: frame, rest: rest,
      restLength: restLength)
    flush(out)
  }
}
