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

  public static let vlanTagPresent: UInt32 = 1 << 16

  public init() {
    frames = .allocate(capacity: Self.capacity)
    frames.initialize(repeating: UnsafeMutableRawPointer(bitPattern: 0x10)!, count: Self.capacity)
    lengths = .allocate(capacity: Self.capacity)
    lengths.initialize(repeating: 0, count: Self.capacity)
    vlanTags = .allocate(capacity: Self.capacity)
    vlanTags.initialize(repeating: 0, count: Self.capacity)
    flags = .allocate(capacity: Self.capacity)
    flags.initialize(repeating: 0, count: Self.capacity)
  }

  deinit {
    frames.deallocate()
    lengths.deallocate()
    vlanTags.deallocate()
    flags.deallocate()
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
}
