import CPacket
import Dataplane
import Foundation
import XCTest

final class PcapTraceTests: XCTestCase {
  /// Frames of assorted lengths (including odd ones and a jumbo) with distinct contents.
  private func sampleFrames() -> [[UInt8]] {
    [14, 60, 61, 64, 127, 1514, 9000].enumerated().map { index, length in
      (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) }
    }
  }

  private let baseTimestamp: UInt64 = 1_700_000_000_123_456_789

  private func writeSample(to path: String, resolution: PcapWriter.TimestampResolution = .nanoseconds)
    throws -> [[UInt8]]
  {
    let frames = sampleFrames()
    let writer = try PcapWriter(path: path, resolution: resolution)
    for (index, frame) in frames.enumerated() {
      try writer.write(frame, timestampNanos: baseTimestamp + UInt64(index) * 1_001)
    }
    try writer.close()
    return frames
  }

  func testWrittenFramesReadBackByteExactWithNanosecondTimestamps() throws {
    let path = try makeScratchDirectory(for: self) + "/roundtrip.pcap"
    let frames = try writeSample(to: path)

    let trace = try PcapTrace(path: path)
    XCTAssertEqual(trace.path, path)
    XCTAssertEqual(trace.count, frames.count)
    for (index, frame) in frames.enumerated() {
      XCTAssertEqual(trace.frameArray(at: index), frame, "frame \(index)")
      XCTAssertEqual(trace.capturedLengths[index], frame.count)
      XCTAssertEqual(trace.originalLengths[index], frame.count)
      XCTAssertFalse(trace.isTruncated(index))
      XCTAssertEqual(trace.timestampsNanos[index], baseTimestamp + UInt64(index) * 1_001)
      XCTAssertEqual(trace.offsets[index] % PcapTrace.frameAlignment, 0)
      XCTAssertEqual(Int(bitPattern: trace.frame(at: index).baseAddress) % 64, 0)
    }
    XCTAssertEqual(trace.truncatedFrameCount, 0)
    // One buffer: frames are laid out in order, each padded to the alignment.
    XCTAssertEqual(trace.offsets, trace.offsets.sorted())
    XCTAssertLessThanOrEqual(trace.offsets.last.map { $0 + 9000 } ?? 0, trace.frameBytesCount)
  }

  func testMicrosecondFilesAreScaledToNanoseconds() throws {
    let path = try makeScratchDirectory(for: self) + "/micro.pcap"
    let frames = try writeSample(to: path, resolution: .microseconds)
    let trace = try PcapTrace(path: path)
    XCTAssertEqual(trace.count, frames.count)
    for index in 0..<frames.count {
      let written = baseTimestamp + UInt64(index) * 1_001
      XCTAssertEqual(trace.timestampsNanos[index], written / 1_000 * 1_000)
    }
  }

  func testFramesBeyondSnapshotLengthAreFlaggedTruncated() throws {
    let path = try makeScratchDirectory(for: self) + "/snap.pcap"
    let writer = try PcapWriter(path: path, snapshotLength: 64)
    try writer.write([UInt8](repeating: 0xAB, count: 100), timestampNanos: 1)
    try writer.write([UInt8](repeating: 0xCD, count: 64), timestampNanos: 2)
    try writer.close()

    let trace = try PcapTrace(path: path)
    XCTAssertEqual(trace.capturedLengths, [64, 64])
    XCTAssertEqual(trace.originalLengths, [100, 64])
    XCTAssertTrue(trace.isTruncated(0))
    XCTAssertFalse(trace.isTruncated(1))
    XCTAssertEqual(trace.truncatedFrameCount, 1)
    XCTAssertEqual(trace.frameArray(at: 0), [UInt8](repeating: 0xAB, count: 64))
  }

  func testEmptyCaptureLoadsWithNoFrames() throws {
    let path = try makeScratchDirectory(for: self) + "/empty.pcap"
    try PcapWriter(path: path).close()
    let trace = try PcapTrace(path: path)
    XCTAssertEqual(trace.count, 0)
  }

  func testPcapngInputLoadsTheSameFrames() throws {
    let directory = try makeScratchDirectory(for: self)
    let pcapPath = directory + "/source.pcap"
    let pcapngPath = directory + "/converted.pcapng"
    let frames = try writeSample(to: pcapPath)

    if let editcap = ExternalTool.locate("editcap") {
      let output = try ExternalTool.run(editcap, ["-F", "pcapng", pcapPath, pcapngPath])
      XCTAssertEqual(output.status, 0, output.standardError)
    } else if let tshark = ExternalTool.locate("tshark") {
      let output = try ExternalTool.run(tshark, ["-r", pcapPath, "-F", "pcapng", "-w", pcapngPath])
      XCTAssertEqual(output.status, 0, output.standardError)
    } else {
      throw XCTSkip("neither editcap nor tshark is installed to produce a pcapng file")
    }
    // Make sure the conversion really produced pcapng (Section Header Block 0x0A0D0D0A).
    let magic = try XCTUnwrap(FileManager.default.contents(atPath: pcapngPath)?.prefix(4))
    XCTAssertEqual(Array(magic), [0x0A, 0x0D, 0x0D, 0x0A])

    let trace = try PcapTrace(path: pcapngPath)
    XCTAssertEqual(trace.count, frames.count)
    for (index, frame) in frames.enumerated() {
      XCTAssertEqual(trace.frameArray(at: index), frame)
      XCTAssertEqual(trace.timestampsNanos[index], baseTimestamp + UInt64(index) * 1_001)
    }
  }

  func testMissingFileIsATypedError() {
    let path = "/nonexistent/vxswitch/missing.pcap"
    XCTAssertThrowsError(try PcapTrace(path: path)) { error in
      XCTAssertEqual(error as? PcapError, .fileNotFound(path: path))
      XCTAssertTrue(String(describing: error).contains(path))
    }
  }

  func testDirectoryIsATypedError() throws {
    let directory = try makeScratchDirectory(for: self)
    XCTAssertThrowsError(try PcapTrace(path: directory)) { error in
      guard case .cannotOpen(let path, _)? = error as? PcapError else {
        return XCTFail("expected cannotOpen, got \(error)")
      }
      XCTAssertEqual(path, directory)
    }
  }

  func testGarbageFileIsNotACaptureError() throws {
    let directory = try makeScratchDirectory(for: self)
    for (name, contents) in [
      ("garbage.pcap", Array("this is not a capture, just text that is long enough".utf8)),
      ("zero-length.pcap", []),
      ("short.pcap", [0xD4, 0xC3]),
    ] as [(String, [UInt8])] {
      let path = directory + "/" + name
      XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(contents)))
      XCTAssertThrowsError(try PcapTrace(path: path), name) { error in
        guard case .notACaptureFile(let errorPath, let reason)? = error as? PcapError else {
          return XCTFail("\(name): expected notACaptureFile, got \(error)")
        }
        XCTAssertEqual(errorPath, path)
        XCTAssertFalse(reason.isEmpty)
        XCTAssertTrue(String(describing: error).contains(path))
      }
    }
  }

  func testRecordCutShortIsAReadFailureAfterTheGoodFrames() throws {
    let path = try makeScratchDirectory(for: self) + "/cut.pcap"
    _ = try writeSample(to: path)
    // Chop the file in the middle of the last (9000-byte) record.
    let contents = try XCTUnwrap(FileManager.default.contents(atPath: path))
    try contents.prefix(contents.count - 100).write(to: URL(fileURLWithPath: path))
    XCTAssertThrowsError(try PcapTrace(path: path)) { error in
      guard case .readFailed(let errorPath, let framesRead, _)? = error as? PcapError else {
        return XCTFail("expected readFailed, got \(error)")
      }
      XCTAssertEqual(errorPath, path)
      XCTAssertEqual(framesRead, self.sampleFrames().count - 1)
    }
  }

  func testNonEthernetLinkTypeIsRejected() throws {
    let path = try makeScratchDirectory(for: self) + "/raw-ip.pcap"
    // Written straight through libpcap: PcapWriter only produces Ethernet captures.
    let dead = try XCTUnwrap(pcap_open_dead(DLT_RAW, 65535))
    defer { pcap_close(dead) }
    let dumper = try XCTUnwrap(pcap_dump_open(dead, path))
    var header = pcap_pkthdr()
    var packet: [UInt8] = [0x45, 0, 0, 20] + [UInt8](repeating: 0, count: 16)
    header.caplen = UInt32(packet.count)
    header.len = UInt32(packet.count)
    pcap_dump(UnsafeMutablePointer<UInt8>(dumper), &header, &packet)
    pcap_dump_close(dumper)

    XCTAssertThrowsError(try PcapTrace(path: path)) { error in
      guard case .unsupportedLinkType(let errorPath, let linkType, let name)? = error as? PcapError
      else { return XCTFail("expected unsupportedLinkType, got \(error)") }
      XCTAssertEqual(errorPath, path)
      XCTAssertEqual(linkType, DLT_RAW)
      XCTAssertEqual(name, "RAW")
      XCTAssertTrue(String(describing: error).contains(path))
    }
  }

  func testMergeOrdersByTimestampAndIsStableForTies() throws {
    let directory = try makeScratchDirectory(for: self)
    func trace(_ name: String, _ timestamps: [UInt64]) throws -> PcapTrace {
      let path = directory + "/" + name
      let writer = try PcapWriter(path: path)
      for timestamp in timestamps { try writer.write([0, 1, 2], timestampNanos: timestamp) }
      try writer.close()
      return try PcapTrace(path: path)
    }
    let portA = try trace("a.pcap", [10, 20, 20, 40])
    let portB = try trace("b.pcap", [5, 20, 30])
    let empty = try trace("c.pcap", [])

    let merged = PcapTrace.merge([(tag: 7, trace: portA), (tag: 3, trace: portB), (tag: 9, trace: empty)])
    let pairs = merged.map { [$0.tag, $0.index] }
    XCTAssertEqual(
      pairs,
      [[3, 0], [7, 0], [7, 1], [7, 2], [3, 1], [3, 2], [7, 3]],
      "ties at 20 go to the trace listed first (tag 7), each trace keeps its order")

    // Listing B first flips only the tie.
    let flipped = PcapTrace.merge([(tag: 3, trace: portB), (tag: 7, trace: portA)]).map {
      [$0.tag, $0.index]
    }
    XCTAssertEqual(flipped, [[3, 0], [7, 0], [3, 1], [7, 1], [7, 2], [3, 2], [7, 3]])
    XCTAssertTrue(PcapTrace.merge([]).isEmpty)
  }

  func testMergeKeepsFileOrderWhenATraceGoesBackInTime() throws {
    let directory = try makeScratchDirectory(for: self)
    let path = directory + "/backwards.pcap"
    let writer = try PcapWriter(path: path)
    for timestamp: UInt64 in [100, 50, 200] { try writer.write([1], timestampNanos: timestamp) }
    try writer.close()
    let trace = try PcapTrace(path: path)
    XCTAssertEqual(PcapTrace.merge([(tag: 0, trace: trace)]).map(\.index), [0, 1, 2])
  }
}
