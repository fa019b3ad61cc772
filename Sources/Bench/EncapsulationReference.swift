import CReference
import Dataplane

/// The C yardstick (`CReference`) set up on a switch's tables: the same FDB, lane and
/// per-VTEP headers as the pipeline's, a ring of its own to encapsulate into, and a
/// source cache of its own.
///
/// Not thread-safe: one caller.
final class EncapsulationReference {
  static let slotSize = 2048
  static let slotCount = FrameVector.capacity
  static let dataOffset = 16
  /// The longest frame whose encapsulation (up to 70 bytes of IPv6, UDP and VXLAN
  /// header) fits a slot.
  static let longestFrame = slotSize - dataOffset - 70

  private var encap: vxr_encap
  private let ring: UnsafeMutableRawPointer
  private let sources: UnsafeMutablePointer<vxr_source_entry>
  private let noTags: UnsafeMutablePointer<UInt32>
  private(set) var others: UInt64 = 0
  private(set) var ringFull: UInt64 = 0
  /// Slots the last `encapsulate` filled, from the ring's start.
  private var written = 0

  init(_ inputs: EncapsulationReferenceInputs) {
    ring = .allocate(byteCount: Self.slotSize * Self.slotCount, alignment: 64)
    ring.initializeMemory(as: UInt8.self, repeating: 0, count: Self.slotSize * Self.slotCount)
    sources = .allocate(capacity: 4096)
    sources.initialize(repeating: vxr_source_entry(key: 0, tag: 0), count: 4096)
    noTags = .allocate(capacity: FrameVector.capacity)
    noTags.initialize(repeating: 0, count: FrameVector.capacity)
    encap = vxr_encap(
      fdb: vxr_fdb(inputs.fdb),
      domain_bits: inputs.domainBits, vtep_pattern: inputs.vtepPattern, port_pattern: inputs.portPattern,
      // Any tag but 0 (an empty cache entry's): the reference's cache is its own.
      source_tag: 1, vlan_tag: 0, vni_field: inputs.vniField,
      // `length - 14 < span`: frames of 14 to `longestFrame` bytes, and no longer than the
      // switch's own ring takes.
      length_span: min(inputs.lengthSpan, UInt64(Self.longestFrame - 13)),
      member: inputs.member, learns: inputs.learns ? 1 : 0, watches_arp: inputs.watchesARP ? 1 : 0,
      ipv6: inputs.isIPv6 ? 1 : 0,
      sources: sources, headers: inputs.headers.assumingMemoryBound(to: UInt8.self),
      header_slot: UInt64(inputs.headerSlot), checksum_base: inputs.checksumBase,
      resolved: inputs.resolved.assumingMemoryBound(to: UInt8.self), vtep_count: UInt64(inputs.vtepCount),
      port_base: inputs.sourcePortBase, port_span: inputs.sourcePortSpan,
      ring: ring.assumingMemoryBound(to: UInt8.self), slot_size: UInt64(Self.slotSize),
      slot_count: UInt64(Self.slotCount), data_offset: UInt64(Self.dataOffset), next: 0)
  }

  deinit {
    ring.deallocate()
    sources.deallocate()
    noTags.deallocate()
  }

  /// Encapsulates up to `FrameVector.capacity` untagged frames; returns how many it
  /// encapsulated, whose output `frame(at:)` then reads until the next call.
  func encapsulate(
    frames: UnsafeMutablePointer<UnsafeMutableRawPointer>, lengths: UnsafeMutablePointer<Int32>, count: Int
  ) -> Int {
    // The last call's frames are sent first, as a port's transmit would (the memory ports
    // discard): a batch fills at most `slotCount` slots, so the ring starts at 0.
    vxr_encap_discard(&encap, written)
    written = frames.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: count) { pointers in
      Int(vxr_encapsulate(&encap, pointers, lengths, noTags, count, &others, &ringFull))
    }
    return written
  }

  /// The bytes of the `index`th frame the last `encapsulate` wrote.
  func frame(at index: Int) -> [UInt8] {
    let slot = ring + index * Self.slotSize
    let length = Int(slot.load(fromByteOffset: 4, as: UInt32.self))
    return Array(UnsafeRawBufferPointer(start: slot + Self.dataOffset, count: length))
  }
}
