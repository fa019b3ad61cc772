import CReference
import Dataplane

/// The C yardstick of the decapsulation fast path (`vxr_decapsulate`) set up on a
/// switch's tables, with a ring and transmit counters of its own per interface.
///
/// Not thread-safe: one caller.
final class DecapsulationReference {
  static let slotSize = EncapsulationReference.slotSize
  static let slotCount = FrameVector.capacity
  static let dataOffset = EncapsulationReference.dataOffset

  private var decap: vxr_decap
  private let memory: [UnsafeMutableRawPointer]
  private let rings: UnsafeMutablePointer<vxr_ring>
  private let sources: UnsafeMutablePointer<vxr_source_entry>
  private let counters: UnsafeMutablePointer<UInt64>
  private let noFlags: UnsafeMutablePointer<UInt8>
  private let interfaceCount: Int
  private(set) var others: UInt64 = 0
  private(set) var ringFull: UInt64 = 0

  init(_ inputs: DecapsulationReferenceInputs) {
    interfaceCount = inputs.interfaceCount
    memory = (0..<inputs.interfaceCount).map { _ in
      let ring = UnsafeMutableRawPointer.allocate(byteCount: Self.slotSize * Self.slotCount, alignment: 64)
      ring.initializeMemory(as: UInt8.self, repeating: 0, count: Self.slotSize * Self.slotCount)
      return ring
    }
    rings = .allocate(capacity: max(1, inputs.interfaceCount))
    for (index, base) in memory.enumerated() {
      (rings + index).initialize(
        to: vxr_ring(
          base: base.assumingMemoryBound(to: UInt8.self), slot_size: UInt64(Self.slotSize),
          slot_count: UInt64(Self.slotCount), data_offset: UInt64(Self.dataOffset),
          max_frame_length: UInt64(Self.slotSize - Self.dataOffset), next: 0, pending: 0))
    }
    sources = .allocate(capacity: 4096)
    sources.initialize(repeating: vxr_source_entry(key: 0, tag: 0), count: 4096)
    counters = .allocate(capacity: 2 * max(1, inputs.interfaceCount))
    counters.initialize(repeating: 0, count: 2 * max(1, inputs.interfaceCount))
    noFlags = .allocate(capacity: FrameVector.capacity)
    noFlags.initialize(repeating: 0, count: FrameVector.capacity)
    var decap = vxr_decap()
    decap.fdb = vxr_fdb(inputs.fdb)
    decap.vni_field = inputs.vniField
    decap.learns = inputs.learns ? 1 : 0
    decap.general_flags = inputs.generalFlags
    decap.ipv6 = inputs.isIPv6 ? 1 : 0
    decap.domain_bits = inputs.domainBits
    decap.port_pattern = inputs.portPattern
    decap.vtep_pattern = inputs.vtepPattern
    withUnsafeMutableBytes(of: &decap.masks) { $0.copyBytes(from: inputs.masks) }
    withUnsafeMutableBytes(of: &decap.expected) { $0.copyBytes(from: inputs.expected) }
    decap.vtep_slots = inputs.vtepSlots
    decap.vtep_mask = UInt64(inputs.vtepMask)
    decap.vtep_high = inputs.vtepHigh
    decap.vtep_low = inputs.vtepLow
    decap.member_vlan = inputs.memberVLAN
    decap.member_interface = inputs.memberInterface
    decap.sources = sources
    // Any tag base but 0 (an empty cache entry's): the reference's cache is its own.
    decap.source_tag_base = 1 << 32
    decap.rings = rings
    decap.ring_count = UInt64(inputs.interfaceCount)
    decap.tx_frames = counters
    decap.tx_bytes = counters + max(1, inputs.interfaceCount)
    self.decap = decap
  }

  deinit {
    memory.forEach { $0.deallocate() }
    rings.deallocate()
    sources.deallocate()
    counters.deallocate()
    noFlags.deallocate()
  }

  /// Decapsulates up to `FrameVector.capacity` frames; returns how many it delivered,
  /// which `frames(interface:)` then reads until the next call.
  func decapsulate(
    frames: UnsafeMutablePointer<UnsafeMutableRawPointer>, lengths: UnsafeMutablePointer<Int32>, count: Int
  ) -> Int {
    // The last call's frames are sent first, as the ports' transmit would (the memory
    // ports discard): a batch fills at most `slotCount` slots, so each ring starts at 0.
    for interface in 0..<interfaceCount { vxr_ring_discard(rings + interface) }
    return frames.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: count) { pointers in
      Int(vxr_decapsulate(&decap, pointers, lengths, noFlags, count, &others, &ringFull))
    }
  }

  /// The frames the last `decapsulate` wrote toward `interface`, in order.
  func frames(interface: Int) -> [[UInt8]] {
    let base = memory[interface]
    return (0..<Int(rings[interface].pending)).map { index in
      let slot = base + index * Self.slotSize
      let length = Int(slot.load(fromByteOffset: 4, as: UInt32.self))
      return Array(UnsafeRawBufferPointer(start: slot + Self.dataOffset, count: length))
    }
  }

  /// Frames sent toward `interface` since the reference was made (its transmit counter).
  func transmitted(interface: Int) -> UInt64 { counters[interface] }
}
