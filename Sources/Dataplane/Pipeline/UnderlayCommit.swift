/// How the access loop hands an encapsulated frame to the underlay ring: as it is, or
/// behind a plain `virtio_net_hdr` (`VirtioNetHeader.plain`), or through the ring's UDP
/// GSO segmenter (`UnderlaySegmenter`). The loop is generic over it, chosen per batch, so that no
/// frame pays a test for it.
protocol UnderlayCommit {
  /// Where the UDP payload of a datagram of `length` bytes whose headers go to the
  /// reserved slot at `output` is written: `output + offset` (the datagram in one piece),
  /// or the end of the segmenter's open run (`TxRing.stagePayload`).
  static func payload(
    _ tx: inout TxRing, output: UnsafeMutableRawPointer, offset: Int, length: Int
  ) -> UnsafeMutableRawPointer
  static func commit(_ tx: inout TxRing, length: Int)
  /// Whether the access loop copies a deferred segment's payload straight to where
  /// `payload` says (`DeferredPayload`): only when that is a GSO frame under
  /// construction is it worth a test per frame; other batches are made ordinary first.
  static var takesDeferredPayloads: Bool { get }
  /// Puts a deferred segment (`frame`, `length` bytes) at `destination`, where the
  /// encapsulation wants the inner frame: whole, its payload copied out of the
  /// super-frame and its checksum finished (`DeferredPayload.copyInner`), or its headers
  /// alone when the payload goes to the kernel where it is (`TunnelTapUnderlayCommit`).
  /// Returns whether the inner frame is whole there (else nothing sums the outer UDP
  /// checksum over it: the commit does, if the segment leaves through the ring).
  static func writeDeferred(
    _ tx: inout TxRing, _ frame: UnsafeRawPointer, length: Int, to destination: UnsafeMutableRawPointer
  ) -> Bool
  /// Whether the access loop encapsulates a frame where it was received when the ring's
  /// AF_XDP port shares the receiving port's UMEM (`InPlaceTransmit`).
  static var sendsInPlace: Bool { get }
}

extension UnderlayCommit {
  @inline(__always) static var takesDeferredPayloads: Bool { false }
  @inline(__always) static var sendsInPlace: Bool { false }

  @inline(__always)
  static func writeDeferred(
    _ tx: inout TxRing, _ frame: UnsafeRawPointer, length: Int, to destination: UnsafeMutableRawPointer
  ) -> Bool {
    DeferredPayload.copyInner(frame, length: length, to: destination)
    return true
  }

  @inline(__always)
  static func payload(
    _ tx: inout TxRing, output: UnsafeMutableRawPointer, offset: Int, length: Int
  ) -> UnsafeMutableRawPointer { output + offset }
}

/// An underlay ring without a segmenter (no `virtio_net_hdr` there).
enum PlainUnderlayCommit: UnderlayCommit {
  @inline(__always)
  static func commit(_ tx: inout TxRing, length: Int) { tx.commitUncoalesced(length: length) }
}

/// An underlay ring of an AF_XDP port that sends received frames where they are
/// (`TxRing.inPlace`; no segmenter there): a frame received into the same UMEM gets its
/// outer header written in front of it and leaves from its chunk; any other is copied.
enum InPlaceUnderlayCommit: UnderlayCommit {
  @inline(__always) static var sendsInPlace: Bool { true }

  @inline(__always)
  static func commit(_ tx: inout TxRing, length: Int) { tx.commitUncoalesced(length: length) }
}

/// An underlay ring with a segmenter, in a batch that does not join datagrams
/// (`UnderlaySegmentingPolicy`): each frame behind a plain `virtio_net_hdr`, written
/// every time (its slot may have held a GSO frame's header).
enum PlainHeaderUnderlayCommit: UnderlayCommit {
  @inline(__always)
  static func commit(_ tx: inout TxRing, length: Int) {
    VirtioNetHeader.plain(at: tx.next + (tx.dataOffset &- tx.framePrefix), frameLength: length)
    tx.commitUncoalesced(length: length)
  }
}

/// An underlay ring with a segmenter, in a batch that joins datagrams: every frame goes
/// through it.
enum SegmentingUnderlayCommit: UnderlayCommit {
  @inline(__always) static var takesDeferredPayloads: Bool { true }

  @inline(__always)
  static func payload(
    _ tx: inout TxRing, output: UnsafeMutableRawPointer, offset: Int, length: Int
  ) -> UnsafeMutableRawPointer {
    tx.stagePayload(output: output, offset: offset, length: length)
  }

  @inline(__always)
  static func commit(_ tx: inout TxRing, length: Int) {
    tx.commitSegmenting(length: length, tx.segmenter.unsafelyUnwrapped)
  }
}

/// An underlay ring whose segmenter has a tunnel tap (`TunnelRun`), in a batch that joins
/// datagrams: a deferred segment of a TCP super-frame is encapsulated as its headers
/// alone, and its payload goes to the tap from where the access port received it; every
/// other frame through the segmenter as usual (no datagram staged in a UDP GSO run, so
/// that every frame's bytes are in its slot when the commit decides).
enum TunnelTapUnderlayCommit: UnderlayCommit {
  @inline(__always) static var takesDeferredPayloads: Bool { true }

  @inline(__always)
  static func writeDeferred(
    _ tx: inout TxRing, _ frame: UnsafeRawPointer, length: Int, to destination: UnsafeMutableRawPointer
  ) -> Bool {
    guard let segment = DeferredPayload.tcpSegment(frame) else {
      DeferredPayload.copyInner(frame, length: length, to: destination)
      return true
    }
    destination.copyFrameBytes(from: frame, count: segment.headerLength)
    let state = tx.segmenter.unsafelyUnwrapped
    state.pointee.tunnel.pendingPayload = segment.payload
    state.pointee.tunnel.pendingLength = length &- segment.headerLength
    return false
  }

  @inline(__always)
  static func commit(_ tx: inout TxRing, length: Int) {
    tx.commitTunnelling(length: length, tx.segmenter.unsafelyUnwrapped)
  }
}
