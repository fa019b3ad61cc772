/// An interface in memory, for tests, replay and Bench: frames to receive are handed in
/// as pointers into memory the caller keeps alive; transmitted frames land in a
/// `TxRingStorage` and, on flush, are discarded, collected, or passed to a handler.
public final class MemoryPort: PacketPort {
  public enum Output {
    /// Count only (Bench).
    case discard
    /// Keep a copy of every frame (`transmitted`).
    case collect
    /// Pass every frame to a closure (replay writes pcap files).
    case handler((UnsafeRawBufferPointer) -> Void)
  }

  public let name: String
  public let storage: TxRingStorage
  public var output: Output
  public private(set) var transmitted: [[UInt8]] = []
  public private(set) var transmittedCount = 0

  /// Frames `receive` hands out, cycling when `cycle` is set (Bench), else once.
  private var sourceFrames: UnsafeMutablePointer<UnsafeMutableRawPointer>?
  private var sourceLengths: UnsafeMutablePointer<Int32>?
  private var sourceCount = 0
  private var cursor = 0
  public var cycle = false

  /// With `virtioNetHeader`, the port transmits as an access port with `PACKET_VNET_HDR`
  /// does: slots for 64 KiB super-frames, each frame behind a `virtio_net_hdr` (which
  /// `transmitted` frames keep in front).
  public init(name: String, output: Output = .collect, slotCount: Int = 1024, virtioNetHeader: Bool = false) {
    self.name = name
    self.output = output
    storage =
      virtioNetHeader
      ? TxRingStorage(slotCount: 256, maxFrameLength: 65478, framePrefix: VirtioNetHeader.length)
      : TxRingStorage(slotCount: slotCount)
  }

  deinit {
    sourceFrames?.deallocate()
    sourceLengths?.deallocate()
  }

  /// Sets the frames to hand out; the memory they point to must outlive the port's use.
  public func load(frames: [(UnsafeMutableRawPointer, Int)]) {
    sourceFrames?.deallocate()
    sourceLengths?.deallocate()
    let pointers = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: max(1, frames.count))
    let lengths = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, frames.count))
    for (index, frame) in frames.enumerated() {
      (pointers + index).initialize(to: frame.0)
      (lengths + index).initialize(to: Int32(frame.1))
    }
    sourceFrames = pointers
    sourceLengths = lengths
    sourceCount = frames.count
    cursor = 0
  }

  public var remaining: Int { cycle ? Int.max : sourceCount - cursor }

  public func receive(into vector: inout FrameVector) -> Int {
    guard let frames = sourceFrames, let lengths = sourceLengths, sourceCount > 0 else { return 0 }
    var added = 0
    while !vector.isFull {
      if cursor == sourceCount {
        if !cycle { break }
        cursor = 0
      }
      vector.append(frames[cursor], length: Int(lengths[cursor]))
      cursor &+= 1
      added &+= 1
    }
    return added
  }

  public func releaseReceived() {}

  public var transmitRing: UnsafeMutablePointer<TxRing> { storage.ring }

  public func flushTransmit() {
    switch output {
    case .discard:
      transmittedCount &+= storage.discard()
    case .collect:
      storage.drain { frame in
        transmitted.append(Array(frame))
        transmittedCount += 1
      }
    case .handler(let handler):
      storage.drain { frame in
        handler(frame)
        transmittedCount += 1
      }
    }
  }

  /// Returns and forgets the collected frames.
  public func takeTransmitted() -> [[UInt8]] {
    defer { transmitted.removeAll() }
    return transmitted
  }
}
