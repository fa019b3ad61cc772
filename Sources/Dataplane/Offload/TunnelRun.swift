import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Consecutive segments of one VM super-frame bound for one VTEP, joined again into one
/// UDP-tunnel GSO frame for the underlay's tunnel tap (`RedirectingTap`)
/// (`TunnelSegmentationFrame`): the pipeline still switches every segment (learning,
/// lookup, counters, as if each left alone), but writes only its headers; the segments'
/// payloads stay where the access port received them, one contiguous stretch of the
/// super-frame (`DeferredPayload`), and go to the tap in the same write as the run's
/// headers, without a copy in user space.
///
/// A segment joins the run when its headers are as long as the run's, its outer and
/// VXLAN headers are the run's but for lengths and checksums, its payload starts where
/// the run's ends (so it is the next segment of the same super-frame: same inner flow),
/// the run's segments so far were all full (the gso size), and the frame stays within
/// the outer IP length. The run goes to the tap when a segment does not join it, before
/// any frame that goes through the ring (after what the ring holds has been sent, so
/// nothing overtakes), and at the end of the batch (`Pipeline.flushSegmenter`), while the
/// payload's receive block is still the port's.
///
/// Part of the underlay ring's `UnderlaySegmenter`: one per (worker, underlay ring), not
/// thread-safe.
public struct TunnelRun {
  /// The tap's descriptor (-1: none, every segment through the ring) and the underlay
  /// packet socket's, to send what the ring holds before a write to the tap.
  public var tap: Int32 = -1
  public var ringSocket: Int32 = -1
  /// The tap's header, then the run's headers (its first segment's, as encapsulated).
  var scratch: UnsafeMutableRawPointer? = nil
  static let scratchBytes = 512
  var layout = TunnelSegmentationFrame.Layout(
    outerTransport: 0, innerNetwork: 0, innerTransport: 0, innerIsIPv6: false, headerLength: 0)
  /// The run's payload (nil: no run open), its length, segments and gso size.
  var payload: UnsafeRawPointer? = nil
  var payloadLength = 0
  var segments = 0
  var segmentSize = 0
  /// Whether every segment so far was `segmentSize` long (a shorter one ends the run).
  var full = true
  /// PSH and FIN of the run's last segment, for the frame's TCP header.
  var finalFlags: UInt8 = 0
  /// The segment being encapsulated, when its payload was left in the super-frame:
  /// where, and how long (set by `TunnelTapUnderlayCommit.writeDeferred`).
  var pendingPayload: UnsafeRawPointer? = nil
  var pendingLength = 0

  /// Frames written to the tap and the segments they carried, since the pipeline last
  /// took them into its counters; writes the kernel refused (the segments are lost, as a
  /// full ring loses them) and the last refusal's errno.
  var frames = 0
  var datagrams = 0
  var refusals = 0
  public internal(set) var lastRefusal: Int32 = 0

  public init() {}

  /// Whether segments are joined for the tap at all.
  public var isActive: Bool { tap >= 0 && scratch != nil }

  /// TCP flags a segment hands to the run's last position.
  static let finalFlagMask: UInt8 = TCPLayout.psh | 0x01
  /// Outer frame bytes at most: an outer IPv4 total length of 65535.
  static let frameLimit = EthernetLayout.headerLength &+ Int(UInt16.max)
}

extension TxRing {
  /// `commit` for an underlay ring whose segmenter has a tunnel tap: a segment whose
  /// payload was left in its super-frame joins or starts the tunnel run (its slot is not
  /// used: the next frame is written there); any other frame goes through the segmenter
  /// as usual, after the tunnel run.
  @inline(never)
  mutating func commitTunnelling(length: Int, _ state: UnsafeMutablePointer<UnderlaySegmenter>) {
    guard let payload = state.pointee.tunnel.pendingPayload else {
      publishTunnelRun(state)
      commitSegmenting(length: length, state)
      return
    }
    state.pointee.tunnel.pendingPayload = nil
    let payloadLength = state.pointee.tunnel.pendingLength
    let frame = UnsafeRawPointer(next + dataOffset)
    let headerLength = length &- payloadLength
    if state.pointee.tunnel.payload != nil {
      if Self.continuesTunnelRun(state.pointee.tunnel, frame, headerLength, payload, payloadLength) {
        state.pointee.tunnel.payloadLength &+= payloadLength
        state.pointee.tunnel.segments &+= 1
        state.pointee.tunnel.full = payloadLength == state.pointee.tunnel.segmentSize
        state.pointee.tunnel.finalFlags =
          frame.u8(state.pointee.tunnel.layout.innerTransport &+ TCPLayout.flagsOffset)
          & TunnelRun.finalFlagMask
        return
      }
      publishTunnelRun(state)
    }
    // A new run: the headers are copied out of the slot, which stays free.
    let scratch = state.pointee.tunnel.scratch.unsafelyUnwrapped
    guard
      let layout = Self.tunnelLayout(
        frame, headerLength: headerLength, length: length, outerChecksum: state.pointee.udpChecksums),
      headerLength &+ TunnelSegmentationFrame.headerLength <= TunnelRun.scratchBytes
    else {
      // Not a frame the tap takes after all: its payload joins its headers in the slot.
      Self.placeTunnelPayload(
        next + dataOffset, length: length, headerLength: headerLength, payload,
        udpChecksum: state.pointee.udpChecksums)
      commitSegmenting(length: length, state)
      return
    }
    (scratch + TunnelSegmentationFrame.headerLength).copyMemory(from: frame, byteCount: headerLength)
    state.pointee.tunnel.layout = layout
    state.pointee.tunnel.payload = payload
    state.pointee.tunnel.payloadLength = payloadLength
    state.pointee.tunnel.segments = 1
    state.pointee.tunnel.segmentSize = payloadLength
    state.pointee.tunnel.full = true
    state.pointee.tunnel.finalFlags = 0
  }

  /// Where the headers of an encapsulated segment are (`headerLength` bytes at `frame`,
  /// of a segment `length` bytes long whose payload is elsewhere): an outer header as
  /// `OuterDatagram` reads it (untagged, IPv4 without options or IPv6, UDP), the VXLAN
  /// header, an untagged inner Ethernet header and IPv4 (any header length) or IPv6
  /// carrying TCP. Nil for anything else.
  static func tunnelLayout(_ frame: UnsafeRawPointer, headerLength: Int, length: Int, outerChecksum: Bool)
    -> TunnelSegmentationFrame.Layout?
  {
    guard let outer = OuterDatagram(frame: frame, length: length) else { return nil }
    let outerTransport = outer.transportOffset
    let outerIsIPv6 = outer.isIPv6
    let innerEthernet = outerTransport &+ UDPLayout.headerLength &+ VXLANLayout.headerLength
    let innerNetwork = innerEthernet &+ EthernetLayout.headerLength
    guard headerLength >= innerNetwork &+ IPv4Layout.minimumHeaderLength &+ TCPLayout.minimumHeaderLength
    else { return nil }
    let innerTransport: Int
    let innerIsIPv6: Bool
    switch frame.be16(innerEthernet &+ EthernetLayout.etherTypeOffset) {
    case EtherType.ipv4:
      let ipHeaderLength = Int(frame.u8(innerNetwork) & 0x0F) &<< 2
      guard frame.u8(innerNetwork) &>> 4 == 4, ipHeaderLength >= IPv4Layout.minimumHeaderLength,
        frame.u8(innerNetwork &+ IPv4Layout.protocolOffset) == IPProtocol.tcp
      else { return nil }
      innerTransport = innerNetwork &+ ipHeaderLength
      innerIsIPv6 = false
    case EtherType.ipv6:
      guard headerLength >= innerNetwork &+ IPv6Layout.headerLength, frame.u8(innerNetwork) &>> 4 == 6,
        frame.u8(innerNetwork &+ IPv6Layout.nextHeaderOffset) == IPProtocol.tcp
      else { return nil }
      innerTransport = innerNetwork &+ IPv6Layout.headerLength
      innerIsIPv6 = true
    default:
      return nil
    }
    guard headerLength >= innerTransport &+ TCPLayout.minimumHeaderLength,
      innerTransport &+ Int(frame.u8(innerTransport &+ TCPLayout.dataOffsetOffset) &>> 4) &* 4 == headerLength
    else { return nil }
    return TunnelSegmentationFrame.Layout(
      outerTransport: outerTransport, outerIsIPv6: outerIsIPv6, outerChecksum: outerChecksum || outerIsIPv6,
      innerNetwork: innerNetwork, innerTransport: innerTransport, innerIsIPv6: innerIsIPv6,
      headerLength: headerLength)
  }

  /// Whether the segment at `frame` continues the tunnel run (see `TunnelRun`). The
  /// outer header is compared with the run's copy as the UDP GSO segmenter compares it
  /// (`ipv4OuterHeaderDifference`, `ipv6OuterHeaderDifference`), and the UDP ports and
  /// the VXLAN header too. Not the lengths nor the checksums.
  @inline(__always)
  static func continuesTunnelRun(
    _ run: TunnelRun, _ frame: UnsafeRawPointer, _ headerLength: Int, _ payload: UnsafeRawPointer,
    _ payloadLength: Int
  ) -> Bool {
    guard let start = run.payload, run.full, payload == start + run.payloadLength,
      headerLength == run.layout.headerLength, payloadLength > 0, payloadLength <= run.segmentSize,
      headerLength &+ run.payloadLength &+ payloadLength <= TunnelRun.frameLimit
    else { return false }
    let open = UnsafeRawPointer(run.scratch.unsafelyUnwrapped + TunnelSegmentationFrame.headerLength)
    let udp = run.layout.outerTransport
    let vxlan = udp &+ UDPLayout.headerLength
    let outer =
      run.layout.outerIsIPv6 ? ipv6OuterHeaderDifference(frame, open) : ipv4OuterHeaderDifference(frame, open)
    let differs =
      outer | UInt64(frame.raw32(udp) ^ open.raw32(udp)) | (frame.raw64(vxlan) ^ open.raw64(vxlan))
    return differs == 0
  }

  /// Copies a segment's payload after its headers in the slot and finishes its TCP
  /// checksum there, then its outer UDP checksum when `udpChecksum`, for a segment that
  /// leaves through the ring after all (its encapsulation left both: the payload was
  /// not there).
  static func placeTunnelPayload(
    _ frame: UnsafeMutableRawPointer, length: Int, headerLength: Int, _ payload: UnsafeRawPointer,
    udpChecksum: Bool
  ) {
    (frame + headerLength).copyMemory(from: payload, byteCount: length &- headerLength)
    // The switch encapsulated it: its outer header always reads.
    guard let outer = OuterDatagram(frame: frame, length: length) else { return }
    let inner = frame + (outer.transportOffset &+ UDPLayout.headerLength &+ VXLANLayout.headerLength)
    ChecksumCompletion.complete(frame: inner, length: length &- (inner - frame))
    if udpChecksum {
      finishUDPChecksum(frame, length: length, udp: outer.transportOffset, isIPv6: outer.isIPv6)
    }
  }

  /// Writes the tunnel run, if one is open, to the tap: after the segmenter's open UDP
  /// GSO run and everything the ring holds have been handed to the kernel, so that no
  /// datagram of a flow overtakes another.
  mutating func publishTunnelRun(_ state: UnsafeMutablePointer<UnderlaySegmenter>) {
    guard let payload = state.pointee.tunnel.payload else { return }
    state.pointee.tunnel.payload = nil
    publishSegmented(state)
    if pending != 0 {
      let result = cp_packet_tx_kick(state.pointee.tunnel.ringSocket)
      if result >= 0 { pending = 0 }
    }
    let run = state.pointee.tunnel
    let scratch = run.scratch.unsafelyUnwrapped
    TunnelSegmentationFrame.finish(
      headers: scratch + TunnelSegmentationFrame.headerLength, layout: run.layout, payload: payload,
      payloadLength: run.payloadLength, segmentSize: run.segmentSize, segments: run.segments,
      finalFlags: run.finalFlags, header: scratch)
    var vectors = (
      iovec(iov_base: scratch, iov_len: TunnelSegmentationFrame.headerLength &+ run.layout.headerLength),
      iovec(iov_base: UnsafeMutableRawPointer(mutating: payload), iov_len: run.payloadLength)
    )
    let written = withUnsafePointer(to: &vectors) {
      $0.withMemoryRebound(to: iovec.self, capacity: 2) { writev(run.tap, $0, 2) }
    }
    if written < 0 {
      state.pointee.tunnel.refusals &+= 1
      state.pointee.tunnel.lastRefusal = errno
      return
    }
    state.pointee.tunnel.frames &+= 1
    state.pointee.tunnel.datagrams &+= run.segments
  }
}
