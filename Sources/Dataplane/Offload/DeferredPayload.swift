/// A segment of a VM's super-frame whose payload has not been copied yet. The access port
/// cuts a super-frame into segments for the pipeline (`cut`), and a segment's payload,
/// most of its bytes, is usually bound for the underlay's UDP GSO frame: copying it into
/// the segment first, then from the segment into the GSO frame, moved every byte twice,
/// and summing it for the segment's checksum read it a third time. A deferred segment
/// is its headers alone in the port's segment arena (`SuperFrame.writeNextHeaders`),
/// with a descriptor in the `descriptorLength` bytes before them: where its payload is
/// in the super-frame, and its L4 checksum's sum but for the payload; the frame is
/// flagged `FrameFlags.payloadDeferred` and its length is the whole segment's. The
/// pipeline's encapsulation copies the headers, then the payload straight to its place
/// in the GSO frame, summing it as it goes, and sets the checksum there (`copyInner`);
/// any other consumer has the payload copied into the segment, the same way, first
/// (`materialize`), and then sees an ordinary frame.
///
/// The super-frame's memory (the receive ring) stays the port's until the batch is
/// processed, as every received frame's does. Plain functions over memory the caller
/// owns: no state, thread-safe as far as that memory is.
public enum DeferredPayload {
  /// Bytes before a deferred segment holding its descriptor: the payload's address (8
  /// bytes), the segment's header length (4), the folded partial sum (2), and the L4
  /// checksum field's offset (2, its top bit set for UDP: a 0 is sent as all ones).
  public static let descriptorLength = 16
  static let udpBit: UInt16 = 0x8000

  @inline(__always)
  static func store(
    before frame: UnsafeMutableRawPointer, payload: UnsafeRawPointer, headerLength: Int, partialSum: UInt16,
    checksumField: Int, isTCP: Bool
  ) {
    let descriptor = frame - descriptorLength
    descriptor.storeBytes(of: UInt(bitPattern: payload), as: UInt.self)
    descriptor.storeBytes(of: Int32(truncatingIfNeeded: headerLength), toByteOffset: 8, as: Int32.self)
    descriptor.storeBytes(of: partialSum, toByteOffset: 12, as: UInt16.self)
    descriptor.storeBytes(
      of: UInt16(truncatingIfNeeded: checksumField) | (isTCP ? 0 : udpBit), toByteOffset: 14, as: UInt16.self)
  }

  /// Writes the deferred segment at `frame` (`length` bytes) to `destination` (which may
  /// be `frame` itself): its headers from `frame`, its payload from the super-frame, and
  /// its L4 checksum.
  @inline(__always)
  static func copyInner(_ frame: UnsafeRawPointer, length: Int, to destination: UnsafeMutableRawPointer) {
    let descriptor = frame - descriptorLength
    let payload = UnsafeRawPointer(bitPattern: descriptor.load(as: UInt.self)).unsafelyUnwrapped
    let headerLength = Int(descriptor.load(fromByteOffset: 8, as: Int32.self))
    let partialSum = descriptor.load(fromByteOffset: 12, as: UInt16.self)
    let field = descriptor.load(fromByteOffset: 14, as: UInt16.self)
    if destination != UnsafeMutableRawPointer(mutating: frame) {
      destination.copyFrameBytes(from: frame, count: headerLength)
    }
    let sum = OnesComplement.nativeSum(
      copying: payload, to: destination + headerLength, count: length &- headerLength,
      initial: UInt64(partialSum))
    destination.setRaw16(
      Int(field & ~udpBit), SuperFrame.checksumField(sum: sum, isTCP: field & udpBit == 0))
  }

  /// A deferred TCP segment's payload and header length; nil for a UDP one.
  @inline(__always)
  static func tcpSegment(_ frame: UnsafeRawPointer) -> (payload: UnsafeRawPointer, headerLength: Int)? {
    let descriptor = frame - descriptorLength
    guard descriptor.load(fromByteOffset: 14, as: UInt16.self) & udpBit == 0 else { return nil }
    return (
      UnsafeRawPointer(bitPattern: descriptor.load(as: UInt.self)).unsafelyUnwrapped,
      Int(descriptor.load(fromByteOffset: 8, as: Int32.self))
    )
  }

  /// Copies a deferred segment's payload into place, after its headers.
  @inline(never)
  static func materialize(_ frame: UnsafeMutableRawPointer, length: Int) {
    copyInner(frame, length: length, to: frame)
  }

  /// Frame `index` of a batch made ordinary if its payload was deferred.
  @inline(__always)
  static func materialize(_ frames: UnsafeMutablePointer<UnsafeMutableRawPointer>, _ index: Int) {
    let flags = UnsafeMutableRawPointer(frames) + (FrameVector.flagsOffset &+ index)
    let value = flags.load(as: UInt8.self)
    if _slowPath(value & FrameFlags.payloadDeferred != 0) {
      materialize(frames[index], length: FrameVector.length(frames, index))
      flags.storeBytes(of: value & ~FrameFlags.payloadDeferred, as: UInt8.self)
    }
  }

  /// Every deferred frame of the batch made ordinary.
  @inline(never)
  static func materializeAll(_ vector: inout FrameVector) {
    for index in 0..<vector.count { materialize(vector.frames, index) }
    vector.hasDeferredPayloads = false
  }

  /// Arena bytes a segment of `segmentLength` bytes takes, descriptor included, with
  /// the next segment's descriptor starting on a cache line.
  @inline(__always)
  static func arenaBytes(segmentLength: Int) -> Int {
    (descriptorLength &+ segmentLength &+ 63) & ~63
  }

  /// Cuts segments of `superFrame` into the arena at `arena` (`capacity` bytes, `used`
  /// taken) and appends them to `vector` (flags `checksumValid`, plus `payloadDeferred`
  /// when `deferring`), as many as both hold and the batch stays within `limit` frames.
  /// Returns how many it appended.
  public static func cut(
    _ superFrame: inout SuperFrame, arena: UnsafeMutableRawPointer, capacity: Int, used: inout Int,
    into vector: inout FrameVector, vlanTag: UInt32, deferring: Bool, limit: Int = FrameVector.capacity
  ) -> Int {
    var written = 0
    let flags = deferring ? FrameFlags.checksumValid | FrameFlags.payloadDeferred : FrameFlags.checksumValid
    let limit = min(limit, FrameVector.capacity)
    while vector.count < limit {
      let needed = arenaBytes(segmentLength: superFrame.nextSegmentLength)
      if used &+ needed > capacity { break }
      let output = arena + (used &+ descriptorLength)
      let length: Int
      if deferring {
        let payload = superFrame.nextPayload
        let written = superFrame.writeNextHeaders(to: output)
        store(
          before: output, payload: payload, headerLength: superFrame.payloadOffset,
          partialSum: written.partialSum, checksumField: superFrame.checksumFieldOffset,
          isTCP: superFrame.isTCP)
        length = written.length
      } else {
        length = superFrame.writeNext(to: output)
      }
      used &+= needed
      vector.append(output, length: length, vlanTag: vlanTag, flags: flags)
      written &+= 1
      if superFrame.isFinished { break }
    }
    if deferring && written != 0 { vector.hasDeferredPayloads = true }
    return written
  }
}
