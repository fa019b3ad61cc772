/// Joins consecutive VXLAN datagrams to one VTEP, as the pipeline commits them to the
/// underlay ring, into one UDP GSO frame (`VIRTIO_NET_HDR_GSO_UDP_L4`), so that the
/// kernel takes a run of datagrams in one `tpacket_snd` step (one skb, one trip through
/// the device layer) and cuts it into wire-sized datagrams itself, after the packet
/// socket, instead of once per datagram. The point is a VM's TSO super-frame: segmented
/// by the switch (`SuperFrame`), its segments go to one VTEP with one outer header.
///
/// The frame is the first datagram's outer Ethernet, IP and UDP header once, then each
/// datagram's UDP payload (its VXLAN header and inner frame) back to back: all of the
/// first's size (the gso size) but possibly the last. Datagrams join a run when they
/// follow each other in the ring and carry the same outer header but for the fields the
/// kernel's segmentation sets per datagram (IP total or payload length, IPv4 header
/// checksum, UDP length and checksum); a shorter datagram ends the run. A run never
/// grows past the slot, 64 KiB of IP length or `maxSegments` datagrams. The IP and UDP
/// lengths are the whole frame's and the UDP checksum field holds the pseudo-header sum
/// (`NEEDS_CSUM`, CHECKSUM_PARTIAL as the kernel's UDP GSO builds it): per datagram,
/// `__udp_gso_segment` replaces the UDP length and adjusts that sum, `inet_gso_segment`
/// sets the IPv4 total length, an identification counting up from the first's and the
/// header checksum, and the UDP checksum is finished by the device or in software.
/// Inner checksums are complete already (the switch finished them). A run of one
/// datagram leaves exactly as the pipeline wrote it, behind a plain header.
///
/// The run is built in the ring slot of its first datagram, which is claimed but not
/// handed to the kernel until the run ends: at the latest when the pipeline finishes
/// the batch (`Pipeline.flushSegmenter`). The pipeline's per-frame work and counters
/// are unchanged: each datagram is encapsulated and counted as it would leave alone.
///
/// One value per (worker, underlay ring), owned by the worker's pipeline; not
/// thread-safe.
public struct UnderlaySegmenter {
  /// Whether runs are built at all; false when the daemon was told not to or the
  /// kernel refused the `virtio_net_hdr`: every frame then leaves behind a plain header
  /// (a slot that held a GSO frame keeps its header until written again).
  public var merging = true
  /// The slot of the run being built, nil when none is.
  var slot: UnsafeMutableRawPointer? = nil
  /// The run's frame length so far, datagram count, outer UDP header offset, family,
  /// UDP payload bytes per datagram (the gso size) and largest frame length.
  var length = 0
  var segments = 0
  var transportOffset = 0
  var isIPv6 = false
  var segmentSize = 0
  var limit = 0
  /// Where `TxRing.stagePayload` had the UDP payload of the datagram being encapsulated
  /// written: at the run's end (its headers in the reserved slot); nil when the datagram
  /// is in one piece in the reserved slot.
  var staged: UnsafeMutableRawPointer? = nil

  /// GSO frames handed to the kernel (runs of two or more datagrams) and the datagrams
  /// they carried, since the pipeline last took them into its counters.
  var frames = 0
  var datagrams = 0
  /// Datagrams joined where their payload was written, without a copy (`stagePayload`).
  var joinedInPlace = 0

  /// Datagrams per GSO frame at most: the kernel refuses a UDP GSO frame from a packet
  /// socket with more than `UDP_MAX_SEGMENTS` (64 before Linux 6.10, 128 since).
  public static let maxSegments = 64

  /// Whether datagrams' payloads are written in the run itself (`TxRing.stagePayload`).
  public var inPlace = true
  /// Whether the ring's datagrams carry a UDP checksum (IPv6, or IPv4 with
  /// `udp_checksum`); set by the pipeline every batch. A datagram staged in the run is
  /// encapsulated without it (a joined datagram's header is dropped, and the kernel
  /// finishes the GSO frame's); `commitSegmenting` sums it for one that leaves the run.
  var udpChecksums = false
  /// Segments of VM super-frames joined for the underlay's tunnel tap instead
  /// (`TunnelRun`; inactive without a tap).
  public var tunnel = TunnelRun()

  public init(merging: Bool = true, inPlace: Bool = true) {
    self.merging = merging
    self.inPlace = inPlace
  }

  var isOpen: Bool { slot != nil }
}

/// Where an encapsulated frame's outer UDP header is, once it is known to be a VXLAN
/// datagram the segmenter may take: untagged IPv4 without options or fragmentation, or
/// IPv6 without extension headers, carrying UDP, with IP and UDP lengths that fill the
/// frame exactly (what `Pipeline.writeEncapsulation` writes).
struct OuterDatagram {
  let transportOffset: Int
  let isIPv6: Bool
  /// UDP payload bytes: the VXLAN header and the inner frame.
  let payloadLength: Int

  @inline(__always)
  init?(frame: UnsafeRawPointer, length: Int) {
    let etherType = frame.be16(EthernetLayout.etherTypeOffset)
    let ip = frame + EthernetLayout.headerLength
    if etherType == EtherType.ipv4 {
      let transport = EthernetLayout.headerLength &+ IPv4Layout.minimumHeaderLength
      guard length >= transport &+ UDPLayout.headerLength, ip.u8(0) == IPv4Layout.versionWithoutOptions,
        ip.u8(IPv4Layout.protocolOffset) == IPProtocol.udp,
        ip.be16(IPv4Layout.fragmentOffset) & IPv4Layout.fragmentMask == 0,
        Int(ip.be16(IPv4Layout.totalLengthOffset)) == length &- EthernetLayout.headerLength
      else { return nil }
      transportOffset = transport
      isIPv6 = false
    } else if etherType == EtherType.ipv6 {
      let transport = EthernetLayout.headerLength &+ IPv6Layout.headerLength
      guard length >= transport &+ UDPLayout.headerLength, ip.u8(0) &>> 4 == 6,
        ip.u8(IPv6Layout.nextHeaderOffset) == IPProtocol.udp,
        Int(ip.be16(IPv6Layout.payloadLengthOffset)) == length &- transport
      else { return nil }
      transportOffset = transport
      isIPv6 = true
    } else {
      return nil
    }
    guard Int(frame.be16(transportOffset &+ UDPLayout.lengthOffset)) == length &- transportOffset else {
      return nil
    }
    payloadLength = length &- transportOffset &- UDPLayout.headerLength
  }

  /// The longest frame whose IP length field can describe it.
  var ipLimit: Int {
    isIPv6
      ? transportOffset &+ Int(UInt16.max) : EthernetLayout.headerLength &+ Int(UInt16.max)
  }
}

extension TxRing {
  /// `commit` for the underlay ring: through its segmenter when it has one (a packet
  /// socket with `PACKET_VNET_HDR`), else as it is.
  @inline(__always)
  public mutating func commitEncapsulated(length: Int) {
    if let segmenter {
      commitSegmenting(length: length, segmenter)
      return
    }
    commitUncoalesced(length: length)
  }

  /// Where an encapsulated datagram of `length` bytes, its headers at the reserved
  /// slot `output`, has its UDP payload written: at the end of the open run when the
  /// payload would fit there (and the headers are the run's kind: the payload at
  /// `offset`), so that joining the run costs no copy of it; else `output + offset`, the
  /// datagram in one piece. `commitSegmenting` moves a staged payload to the slot if the
  /// datagram does not continue the run after all.
  @inline(__always)
  mutating func stagePayload(output: UnsafeMutableRawPointer, offset: Int, length: Int)
    -> UnsafeMutableRawPointer
  {
    let state = segmenter.unsafelyUnwrapped
    guard state.pointee.inPlace, let open = state.pointee.slot,
      offset == state.pointee.transportOffset &+ UDPLayout.headerLength,
      state.pointee.length &+ (length &- offset) <= state.pointee.limit
    else { return output + offset }
    let position = open + dataOffset + state.pointee.length
    state.pointee.staged = position
    return position
  }

  /// The frame written at the reserved slot (`length` bytes) joins the run being built,
  /// starts one, or is handed over behind a plain `virtio_net_hdr` (`VirtioNetHeader.plain`;
  /// after the run, if one was being built). A frame whose payload was staged in the run (`stagePayload`) that
  /// continues it is joined where it is; one that does not has its payload moved to the
  /// reserved slot, after its headers.
  @inline(never)
  mutating func commitSegmenting(length: Int, _ state: UnsafeMutablePointer<UnderlaySegmenter>) {
    let frame = UnsafeRawPointer(next + dataOffset)
    if let staged = state.pointee.staged {
      // The headers are at `frame`, the payload at the run's end.
      state.pointee.staged = nil
      let open = state.pointee.slot.unsafelyUnwrapped + dataOffset
      let offset = state.pointee.transportOffset &+ UDPLayout.headerLength
      if Self.continuesRun(state.pointee, UnsafeRawPointer(open), frame, length) {
        state.pointee.joinedInPlace &+= 1
        extendRun(state, payload: length &- offset)
        return
      }
      (next + dataOffset + offset).copyMemory(from: staged, byteCount: length &- offset)
      if state.pointee.udpChecksums {
        Self.finishUDPChecksum(
          next + dataOffset, length: length, udp: state.pointee.transportOffset, isIPv6: state.pointee.isIPv6)
      }
    }
    if let open = state.pointee.slot {
      if Self.continuesRun(state.pointee, UnsafeRawPointer(open + dataOffset), frame, length) {
        appendDatagram(state, open + dataOffset, frame, length)
        return
      }
      publishSegmented(state)
    }
    if state.pointee.merging, let datagram = OuterDatagram(frame: frame, length: length) {
      let limit = min(maxFrameLength, datagram.ipLimit)
      if length &+ datagram.payloadLength <= limit {
        state.pointee.slot = next
        state.pointee.length = length
        state.pointee.segments = 1
        state.pointee.transportOffset = datagram.transportOffset
        state.pointee.isIPv6 = datagram.isIPv6
        state.pointee.segmentSize = datagram.payloadLength
        state.pointee.limit = limit
        claimSlot()
        return
      }
    }
    VirtioNetHeader.plain(at: next + (dataOffset &- framePrefix), frameLength: length)
    commitUncoalesced(length: length)
  }

  /// Sums the UDP checksum of the datagram at `frame` (`length` bytes, UDP header at
  /// `udp`: IPv6, or IPv4 without options), encapsulated without it.
  @inline(never)
  static func finishUDPChecksum(_ frame: UnsafeMutableRawPointer, length: Int, udp: Int, isIPv6: Bool) {
    let udpLength = length &- udp
    frame.setRaw16(udp &+ UDPLayout.checksumOffset, 0)
    // The pseudo-header's addresses lie just before the UDP header, 32 or 8 bytes.
    let addresses = isIPv6 ? 32 : 8
    frame.setRaw16(
      udp &+ UDPLayout.checksumOffset,
      Pipeline.udpChecksumField(
        frame + (udp &- addresses), count: addresses &+ udpLength,
        nativePseudoHeader: Pipeline.udpPseudoHeaderRest(udpLength: udpLength)))
  }

  /// Whether the frame at `frame` (`length` bytes) continues the run whose first frame
  /// is at `open`: the same outer header but for lengths and checksums (so the same
  /// family and offsets, which the run's first frame was checked for), a UDP length
  /// that fills the frame, and a payload no longer than the gso size that fits. The UDP
  /// ports (the flow) first: most frames that do not continue a run belong to another
  /// flow.
  ///
  /// `frame`'s headers were stored a moment ago by `Pipeline.writeEncapsulation`, in
  /// 16-byte moves then 2- and 4-byte fields, with the payload's copy in between. A load
  /// that lies within the last store to its bytes is served from the store buffer; one
  /// that spans two stores waits until every store before it has reached the cache,
  /// the payload's included (measured: a 4-byte load of both UDP ports took 75% of this
  /// function's samples). Hence the loads below, each within one of those stores.
  @inline(__always)
  static func continuesRun(
    _ state: UnderlaySegmenter, _ open: UnsafeRawPointer, _ frame: UnsafeRawPointer, _ length: Int
  ) -> Bool {
    let udp = state.transportOffset
    let payload = length &- udp &- UDPLayout.headerLength
    guard payload > 0, payload <= state.segmentSize, state.length &+ payload <= state.limit,
      state.segments < UnderlaySegmenter.maxSegments,
      frame.raw16(udp) == open.raw16(udp),
      frame.raw16(udp &+ UDPLayout.destinationPortOffset)
        == open.raw16(udp &+ UDPLayout.destinationPortOffset),
      Int(frame.be16(udp &+ UDPLayout.lengthOffset)) == length &- udp
    else { return false }
    if state.isIPv6 { return ipv6OuterHeaderDifference(frame, open) == 0 }
    return ipv4OuterHeaderDifference(frame, open) == 0
  }

  /// Non-zero when two frames' outer Ethernet and IPv6 headers differ but for the
  /// payload length: compares MACs, EtherType (bytes 0-13); version, traffic class, flow
  /// label (14-17); next header, hop limit and addresses (20-53). In words that each lie
  /// within one of the encapsulation's stores (see `continuesRun`).
  @inline(__always)
  static func ipv6OuterHeaderDifference(_ frame: UnsafeRawPointer, _ open: UnsafeRawPointer) -> UInt64 {
    (frame.raw64(0) ^ open.raw64(0)) | UInt64(frame.raw32(8) ^ open.raw32(8))
      | UInt64(frame.raw16(12) ^ open.raw16(12)) | UInt64(frame.raw32(14) ^ open.raw32(14))
      | UInt64(frame.raw16(20) ^ open.raw16(20)) | (frame.raw64(22) ^ open.raw64(22))
      | UInt64(frame.raw16(30) ^ open.raw16(30)) | (frame.raw64(32) ^ open.raw64(32))
      | UInt64(frame.raw32(40) ^ open.raw32(40)) | UInt64(frame.raw16(44) ^ open.raw16(44))
      | (frame.raw64(46) ^ open.raw64(46))
  }

  /// Non-zero when two frames' outer Ethernet and IPv4 headers (without options) differ
  /// but for what segmentation sets per datagram: compares MACs, EtherType, version, TOS
  /// (bytes 0-15); identification, fragment field, TTL, protocol (18-23); addresses
  /// (26-33); not the total length nor the header checksum. In words that each lie
  /// within one of the encapsulation's stores (see `continuesRun`), not `SIMD16 ==`,
  /// which the standard library compares lane by lane.
  @inline(__always)
  static func ipv4OuterHeaderDifference(_ frame: UnsafeRawPointer, _ open: UnsafeRawPointer) -> UInt64 {
    (frame.raw64(0) ^ open.raw64(0)) | (frame.raw64(8) ^ open.raw64(8))
      | UInt64(frame.raw32(18) ^ open.raw32(18)) | UInt64(frame.raw16(22) ^ open.raw16(22))
      | (frame.raw64(26) ^ open.raw64(26))
  }

  /// Appends the datagram's UDP payload to the run; hands the run over when the datagram
  /// ends it (shorter than the gso size) or no further full datagram would fit.
  @inline(__always)
  mutating func appendDatagram(
    _ state: UnsafeMutablePointer<UnderlaySegmenter>, _ open: UnsafeMutableRawPointer,
    _ frame: UnsafeRawPointer, _ length: Int
  ) {
    let start = state.pointee.transportOffset &+ UDPLayout.headerLength
    let payload = length &- start
    (open + state.pointee.length).copyMemory(from: frame + start, byteCount: payload)
    extendRun(state, payload: payload)
  }

  /// Counts a datagram's payload, now at the run's end, into the run; hands the run
  /// over when the datagram ends it (shorter than the gso size) or no further full
  /// datagram would fit.
  @inline(__always)
  mutating func extendRun(_ state: UnsafeMutablePointer<UnderlaySegmenter>, payload: Int) {
    state.pointee.length &+= payload
    state.pointee.segments &+= 1
    if payload < state.pointee.segmentSize
      || state.pointee.length &+ state.pointee.segmentSize > state.pointee.limit
      || state.pointee.segments == UnderlaySegmenter.maxSegments
    {
      publishSegmented(state)
    }
  }

  /// Hands over the run being built, if any: for two or more datagrams the whole
  /// frame's IP and UDP lengths, the IPv4 header checksum, the UDP checksum's
  /// pseudo-header part and the `virtio_net_hdr`; a run of one as it was written.
  mutating func publishSegmented(_ state: UnsafeMutablePointer<UnderlaySegmenter>) {
    guard let slot = state.pointee.slot else { return }
    state.pointee.slot = nil
    let frame = slot + dataOffset
    let length = state.pointee.length
    let header = slot + (dataOffset &- framePrefix)
    if state.pointee.segments < 2 {
      VirtioNetHeader.plain(at: header, frameLength: length)
    } else {
      let run = state.pointee
      UDPSegmentationFrame.finish(
        frame: frame, length: length, transportOffset: run.transportOffset, isIPv6: run.isIPv6,
        segmentSize: run.segmentSize
      ).store(to: header)
      state.pointee.frames &+= 1
      state.pointee.datagrams &+= run.segments
    }
    (slot + lengthOffset).storeBytes(of: UInt32(truncatingIfNeeded: length &+ framePrefix), as: UInt32.self)
    status(slot).pointee.store(Self.sendRequest, ordering: .releasing)
  }
}

/// The header fields of a UDP GSO frame, as the kernel expects them from a packet
/// socket: written once per run, and by tests that build the frame independently.
public enum UDPSegmentationFrame {
  /// Sets the IP length (IPv4 total length and header checksum, or IPv6 payload
  /// length), the UDP length and the UDP checksum's pseudo-header sum for the whole
  /// frame at `frame` (`length` bytes, UDP header at `transportOffset`), and returns
  /// its `virtio_net_hdr`: `NEEDS_CSUM` at the UDP checksum, gso type UDP_L4, gso size
  /// `segmentSize` UDP payload bytes.
  public static func finish(
    frame: UnsafeMutableRawPointer, length: Int, transportOffset: Int, isIPv6: Bool, segmentSize: Int
  ) -> VirtioNetHeader {
    let ip = frame + EthernetLayout.headerLength
    let udpLength = length &- transportOffset
    let pseudo =
      isIPv6
      ? IPLengthFixup.ipv6(ip, payloadLength: udpLength)
      : IPLengthFixup.ipv4(ip, totalLength: length &- EthernetLayout.headerLength)
    let udp = frame + transportOffset
    udp.setBE16(UDPLayout.lengthOffset, UInt16(truncatingIfNeeded: udpLength))
    // CHECKSUM_PARTIAL convention: the field holds the folded pseudo-header sum (with
    // the whole frame's UDP length), not complemented; the kernel adjusts it for each
    // datagram's length and whoever finishes the checksum adds the rest.
    udp.setBE16(
      UDPLayout.checksumOffset,
      UInt16(truncatingIfNeeded: OnesComplement.fold16(pseudo &+ UInt64(IPProtocol.udp) &+ UInt64(udpLength)))
    )
    return VirtioNetHeader(
      flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.SegmentationType.udp.rawValue,
      headerLength: UInt16(truncatingIfNeeded: transportOffset &+ UDPLayout.headerLength),
      gsoSize: UInt16(truncatingIfNeeded: segmentSize),
      checksumStart: UInt16(truncatingIfNeeded: transportOffset),
      checksumOffset: UInt16(truncatingIfNeeded: UDPLayout.checksumOffset))
  }
}
