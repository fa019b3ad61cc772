import Dataplane
import Foundation
import XCTest

final class PcapWriterTests: XCTestCase {
  func testTcpdumpReadsTheWrittenFile() throws {
    let tcpdump = try ExternalTool.require("tcpdump")
    let path = try makeScratchDirectory(for: self) + "/for-tcpdump.pcap"
    let link = FrameBuilder.EthernetHeaderFields(
      destination: MACAddress(rawValue: 0x02_00_00_00_00_02),
      source: MACAddress(rawValue: 0x02_00_00_00_00_01))
    let frames = (0..<3).map { index in
      FrameBuilder.udpFrame(
        link: link, source: .v4(0x0A00_0001), destination: .v4(0x0A00_0002),
        sourcePort: 1000 + UInt16(index), destinationPort: 53, payload: [1, 2, 3])
    }
    let writer = try PcapWriter(path: path)
    for (index, frame) in frames.enumerated() {
      try writer.write(frame, timestampNanos: 1_600_000_000_000_000_000 + UInt64(index))
    }
    try writer.close()

    let output = try ExternalTool.run(tcpdump, ["-nn", "-tt", "-r", path])
    XCTAssertEqual(output.status, 0, output.standardError)
    let lines = output.standardOutput.split(separator: "\n")
    XCTAssertEqual(lines.count, 3, output.standardOutput)
    XCTAssertTrue(lines.first?.contains("10.0.0.1.1000 > 10.0.0.2.53") ?? false, output.standardOutput)
    XCTAssertTrue(lines.first?.hasPrefix("1600000000.") ?? false, output.standardOutput)
  }

  func testFlushMakesFramesVisibleBeforeClose() throws {
    let path = try makeScratchDirectory(for: self) + "/flush.pcap"
    let writer = try PcapWriter(path: path)
    try writer.write([UInt8](repeating: 1, count: 60), timestampNanos: 5)
    try writer.flush()
    let trace = try PcapTrace(path: path)
    XCTAssertEqual(trace.count, 1)
    try writer.close()
  }

  func testDeinitClosesTheFile() throws {
    let path = try makeScratchDirectory(for: self) + "/deinit.pcap"
    do {
      let writer = try PcapWriter(path: path)
      try writer.write([UInt8](repeating: 2, count: 42), timestampNanos: 9)
    }
    let trace = try PcapTrace(path: path)
    XCTAssertEqual(trace.count, 1)
    XCTAssertEqual(trace.timestampsNanos, [9])
  }

  func testWriteAfterCloseIsATypedError() throws {
    let path = try makeScratchDirectory(for: self) + "/closed.pcap"
    let writer = try PcapWriter(path: path)
    try writer.close()
    try writer.close()  // idempotent
    XCTAssertThrowsError(try writer.write([1, 2, 3], timestampNanos: 0)) { error in
      XCTAssertEqual(error as? PcapError, .writerClosed(path: path))
    }
  }

  func testUncreatableFileIsATypedErrorNamingThePath() {
    let path = "/nonexistent/vxswitch/out.pcap"
    XCTAssertThrowsError(try PcapWriter(path: path)) { error in
      guard case .cannotCreate(let errorPath, let reason)? = error as? PcapError else {
        return XCTFail("expected cannotCreate, got \(error)")
      }
      XCTAssertEqual(errorPath, path)
      XCTAssertFalse(reason.isEmpty)
      XCTAssertTrue(String(describing: error).contains(path))
    }
  }

  func testEmptyFrameIsWritten() throws {
    let path = try makeScratchDirectory(for: self) + "/empty-frame.pcap"
    let writer = try PcapWriter(path: path)
    try writer.write([], timestampNanos: 1)
    try writer.close()
    let trace = try PcapTrace(path: path)
    XCTAssertEqual(trace.count, 1)
    XCTAssertEqual(trace.capturedLengths, [0])
  }
}
