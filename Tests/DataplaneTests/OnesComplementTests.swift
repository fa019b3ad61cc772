import XCTest

@testable import Dataplane

/// The packet path's word-at-a-time one's-complement sum against the byte-wise RFC 1071
/// reference, over every length and alignment a frame can have, including runs of 0xFF
/// bytes that carry out of the 64-bit accumulator on every add.
final class OnesComplementTests: XCTestCase {
  func testWordSumMatchesTheByteWiseReference() {
    var generator = SplitMix64(seed: 0x1071)
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 64)
    defer { buffer.deallocate() }
    for pattern in 0..<3 {
      for index in 0..<2048 {
        let byte: UInt8
        switch pattern {
        case 0: byte = UInt8.random(in: 0...255, using: &generator)
        case 1: byte = 0xFF
        default: byte = index % 7 == 0 ? 0x00 : 0xFF
        }
        buffer.storeBytes(of: byte, toByteOffset: index, as: UInt8.self)
      }
      for alignment in 0..<8 {
        for count in Array(0...300) + [1499, 1500, 1514, 1518, 2040] {
          let start = UnsafeRawPointer(buffer + alignment)
          let expected = InternetChecksum.sum(UnsafeRawBufferPointer(start: start, count: count))
          let sum = OnesComplement.sum(start, count: count)
          XCTAssertEqual(
            UInt16(OnesComplement.fold16(sum)), expected,
            "pattern \(pattern), alignment \(alignment), \(count) bytes")
        }
      }
    }
  }

  /// The sum taken while copying (`DeferredPayload`) is the sum, and the copy is exact:
  /// every count from 0 to 300 and around a segment's size, at eight alignments of
  /// source and destination, with all-ones bytes (the most carries) and random ones.
  func testSumWhileCopyingMatchesTheSumAndCopiesEveryByte() {
    var generator = SplitMix64(seed: 0xC0B7)
    let source = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 64)
    let destination = UnsafeMutableRawPointer.allocate(byteCount: 2048 + 16, alignment: 64)
    defer {
      source.deallocate()
      destination.deallocate()
    }
    for pattern in 0..<2 {
      for index in 0..<2048 {
        let byte = pattern == 0 ? UInt8.random(in: 0...255, using: &generator) : 0xFF
        source.storeBytes(of: byte, toByteOffset: index, as: UInt8.self)
      }
      for alignment in 0..<8 {
        for count in Array(0...300) + [1447, 1448, 1500, 2000] {
          let from = UnsafeRawPointer(source + alignment)
          let to = destination + (7 - alignment)
          to.initializeMemory(as: UInt8.self, repeating: 0xA5, count: count + 8)
          let copied = OnesComplement.nativeSum(copying: from, to: to, count: count, initial: 0x1234)
          XCTAssertEqual(
            OnesComplement.fold16(copied),
            OnesComplement.fold16(OnesComplement.nativeSum(from, count: count, initial: 0x1234)),
            "pattern \(pattern), alignment \(alignment), \(count) bytes")
          XCTAssertTrue(
            memcmp(from, to, count) == 0 && to.load(fromByteOffset: count, as: UInt8.self) == 0xA5,
            "copy of \(count) bytes at alignment \(alignment)")
        }
      }
    }
  }

  func testInitialValueIsAddedInHostOrder() {
    let bytes: [UInt8] = [0x12, 0x34, 0x56, 0x78, 0x9A]
    bytes.withUnsafeBytes { raw in
      let sum = OnesComplement.sum(raw.baseAddress!, count: raw.count, initial: 0x0001_0000)
      XCTAssertEqual(UInt16(OnesComplement.fold16(sum)), InternetChecksum.sum(raw, initial: 1))
    }
  }

  /// The two-step fold against folding 16 bits at a time, at the edges (sums of all ones,
  /// carries out of bit 31 and bit 15, 2^32 and 2^48) and over random values.
  func testFoldMatchesFoldingSixteenBitsAtATime() {
    func stepwise(_ value: UInt64) -> UInt64 {
      var sum = value
      while sum > 0xFFFF { sum = (sum & 0xFFFF) &+ (sum &>> 16) }
      return sum
    }
    var values: [UInt64] = [
      0, 1, 0xFFFF, 0x1_0000, 0x1_FFFE, 0xFFFF_FFFF, 0x1_0000_0000, 0xFFFF_0001, 0x0001_FFFF,
      0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_0000_0001, 0x0000_FFFF_FFFF_0000, 0x8000_0000_8000_0000,
      0x1_0000_0000_0000, 0xFFFE_0001_FFFF_0000,
    ]
    for shift in 0..<64 { values += [1 << UInt64(shift), (1 << UInt64(shift)) &- 1] }
    var generator = SplitMix64(seed: 0xF01D)
    for _ in 0..<100_000 {
      let value = UInt64.random(in: 0...UInt64.max, using: &generator)
      // Random values, and sums the size a frame gives (at most about 2^29).
      values += [value, value & 0x1FFF_FFFF, value & 0xFFFF_FFFF]
    }
    for value in values {
      XCTAssertEqual(OnesComplement.fold16(value), stepwise(value), "fold of \(String(value, radix: 16))")
    }
  }
}
