/// A segment of a VM's super-frame whose payload has not been copied yet. The access port
/// cuts a super-frame into segments for the pipeline (`cut`), and a segment's payload,
/// most of its bytes, is usually bound for the underlay's UDP GSO frame: copying it into
/// the segment first, then from the segment into the GSO frame, moved every byte twice.
/// A deferred segment is its headers alone (checksums final: `SuperFrame` sums the
/// super-frame's bytes) in the port's segment arena, with a descriptor in the
/// `descriptorLength` bytes before them saying where its payload is in the super-frame;
/// the frame is flagged `FrameFlags.payloadDeferred` and its length is the whole
/// segment's. The pipeline's encapsulation copies the headers and the payload straight
/// to their place in the GSO frame (`copyInner`); any other consumer has the payload
/// copied into the segment first (`materialize`), and then sees an ordinary frame.
///
/// The super-frame's memory (the receive ring) stays the port's until the batch is
/// processed, as every received frame's does. Plain functions over memory the caller
/// owns: no state, thread-safe as far as that memory is.
public enum DeferredPayload {
  /// Bytes before a deferred segment holding its descriptor: the payload's address (8
  /// bytes), then the segment's header length (4).
  public static let descriptorLength = 16

  @inline(__always)
  static func store(before frame: UnsafeMutableRawPointer, payload: UnsafeRawPointer, headerLength: Int) {
    (frame - descriptorLength).storeBytes(of: UInt(bitPattern: payload), as: UInt.self)
    (frame - 8).storeBytes(of: Int32(truncatingIfNeeded: headerLength), as: Int32.self)
  }

  @inline(__always)
  static func payload(of frame: UnsafeRawPointer) -> UnsafeRawPointer {
    UnsafeRawPointer(bitPattern: (frame - descriptorLength).load(as: UInt.self)).unsafelyUnwrapped
  }

  @inline(__always)
  static func headerLength(of frame: UnsafeRawPointer) -> Int {
    Int((frame - 8).load(as: Int32.self))
  }

  /// Writes the deferred segment at `frame` (`length` bytes) to `destination`: its
  /// headers from the arena, its payload from the super-frame.
  @inline(__always)
  static func copyInner(_ frame: UnsafeRawPointer, length: Int, to destination: UnsafeMutableRawPointer) {
    let headerLength = headerLength(of: frame)
    destination.copyFrameBytes(from: frame, count: headerLength)
    (destination + headerLength).copyFrameBytes(from: payload(of: frame), count: length &- headerLength)
  }

  /// Copies a deferred segment's payload into place, after its headers.
  @inline(never)
  static func materialize(_ frame: UnsafeMutableRawPointer, length: Int) {
    let headerLength = headerLength(of: frame)
    (frame + headerLength).copyMemory(from: payload(of: frame), byteCount: length &- headerLength)
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
      if deferring {
        store(before: output, payload: superFrame.nextPayload, headerLength: superFrame.payloadOffset)
      }
      let length = superFrame.writeNext(to: output, copyingPayload: !deferring)
      used &+= needed
      vector.append(output, length: length, vlanTag: vlanTag, flags: flags)
      written &+= 1
      if superFrame.isFinished { break }
    }
    if deferring && written != 0 { vector.hasDeferredPayloads = true }
    return written
  }
}
