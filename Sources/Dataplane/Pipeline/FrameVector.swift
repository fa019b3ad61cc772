/// A batch of received frames (up to `capacity`), the unit the pipeline works on, like a
/// VPP vector. Frame bytes stay where the port put them (ring memory, a pcap buffer);
/// the vector holds only pointers and per-frame metadata, allocated once per worker.
///
/// Not thread-safe: owned by one worker.
public struct FrameVector: ~Copyable {
  public static let capacity = 256

  /// Frame starts (Ethernet destination MAC). Writable: checksum completion and VLAN
  /// handling may rewrite a received frame in place.
  public let frames: UnsafeMutablePointer<UnsafeMutableRawPointer>
  public let lengths: UnsafeMutablePointer<Int32>
  /// VLAN tag the kernel stripped: `vlanTagPresent | TCI`, or 0.
  public let vlanTags: UnsafeMutablePointer<UInt32>
  /// `FrameFlags` bits per frame.
  public let flags: UnsafeMutablePointer<UInt8>
  public var count = 0
  /// Interface index the frames arrived on.
  public var ingress: UInt16 = 0
  /// Seconds on the switch's clock when the batch was received (FDB age stamps).
  public var now: UInt32 = 0
  /// Whether a frame of the batch has its payload elsewhere (`FrameFlags.payloadDeferred`);
  /// set by whoever appends such a frame, cleared by the pipeline once it has the batch.
  public var hasDeferredPayloads = false

  public static let vlanTagPresent: UInt32 = 1 << 16

  public init() {
    // One block: frame pointers, then lengths, VLAN tags and flags at fixed offsets from
    // it, so that a packet loop reaches all four from one base register.
    let block = UnsafeMutableRawPointer.allocate(byteCount: Self.blockSize, alignment: 64)
    frames = block.bindMemory(to: UnsafeMutableRawPointer.self, capacity: Self.capacity)
    frames.initialize(repeating: UnsafeMutableRawPointer(bitPattern: 0x10)!, count: Self.capacity)
    lengths = (block + Self.lengthsOffset).bindMemory(to: Int32.self, capacity: Self.capacity)
    lengths.initialize(repeating: 0, count: Self.capacity)
    vlanTags = (block + Self.vlanTagsOffset).bindMemory(to: UInt32.self, capacity: Self.capacity)
    vlanTags.initialize(repeating: 0, count: Self.capacity)
    flags = (block + Self.flagsOffset).bindMemory(to: UInt8.self, capacity: Self.capacity)
    flags.initialize(repeating: 0, count: Self.capacity)
  }

  static let lengthsOffset = capacity * 8
  static let vlanTagsOffset = lengthsOffset + capacity * 4
  static let flagsOffset = vlanTagsOffset + capacity * 4
  static let blockSize = flagsOffset + capacity

  deinit {
    UnsafeMutableRawPointer(frames).deallocate()
  }

  /// Frame `index`'s length, VLAN tag and flags, read at their fixed offsets from
  /// `frames` (one base register in a packet loop).
  @inline(__always)
  static func length(_ frames: UnsafeMutablePointer<UnsafeMutableRawPointer>, _ index: Int) -> Int {
    Int(UnsafeRawPointer(frames).load(fromByteOffset: lengthsOffset &+ index &* 4, as: Int32.self))
  }
  @inline(__always)
  static func vlanTag(_ frames: UnsafeMutablePointer<UnsafeMutableRawPointer>, _ index: Int) -> UInt32 {
    UnsafeRawPointer(frames).load(fromByteOffset: vlanTagsOffset &+ index &* 4, as: UInt32.self)
  }
  @inline(__always)
  static func flags(_ frames: UnsafeMutablePointer<UnsafeMutableRawPointer>, _ index: Int) -> UInt8 {
    UnsafeRawPointer(frames).load(fromByteOffset: flagsOffset &+ index, as: UInt8.self)
  }

  /// The first `count` frames' lengths added up (a batch's received bytes): a loop of its
  /// own, which the compiler vectorises, rather than a running sum that holds a register
  /// (or a stack slot) in every packet loop.
  @inline(__always)
  static func totalLength(_ frames: UnsafeMutablePointer<UnsafeMutableRawPointer>, count: Int) -> Int {
    let lengths = UnsafeRawPointer(frames).advanced(by: lengthsOffset).assumingMemoryBound(to: Int32.self)
    var total = 0
    for index in 0..<count { total &+= Int(lengths[index]) }
    return total
  }

  @inline(__always) public var isFull: Bool { count == Self.capacity }

  /// Appends one frame; the caller checks `isFull` first.
  @inline(__always)
  public mutating func append(
    _ frame: UnsafeMutableRawPointer, length: Int, vlanTag: UInt32 = 0, flags frameFlags: UInt8 = 0
  ) {
    frames[count] = frame
    lengths[count] = Int32(truncatingIfNeeded: length)
    vlanTags[count] = vlanTag
    flags[count] = frameFlags
    count &+= 1
  }
}

/// Per-frame receive flags set by ports.
public enum FrameFlags {
  /// The kernel left the L4 checksum for hardware to finish (`TP_STATUS_CSUMNOTREADY`).
  public static let checksumNotReady: UInt8 = 1
  /// The kernel or NIC already verified the checksums (`TP_STATUS_CSUM_VALID`).
  public static let checksumValid: UInt8 = 2
  /// The capture was shorter than the frame on the wire (`TP_STATUS_COPY`, pcap caplen).
  public static let truncated: UInt8 = 4
  /// A VXLAN datagram that never left this host: its one unfinished checksum was the
  /// outer UDP one (`virtio_net_hdr`), so the sender finished the inner frame's, which
  /// the kernel would trust as it trusts every CHECKSUM_PARTIAL packet (and so does the
  /// TCP coalescer: no pass over the segment to verify it).
  public static let builtOnThisHost: UInt8 = 8
  /// A segment of a super-frame written without its payload, which is still in the
  /// super-frame (`DeferredPayload`): only the encapsulation toward the underlay's GSO
  /// frame reads it there; everything else has it copied into place first.
  public static let payloadDeferred: UInt8 = 16
  /// A VXLAN datagram built on this host whose one unfinished checksum is the inner
  /// frame's L4 checksum (a sender that left segmentation to the kernel: a vxswitch
  /// tunnel tap, the Linux vxlan device): trusted as the kernel trusts CHECKSUM_PARTIAL,
  /// and passed on unfinished where the output takes that (the TCP coalescer), finished
  /// everywhere else. Set with `checksumValid` and `builtOnThisHost`.
  public static let innerChecksumPartial: UInt8 = 32
}
