/// A switching instance with in-memory ports and no threads: the same `SwitchCore` and
/// `Pipeline` as the live daemon, driven synchronously. Replay, Bench `memory` and the
/// golden tests use it; learn events are applied after every batch and the ager runs
/// whenever the clock moves, so results are deterministic.
///
/// Not thread-safe: drive it from one thread.
public final class OfflineSwitch {
  public let core: SwitchCore
  public let pipeline: Pipeline
  /// One port per interface, in `core.interfaces` order.
  public let ports: [MemoryPort]
  private var vector = FrameVector()
  private var lastAged: UInt32 = 0

  /// `virtioNetHeader` says which ports transmit behind a `virtio_net_hdr`, as ports
  /// with `PACKET_VNET_HDR` do: access ports then get TCP coalescing, the underlay UDP
  /// GSO frames (`UnderlaySegmenter`).
  public init(
    config: SiteConfig, output: (String) -> MemoryPort.Output = { _ in .collect },
    virtioNetHeader: (String) -> Bool = { _ in false }
  ) {
    core = SwitchCore(config: config)
    pipeline = core.makePipeline()
    ports = core.interfaces.map {
      MemoryPort(name: $0, output: output($0), virtioNetHeader: virtioNetHeader($0))
    }
    for (index, port) in ports.enumerated() {
      pipeline.attach(
        interface: UInt16(index), ring: port.transmitRing, underlay: port.name == config.site.underlay)
    }
  }

  deinit { core.retire(pipeline) }

  public func interfaceIndex(_ name: String) -> Int? { core.interfaces.firstIndex(of: name) }

  public func port(_ name: String) -> MemoryPort? { interfaceIndex(name).map { ports[$0] } }

  /// Forwards `frames` received on `interface` at switch time `now` (seconds), in
  /// batches of at most `FrameVector.capacity`; afterwards applies learning and flushes
  /// every port.
  public func forward(
    interface: Int, frames: UnsafeBufferPointer<(UnsafeMutableRawPointer, Int)>, now: UInt32,
    flags: UInt8 = 0
  ) {
    age(now: now)
    var start = 0
    while start < frames.count {
      let end = min(frames.count, start + FrameVector.capacity)
      vector.count = 0
      vector.ingress = UInt16(interface)
      vector.now = now
      for index in start..<end { vector.append(frames[index].0, length: frames[index].1, flags: flags) }
      pipeline.process(&vector)
      core.drainLearnQueues()
      flush()
      start = end
    }
  }

  /// Forwards copies of byte arrays (tests).
  /// `flags` (`FrameFlags`) as a port would set them on every frame.
  public func forward(interface name: String, frames: [[UInt8]], now: UInt32 = 1, flags: UInt8 = 0) {
    guard let interface = interfaceIndex(name) else { preconditionFailure("no interface \(name)") }
    var buffers = frames.map { frame -> (UnsafeMutableRawPointer, Int) in
      let memory = UnsafeMutableRawPointer.allocate(byteCount: max(1, frame.count), alignment: 64)
      frame.withUnsafeBytes {
        if let base = $0.baseAddress { memory.copyMemory(from: base, byteCount: frame.count) }
      }
      return (memory, frame.count)
    }
    defer { for buffer in buffers { buffer.0.deallocate() } }
    buffers.withUnsafeMutableBufferPointer {
      forward(interface: interface, frames: UnsafeBufferPointer($0), now: now, flags: flags)
    }
  }

  /// Forwards a VM's TSO/USO super-frame (`bytes`, described by `header`) received on
  /// `interface`, cut into segments as an AF_PACKET access port cuts it: in batches of
  /// at most `FrameVector.capacity` (or `batch`) segments, with their payloads deferred
  /// (`DeferredPayload`) when `deferring`. Returns whether the super-frame was taken.
  @discardableResult
  public func forward(
    interface name: String, superFrame bytes: [UInt8], header: VirtioNetHeader, vlanTag: UInt32 = 0,
    deferring: Bool = true, batch: Int = FrameVector.capacity, now: UInt32 = 1
  ) -> Bool {
    guard let interface = interfaceIndex(name) else { preconditionFailure("no interface \(name)") }
    age(now: now)
    let arenaBytes = 1 << 20
    let arena = UnsafeMutableRawPointer.allocate(byteCount: arenaBytes, alignment: 64)
    defer { arena.deallocate() }
    return bytes.withUnsafeBytes { raw -> Bool in
      guard let base = raw.baseAddress,
        var superFrame = try? SuperFrame(frame: base, length: raw.count, header: header)
      else { return false }
      while !superFrame.isFinished {
        vector.count = 0
        vector.ingress = UInt16(interface)
        vector.now = now
        var used = 0
        _ = DeferredPayload.cut(
          &superFrame, arena: arena, capacity: arenaBytes, used: &used, into: &vector, vlanTag: vlanTag,
          deferring: deferring, limit: batch)
        pipeline.process(&vector)
        core.drainLearnQueues()
        flush()
      }
      return true
    }
  }

  /// Runs the ager when the clock has moved since it last ran.
  private func age(now: UInt32) {
    if now != lastAged {
      core.age(now: now)
      lastAged = now
    }
  }

  /// Runs one batch already in place (Bench): the vector filled by the caller.
  @inline(__always)
  public func process(_ vector: inout FrameVector) {
    pipeline.process(&vector)
  }

  public func flush() {
    for port in ports where port.transmitRing.pointee.pending > 0 { port.flushTransmit() }
  }

  /// Frames each port transmitted since the last call.
  public func takeOutput(_ name: String) -> [[UInt8]] { port(name)?.takeTransmitted() ?? [] }
}
