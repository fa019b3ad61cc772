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

  func testInitialValueIsAddedInHostOrder() {
    let bytes: [UInt8] = [0x12, 0x34, 0x56, 0x78, 0x9A]
    bytes.withUnsafeBytes { raw in
      let sum = OnesComplement.sum(raw.baseAddress!, count: raw.count, initial: 0x0001_0000)
      XCTAssertEqual(UInt16(OnesComplement.fold16(sum)), InternetChecksum.sum(raw, initial: 1))
    }
  }
}
