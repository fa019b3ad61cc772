/// Unaligned network-order loads and stores on frame memory. Frames sit at arbitrary
/// offsets in ring blocks, so every access is unaligned; on x86-64 and arm64 these
/// compile to single moves plus a byte swap.
extension UnsafeRawPointer {
  @inline(__always) func be16(_ offset: Int) -> UInt16 {
    UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
  }
  @inline(__always) func be32(_ offset: Int) -> UInt32 {
    UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }
  @inline(__always) func be64(_ offset: Int) -> UInt64 {
    UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
  }
  @inline(__always) func u8(_ offset: Int) -> UInt8 { load(fromByteOffset: offset, as: UInt8.self) }
  @inline(__always) func raw64(_ offset: Int) -> UInt64 {
    loadUnaligned(fromByteOffset: offset, as: UInt64.self)
  }
  @inline(__always) func raw32(_ offset: Int) -> UInt32 {
    loadUnaligned(fromByteOffset: offset, as: UInt32.self)
  }
  @inline(__always) func raw16(_ offset: Int) -> UInt16 {
    loadUnaligned(fromByteOffset: offset, as: UInt16.self)
  }
  @inline(__always) func raw128(_ offset: Int) -> SIMD16<UInt8> {
    loadUnaligned(fromByteOffset: offset, as: SIMD16<UInt8>.self)
  }
}

extension UnsafeMutableRawPointer {
  @inline(__always) func setBE16(_ offset: Int, _ value: UInt16) {
    storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
  }
  @inline(__always) func setBE32(_ offset: Int, _ value: UInt32) {
    storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
  }
  @inline(__always) func setRaw64(_ offset: Int, _ value: UInt64) {
    storeBytes(of: value, toByteOffset: offset, as: UInt64.self)
  }
  @inline(__always) func setRaw32(_ offset: Int, _ value: UInt32) {
    storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
  }
  @inline(__always) func setRaw16(_ offset: Int, _ value: UInt16) {
    storeBytes(of: value, toByteOffset: offset, as: UInt16.self)
  }
  @inline(__always) func setU8(_ offset: Int, _ value: UInt8) {
    storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
  }
  @inline(__always) func setRaw128(_ offset: Int, _ value: SIMD16<UInt8>) {
    storeBytes(of: value, toByteOffset: offset, as: SIMD16<UInt8>.self)
  }
}

/// RFC 1071 one's-complement arithmetic over frame memory.
public enum OnesComplement {
  /// Adds the 16-bit big-endian words of `count` bytes at `bytes` to `initial` (a sum
  /// of host-order 16-bit words); an odd last byte is padded with zero.
  @inline(__always)
  public static func sum(_ bytes: UnsafeRawPointer, count: Int, initial: UInt64 = 0) -> UInt64 {
    var folded = fold16(nativeSum(bytes, count: count))
    #if _endian(little)
      folded = UInt64(UInt16(truncatingIfNeeded: folded).byteSwapped)
    #endif
    return initial &+ folded
  }

  /// The accumulator `sum` folds: native-order 64-bit words added with end-around carry
  /// (`add` then `adc $0`: two instructions per 8 bytes), four words a round (long runs
  /// in SIMD lanes first, see below), to `initial`,
  /// which must be in the same order (`nativeOrder`). The one's-complement sum is
  /// byte-order independent up to a final swap of the folded 16 bits, and a swap leaves
  /// 0xFFFF as it is: a caller that verifies compares the fold with 0xFFFF, one that writes
  /// a checksum field stores the complemented fold as it is (`setRaw16`), and neither
  /// folds or swaps more than once.
  @inline(__always)
  public static func nativeSum(_ bytes: UnsafeRawPointer, count: Int, initial: UInt64 = 0) -> UInt64 {
    var accumulator = initial
    var offset = 0
    if count >= 128 {
      // Long runs (a TCP segment's payload): 32-bit words widened into eight 64-bit
      // lanes, added at the end. No carry can leave a lane (far fewer than 2^32 words),
      // so no add waits for the one before, as each `addWithCarry` does: twice as fast
      // on a 1456-byte segment. (A 32-bit word is congruent to the sum of its 16-bit
      // halves modulo 0xFFFF, as a 64-bit word is to the sum of its quarters.)
      var lanes = SIMD8<UInt64>(repeating: 0)
      while offset &+ 32 <= count {
        lanes &+= SIMD8<UInt64>(
          truncatingIfNeeded: bytes.loadUnaligned(fromByteOffset: offset, as: SIMD8<UInt32>.self))
        offset &+= 32
      }
      accumulator = addWithCarry(accumulator, lanes.wrappedSum())
    }
    while offset &+ 32 <= count {
      accumulator = addWithCarry(accumulator, bytes.raw64(offset))
      accumulator = addWithCarry(accumulator, bytes.raw64(offset &+ 8))
      accumulator = addWithCarry(accumulator, bytes.raw64(offset &+ 16))
      accumulator = addWithCarry(accumulator, bytes.raw64(offset &+ 24))
      offset &+= 32
    }
    while offset &+ 8 <= count {
      accumulator = addWithCarry(accumulator, bytes.raw64(offset))
      offset &+= 8
    }
    if offset &+ 4 <= count {
      accumulator = addWithCarry(accumulator, UInt64(bytes.raw32(offset)))
      offset &+= 4
    }
    if offset &+ 2 <= count {
      accumulator = addWithCarry(accumulator, UInt64(bytes.raw16(offset)))
      offset &+= 2
    }
    if offset < count {
      accumulator = addWithCarry(accumulator, UInt64(bytes.u8(offset)))  // little-endian: low byte first
    }
    return accumulator
  }

  /// `nativeSum` of `count` bytes at `source` while copying them to `destination`
  /// (which must not overlap them): one pass over bytes that are read once, where a sum
  /// then a copy would read them twice (`DeferredPayload`).
  @inline(__always)
  public static func nativeSum(
    copying source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer, count: Int, initial: UInt64
  ) -> UInt64 {
    var lanes = SIMD8<UInt64>(repeating: 0)
    var offset = 0
    while offset &+ 32 <= count {
      let words = source.loadUnaligned(fromByteOffset: offset, as: SIMD8<UInt32>.self)
      destination.storeBytes(of: words, toByteOffset: offset, as: SIMD8<UInt32>.self)
      lanes &+= SIMD8<UInt64>(truncatingIfNeeded: words)
      offset &+= 32
    }
    let rest = count &- offset
    (destination + offset).copyMemory(from: source + offset, byteCount: rest)
    return nativeSum(source + offset, count: rest, initial: addWithCarry(initial, lanes.wrappedSum()))
  }

  /// A host-order 16-bit value (a length, a protocol number, a folded sum) as `nativeSum`
  /// adds it: byte-swapped on a little-endian machine.
  @inline(__always)
  public static func nativeOrder(_ value: UInt16) -> UInt64 {
    #if _endian(little)
      return UInt64(value.byteSwapped)
    #else
      return UInt64(value)
    #endif
  }

  /// `a + b` with the carry out of bit 63 added back in (2^64 is 1 modulo 0xFFFF).
  @inline(__always)
  static func addWithCarry(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (sum, carried) = a.addingReportingOverflow(b)
    return sum &+ (carried ? 1 : 0)
  }

  /// Folds a wide sum to 16 bits with end-around carry: 0 only for 0, otherwise the
  /// value in 1...0xFFFF congruent to `value` modulo 0xFFFF (what folding 16 bits at a
  /// time gives). Two steps instead of four: the halves added with the carry out of bit 31
  /// added back, then the upper 16 bits of the word plus itself rotated by 16 (Linux's
  /// `csum_fold`), whose carry out of bit 15 is the end-around carry of the last add.
  @inline(__always)
  public static func fold16(_ value: UInt64) -> UInt64 {
    let (halves, carried) = UInt32(truncatingIfNeeded: value).addingReportingOverflow(
      UInt32(truncatingIfNeeded: value &>> 32))
    let word = halves &+ (carried ? 1 : 0)  // cannot wrap: a carry leaves halves < 2^32 - 1
    return UInt64((word &+ (word &<< 16 | word &>> 16)) &>> 16)
  }

  /// The checksum field value for a sum: complement of the folded sum.
  @inline(__always)
  public static func finish(_ value: UInt64) -> UInt16 { ~UInt16(truncatingIfNeeded: fold16(value)) }

  /// Folds a sum that fits 32 bits to 16 bits: two folds are exact there, the 64-bit
  /// fold's other two are dead work.
  @inline(__always)
  public static func fold32(_ value: UInt32) -> UInt32 {
    let sum = (value & 0xFFFF) &+ (value &>> 16)
    return (sum & 0xFFFF) &+ (sum &>> 16)
  }
}

extension UnsafeMutableRawPointer {
  /// Copies `count` bytes from `source`, which must not overlap. Minimum-size frames (16
  /// to 64 bytes, the bulk of small-packet traffic) take four possibly overlapping
  /// 16-byte moves inline, with fixed offsets for the commonest 48 to 64; everything
  /// else goes to `memcpy`, whose call overhead is noise next to the copy itself there.
  @inline(__always)
  func copyFrameBytes(from source: UnsafeRawPointer, count: Int) {
    if UInt(bitPattern: count &- 48) <= 16 {
      // 0, 16, 32 and the last 16 bytes: together all of them, overlapping at the end.
      let a = source.loadUnaligned(fromByteOffset: 0, as: SIMD16<UInt8>.self)
      let b = source.loadUnaligned(fromByteOffset: 16, as: SIMD16<UInt8>.self)
      let c = source.loadUnaligned(fromByteOffset: 32, as: SIMD16<UInt8>.self)
      let d = source.loadUnaligned(fromByteOffset: count &- 16, as: SIMD16<UInt8>.self)
      storeBytes(of: a, toByteOffset: 0, as: SIMD16<UInt8>.self)
      storeBytes(of: b, toByteOffset: 16, as: SIMD16<UInt8>.self)
      storeBytes(of: c, toByteOffset: 32, as: SIMD16<UInt8>.self)
      storeBytes(of: d, toByteOffset: count &- 16, as: SIMD16<UInt8>.self)
    } else if count >= 16 && count < 48 {
      // First 32 and last 32 bytes: together all of them, overlapping in the middle.
      let head = count >= 32 ? 16 : count &- 16
      let tail = count >= 32 ? count &- 32 : 0
      let a = source.loadUnaligned(fromByteOffset: 0, as: SIMD16<UInt8>.self)
      let b = source.loadUnaligned(fromByteOffset: head, as: SIMD16<UInt8>.self)
      let c = source.loadUnaligned(fromByteOffset: tail, as: SIMD16<UInt8>.self)
      let d = source.loadUnaligned(fromByteOffset: count &- 16, as: SIMD16<UInt8>.self)
      storeBytes(of: a, toByteOffset: 0, as: SIMD16<UInt8>.self)
      storeBytes(of: b, toByteOffset: head, as: SIMD16<UInt8>.self)
      storeBytes(of: c, toByteOffset: tail, as: SIMD16<UInt8>.self)
      storeBytes(of: d, toByteOffset: count &- 16, as: SIMD16<UInt8>.self)
    } else {
      copyMemory(from: source, byteCount: count)
    }
  }
}
