extension Pipeline {
  /// Writes a frame to a local port member: its two MACs, the member's VLAN tag if it
  /// has one, then everything after the MACs (EtherType onwards). `checksumTrusted` as
  /// `TxRing.commit` takes it.
  @inline(__always)
  func emitLocal(
    _ state: ForwardingState, member: UInt16, macs: UnsafeRawPointer, rest: UnsafeRawPointer, restLength: Int,
    checksumTrusted: Bool = false
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
      // Untagged in, untagged out: the frame is one run of bytes, sent from where it was
      // received when the ring's port shares that memory (the first copy of a flooded
      // frame; `claim` refuses the others).
      if let inPlace = ring.pointee.inPlace, let offset = inPlace.pointee.claim(macs, headroom: 0) {
        ring.pointee.commitInPlace(offset: offset, length: length)
        count(Counter.txFrames(interface))
        count(Counter.txBytes(interface), length)
        return
      }
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
    ring.pointee.commit(length: length, checksumTrusted: checksumTrusted)
    count(Counter.txFrames(interface))
    count(Counter.txBytes(interface), length)
  }

  /// `emitLocal` out of line, for loops where local delivery is the less common output:
  /// an inlined copy would tie up registers the rest of the loop needs.
  @inline(never)
  func emitLocalCopy(
    _ state: ForwardingState, member: UInt16, macs: UnsafeRawPointer, rest: UnsafeRawPointer, restLength: Int
  ) {
    emitLocal(state, member: member, macs: macs, rest: rest, restLength: restLength)
  }

  /// Encapsulates a frame to `vtep` unless the VTEP cannot be reached, the frame does not
  /// fit the underlay MTU, or the ring is full (each a counted drop). `hash` is the inner
  /// flow's `flowHash`, computed once per frame by the caller (a flooded frame is
  /// encapsulated once per VTEP).
  @inline(always)
  func encapsulate(
    _ out: inout UnderlayOutput, vtep: Int, domain: UInt16, macs: UnsafeRawPointer, rest: UnsafeRawPointer,
    restLength: Int, hash: UInt64
  ) {
    if !out.canReach(vtep) {
      drop(.noNextHop)
      return
    }
    if restLength > out.maxRestLength {
      drop(out.overLimitReason(restLength: restLength))
      return
    }
    guard let output = out.tx.reserve() else {
      drop(.txRingFull)
      return
    }
    let length = Self.writeEncapsulation(
      output, payload: output + (out.headerLength &- 8), out, vtep: vtep,
      vniField: VXLANField.vni(out.domainVNI[Int(domain)]), macs: macs, rest: rest,
      restLength: restLength,
      hash: hash, ConfiguredEncapsulation.self)
    out.tx.commitEncapsulated(length: length)
    out.frames &+= 1
    out.innerBytes &+= 12 &+ restLength
  }

  /// `encapsulate` for the flooding path, out of line.
  @inline(never)
  func encapsulateCopy(
    _ out: inout UnderlayOutput, vtep: Int, domain: UInt16, macs: UnsafeRawPointer, rest: UnsafeRawPointer,
    restLength: Int, hash: UInt64
  ) {
    encapsulate(&out, vtep: vtep, domain: domain, macs: macs, rest: rest, restLength: restLength, hash: hash)
  }

  /// Writes the VTEP's precomputed outer header and the (untagged) inner frame and
  /// patches lengths, checksum, UDP source port, VNI and, when inherited, DSCP; returns
  /// the frame's length. The outer Ethernet, IP and UDP headers go to `output`, the UDP
  /// payload (VXLAN header and inner frame) to `payload`: `output` plus
  /// `Flavor.headerLength(out) - 8` for a datagram in one piece, elsewhere when the
  /// underlay's segmenter has the payload written straight into its GSO frame
  /// (`UnderlayCommit.payload`). Without `copiesInner` the caller has put the inner
  /// frame at `payload + 8` already (`DeferredPayload.copyInner`). Without `summingUDP`
  /// the UDP checksum is left to the underlay's segmenter
  /// (`UnderlaySegmenter.udpChecksums`). The caller has checked that the VTEP can be
  /// reached and the frame fits.
  @inline(always)
  static func writeEncapsulation<Flavor: EncapsulationFlavor>(
    _ output: UnsafeMutableRawPointer, payload: UnsafeMutableRawPointer, _ out: UnderlayOutput, vtep: Int,
    vniField: UInt32,
    macs: UnsafeRawPointer,
    rest: UnsafeRawPointer, restLength: Int, hash: UInt64, copiesInner: Bool = true,
    summingUDP: Bool = true, _ flavor: Flavor.Type
  ) -> Int {
    let headerLength = Flavor.headerLength(out)
    let innerLength = 12 &+ restLength
    let header = UnsafeRawPointer(out.headers + vtep &* ForwardingState.headerSlot)
    // The headers up to the UDP payload in 16-byte moves, the last one overlapping the
    // one before (42 bytes over IPv4, 62 over IPv6), then the VXLAN header's 8 bytes.
    output.setRaw128(0, header.raw128(0))
    output.setRaw128(16, header.raw128(16))
    if Flavor.isIPv6(out) {
      output.setRaw128(32, header.raw128(32))
      output.setRaw128(46, header.raw128(46))
    } else {
      output.setRaw128(26, header.raw128(26))
    }
    payload.setRaw64(0, header.raw64(headerLength &- 8))
    if copiesInner {
      if rest == macs + 12 {
        // Untagged inner frame: MACs and the rest are one run of bytes.
        (payload + 8).copyFrameBytes(from: macs, count: innerLength)
      } else {
        payload.setRaw64(8, macs.raw64(0))
        payload.setRaw32(16, macs.raw32(8))
        (payload + 20).copyFrameBytes(from: rest, count: restLength)
      }
    }

    // Lemire's multiply-shift maps the hash onto the port range without a division.
    let spread = (hash &>> 32) &* out.sourcePortSpan
    let sourcePort = UInt16(
      truncatingIfNeeded: out.sourcePortBase &+ UInt32(truncatingIfNeeded: spread &>> 32))
    if Flavor.isIPv6(out) {
      let payloadLength = innerLength &+ 16
      if Flavor.inheritsDSCP(out) {
        let tos = UInt32(InnerFrame.tos(rest: rest, restLength: restLength))
        output.setBE32(14, 0x6000_0000 | tos &<< 20 | UInt32(truncatingIfNeeded: hash &>> 44))
      } else {
        output.setBE32(14, UnsafeRawPointer(output).be32(14) | UInt32(truncatingIfNeeded: hash &>> 44))
      }
      output.setBE16(18, UInt16(truncatingIfNeeded: payloadLength))
      output.setBE16(54, sourcePort)
      output.setBE16(58, UInt16(truncatingIfNeeded: payloadLength))
      payload.setRaw32(4, vniField)
      // A datagram staged in a GSO run: the segmenter sums it if it leaves the run.
      if !summingUDP { return headerLength &+ innerLength }
      let pseudoHeader =
        OnesComplement.nativeOrder(UInt16(truncatingIfNeeded: out.checksumBase[vtep]))
        &+ OnesComplement.nativeOrder(UInt16(truncatingIfNeeded: payloadLength))
      output.setRaw16(
        60,
        udpChecksumField(
          output + 54, count: 8, payload: payload, count: payloadLength &- 8,
          contiguous: payload == output + 62,
          nativePseudoHeader: pseudoHeader))
      return headerLength &+ innerLength
    }
    let ipLength = innerLength &+ 36
    var sum = out.checksumBase[vtep] &+ UInt32(truncatingIfNeeded: ipLength)
    if Flavor.inheritsDSCP(out) {
      let tos = InnerFrame.tos(rest: rest, restLength: restLength)
      output.setU8(15, tos)
      sum &+= UInt32(tos)
    }
    output.setBE16(16, UInt16(truncatingIfNeeded: ipLength))
    // One fold is enough: the base is folded to 16 bits and `ipLength` (bounded by the
    // MTU) plus TOS stays far below 0xFFFF, so the sum cannot carry twice.
    output.setBE16(24, ~UInt16(truncatingIfNeeded: (sum & 0xFFFF) &+ (sum &>> 16)))
    output.setBE16(34, sourcePort)
    output.setBE16(38, UInt16(truncatingIfNeeded: ipLength &- 20))
    payload.setRaw32(4, vniField)
    if Flavor.checksumsIPv4UDP(out) && summingUDP {
      // The pseudo-header's addresses lie just before the UDP header: one pass over both.
      let udpLength = ipLength &- 20
      output.setRaw16(
        40,
        udpChecksumField(
          output + 26, count: 16, payload: payload, count: udpLength &- 8, contiguous: payload == output + 42,
          nativePseudoHeader: udpPseudoHeaderRest(udpLength: udpLength)))
    }
    return headerLength &+ innerLength
  }

  /// What is left of the UDP pseudo-header once its addresses are summed with the
  /// datagram: the next header and the UDP length, in `OnesComplement.nativeSum`'s order.
  @inline(__always)
  static func udpPseudoHeaderRest(udpLength: Int) -> UInt64 {
    OnesComplement.nativeOrder(UInt16(IPProtocol.udp))
      &+ OnesComplement.nativeOrder(UInt16(truncatingIfNeeded: udpLength))
  }

  /// The UDP checksum field as stored (`setRaw16`: native order) for `count` bytes at
  /// `bytes` (the UDP header and payload, with the checksum field zero, possibly preceded by
  /// the pseudo-header's addresses) and the rest of the pseudo-header's sum in native order
  /// (`OnesComplement.nativeSum`); a checksum of 0 is sent as 0xFFFF (RFC 768). Out of
  /// line: a loop over the payload.
  @inline(never)
  static func udpChecksumField(_ bytes: UnsafeRawPointer, count: Int, nativePseudoHeader: UInt64) -> UInt16 {
    udpChecksumField(nativeSum: OnesComplement.nativeSum(bytes, count: count, initial: nativePseudoHeader))
  }

  /// `udpChecksumField` over a datagram in two pieces: `headerCount` bytes at `bytes`
  /// (a multiple of 8, so that the words of the second piece keep their positions in
  /// the sum), then `payloadCount` at `payload`; in one pass when they are `contiguous`
  /// (one loop tail and fold instead of two).
  @inline(__always)
  static func udpChecksumField(
    _ bytes: UnsafeRawPointer, count headerCount: Int, payload: UnsafeRawPointer, count payloadCount: Int,
    contiguous: Bool, nativePseudoHeader: UInt64
  ) -> UInt16 {
    if contiguous {
      return udpChecksumField(
        bytes, count: headerCount &+ payloadCount, nativePseudoHeader: nativePseudoHeader)
    }
    return udpChecksumField(
      bytes, count: headerCount, payload: payload, count: payloadCount, nativePseudoHeader: nativePseudoHeader
    )
  }

  /// The two-piece sum, out of line: only datagrams staged in a GSO frame take it.
  @inline(never)
  static func udpChecksumField(
    _ bytes: UnsafeRawPointer, count headerCount: Int, payload: UnsafeRawPointer, count payloadCount: Int,
    nativePseudoHeader: UInt64
  ) -> UInt16 {
    let headerSum = OnesComplement.nativeSum(bytes, count: headerCount, initial: nativePseudoHeader)
    return udpChecksumField(
      nativeSum: OnesComplement.nativeSum(payload, count: payloadCount, initial: headerSum))
  }

  /// The field for a sum in `OnesComplement.nativeSum`'s order: the complemented fold, 0
  /// sent as 0xFFFF.
  @inline(__always)
  static func udpChecksumField(nativeSum sum: UInt64) -> UInt16 {
    let folded = UInt16(truncatingIfNeeded: OnesComplement.fold16(sum))
    return folded == 0xFFFF ? 0xFFFF : ~folded
  }

  /// Hands the underlay ring position back and adds a batch's underlay transmissions to
  /// the counters.
  @inline(__always)
  func flush(_ out: UnderlayOutput) {
    out.finish()
    if out.frames == 0 { return }
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
      let hash = vtepStart < vtepEnd ? InnerFrame.flowHash(macs: macs, rest: rest, restLength: restLength) : 0
      for position in vtepStart..<vtepEnd {
        encapsulateCopy(
          &out, vtep: Int(state.floodVTEPs[position]), domain: domain, macs: macs, rest: rest,
          restLength: restLength, hash: hash)
        copies &+= 1
      }
    }
    if copies == 0 { drop(.noFloodTargets) }
    count(Counter.floodCopies, copies)
  }
}
