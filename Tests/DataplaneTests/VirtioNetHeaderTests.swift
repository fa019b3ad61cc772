import XCTest

@testable import Dataplane

/// The `virtio_net_hdr` written in front of frames with nothing left to do.
final class VirtioNetHeaderTests: XCTestCase {
  /// No segmentation, no checksum, and a header length that the kernel accepts (never
  /// past the frame: `tpacket_snd` refuses that, and with `PACKET_LOSS` the frame would
  /// vanish) and that covers the whole of a frame up to 256 bytes.
  func testPlainHeaderAsksForTheFrameCopiedUpToTheLimit() {
    let memory = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 8)
    defer { memory.deallocate() }
    for length in [14, 42, 60, 64, 255, 256, 257, 1514, 9014, 65_535] {
      memory.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 16)
      VirtioNetHeader.plain(at: memory, frameLength: length)
      let header = VirtioNetHeader(at: memory)
      XCTAssertEqual(header.flags, 0, "length \(length)")
      XCTAssertEqual(header.gsoType, 0, "length \(length)")
      XCTAssertEqual(header.gsoSize, 0, "length \(length)")
      XCTAssertEqual(header.checksumStart, 0, "length \(length)")
      XCTAssertEqual(header.checksumOffset, 0, "length \(length)")
      XCTAssertEqual(Int(header.headerLength), min(length, 256), "length \(length)")
      XCTAssertLessThanOrEqual(Int(header.headerLength), length)
      // The ten header bytes only: what follows is the frame's.
      XCTAssertEqual(memory.load(fromByteOffset: 10, as: UInt8.self), 0xA5)
    }
  }
}
