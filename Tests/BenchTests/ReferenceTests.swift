import Dataplane
import Foundation
import XCTest

@testable import Bench

/// The C yardstick (`CReference`, `Bench reference`) does the pipeline's work: byte for
/// byte the same VXLAN frames from the same tables, and nothing for frames it does not
/// cover. Otherwise its instruction count would measure something else.
final class ReferenceTests: XCTestCase {
  var directory = ""

  override func setUpWithError() throws {
    directory = NSTemporaryDirectory() + "reference-tests-\(getpid())-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: directory)
  }

  func generated(_ size: FrameSize, underlay: Bool = false, family: UnderlayFamily = .ipv4) throws -> (
    config: SiteConfig, frames: [[UInt8]]
  ) {
    var plan = TrafficPlan()
    plan.sources = 13
    plan.destinations = 17
    plan.size = size
    plan.frames = 700
    plan.underlay = family
    let output = try Generator.write(plan, directory: directory + "/\(size)-\(underlay)-\(family)")
    let trace = try PcapTrace(path: underlay ? output.underlayPath : output.accessPath)
    let frames = (0..<trace.count).map { index in
      Array(
        UnsafeRawBufferPointer(
          start: trace.frameBytes + trace.offsets[index], count: trace.capturedLengths[index]))
    }
    return (try SiteConfig.load(path: output.configPath), frames)
  }

  /// `frames` as the pointer and length arrays of one vector, for `body`.
  func withVector<Result>(
    _ frames: [[UInt8]],
    _ body: (UnsafeMutablePointer<UnsafeMutableRawPointer>, UnsafeMutablePointer<Int32>) -> Result
  ) -> Result {
    let buffers = frames.map { frame -> UnsafeMutableRawPointer in
      let memory = UnsafeMutableRawPointer.allocate(byteCount: frame.count, alignment: 64)
      frame.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
      return memory
    }
    let pointers = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: frames.count)
    let lengths = UnsafeMutablePointer<Int32>.allocate(capacity: frames.count)
    defer {
      buffers.forEach { $0.deallocate() }
      pointers.deallocate()
      lengths.deallocate()
    }
    for (index, buffer) in buffers.enumerated() {
      pointers[index] = buffer
      lengths[index] = Int32(frames[index].count)
    }
    return body(pointers, lengths)
  }

  /// Runs `frames` through the reference in vectors of `FrameVector.capacity`; returns the
  /// the frames it wrote.
  func referenceOutput(_ reference: EncapsulationReference, _ frames: [[UInt8]]) -> [[UInt8]] {
    var written: [[UInt8]] = []
    var start = 0
    while start < frames.count {
      let batch = Array(frames[start..<min(frames.count, start + FrameVector.capacity)])
      let count = withVector(batch) { reference.encapsulate(frames: $0, lengths: $1, count: batch.count) }
      written += (0..<count).map { reference.frame(at: $0) }
      start += batch.count
    }
    return written
  }

  func testReferenceWritesThePipelinesFrames() throws {
    for family in [UnderlayFamily.ipv4, .ipv6] {
      for size in [FrameSize.fixed(64), .imix] {
        try checkEncapsulation(size, family)
      }
    }
  }

  func checkEncapsulation(_ size: FrameSize, _ family: UnderlayFamily) throws {
    let (config, frames) = try generated(size, family: family)
    let offline = OfflineSwitch(config: config)
    offline.forward(interface: "vm1", frames: frames)  // learns the sources
    _ = offline.takeOutput("eth1")
    offline.forward(interface: "vm1", frames: frames)
    let pipeline = offline.takeOutput("eth1")
    XCTAssertEqual(
      pipeline.count, frames.count, "\(family) \(size): every frame encapsulated by the pipeline")

    let inputs = try XCTUnwrap(offline.encapsulationReference(interface: "vm1"))
    let reference = EncapsulationReference(inputs)
    let written = referenceOutput(reference, frames)
    XCTAssertEqual(reference.others, 0, "\(family) \(size)")
    XCTAssertEqual(reference.ringFull, 0, "\(family) \(size)")
    XCTAssertEqual(written.count, pipeline.count, "\(family) \(size)")
    for (index, (ours, theirs)) in zip(written, pipeline).enumerated() where ours != theirs {
      XCTFail(
        "\(family) \(size): frame \(index) differs: reference \(ours.count) bytes, pipeline \(theirs.count)"
      )
      break
    }
  }

  func testReferenceLeavesWhatItDoesNotCover() throws {
    let (config, frames) = try generated(.fixed(64))
    let offline = OfflineSwitch(config: config)
    offline.forward(interface: "vm1", frames: frames)
    let reference = EncapsulationReference(try XCTUnwrap(offline.encapsulationReference(interface: "vm1")))
    var broadcast = frames[0]
    broadcast.replaceSubrange(0..<6, with: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    var unknown = frames[0]
    unknown.replaceSubrange(0..<6, with: [0x02, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE])
    var unlearnt = frames[0]
    unlearnt.replaceSubrange(6..<12, with: [0x02, 0xDD, 0xDD, 0xDD, 0xDD, 0xDD])
    var tagged = frames[0]
    tagged.replaceSubrange(12..<12, with: [0x81, 0x00, 0x00, 0x07])
    let runt = Array(frames[0][0..<13])
    let written = referenceOutput(reference, [broadcast, unknown, unlearnt, tagged, runt, frames[0]])
    XCTAssertEqual(written.count, 1)
    XCTAssertEqual(reference.others, 5)
  }

  func testDecapsulationReferenceDeliversThePipelinesFrames() throws {
    for family in [UnderlayFamily.ipv4, .ipv6] {
      for size in [FrameSize.fixed(64), .imix] {
        try checkDecapsulation(size, family)
      }
    }
  }

  func checkDecapsulation(_ size: FrameSize, _ family: UnderlayFamily) throws {
    let (config, frames) = try generated(size, underlay: true, family: family)
    let offline = OfflineSwitch(config: config)
    offline.forward(interface: "eth1", frames: frames)  // learns the remote sources
    for port in offline.ports { _ = port.takeTransmitted() }
    offline.forward(interface: "eth1", frames: frames)
    let pipeline = offline.ports.map { $0.takeTransmitted() }
    XCTAssertEqual(
      pipeline.reduce(0) { $0 + $1.count }, frames.count, "\(family) \(size): every frame delivered")

    let vni = try XCTUnwrap(config.bridgeDomains.first?.vni)
    let reference = DecapsulationReference(try XCTUnwrap(offline.decapsulationReference(vni: vni)))
    var written = Array(repeating: [[UInt8]](), count: offline.ports.count)
    var start = 0
    while start < frames.count {
      let batch = Array(frames[start..<min(frames.count, start + FrameVector.capacity)])
      _ = withVector(batch) { reference.decapsulate(frames: $0, lengths: $1, count: batch.count) }
      for interface in offline.ports.indices {
        written[interface] += reference.frames(interface: interface)
      }
      start += batch.count
    }
    XCTAssertEqual(reference.others, 0, "\(family) \(size)")
    XCTAssertEqual(reference.ringFull, 0, "\(family) \(size)")
    for interface in offline.ports.indices {
      XCTAssertEqual(
        written[interface].count, pipeline[interface].count, "\(family) \(size), interface \(interface)")
      XCTAssertEqual(reference.transmitted(interface: interface), UInt64(pipeline[interface].count))
      for (index, (ours, theirs)) in zip(written[interface], pipeline[interface]).enumerated()
      where ours != theirs {
        XCTFail("\(family) \(size): frame \(index) toward interface \(interface) differs")
        break
      }
    }
  }

  func testDecapsulationReferenceLeavesWhatItDoesNotCover() throws {
    let (config, frames) = try generated(.fixed(64), underlay: true)
    let offline = OfflineSwitch(config: config)
    offline.forward(interface: "eth1", frames: frames)
    let vni = try XCTUnwrap(config.bridgeDomains.first?.vni)
    let reference = DecapsulationReference(try XCTUnwrap(offline.decapsulationReference(vni: vni)))
    var badChecksum = frames[0]
    badChecksum[24] ^= 0x01
    var otherVNI = frames[0]
    otherVNI[48] ^= 0x01
    var otherPort = frames[0]
    otherPort[37] ^= 0x01
    var trailer = frames[0]
    trailer.append(0)
    var unknownDestination = frames[0]
    unknownDestination.replaceSubrange(50..<56, with: [0x02, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE])
    let batch = [badChecksum, otherVNI, otherPort, trailer, unknownDestination, frames[0]]
    let delivered = withVector(batch) { reference.decapsulate(frames: $0, lengths: $1, count: batch.count) }
    XCTAssertEqual(delivered, 1)
    XCTAssertEqual(reference.others, 5)
  }
}
