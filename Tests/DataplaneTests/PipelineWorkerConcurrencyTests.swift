import Dispatch
import Synchronization
import XCTest

@testable import Dataplane

/// Pipeline workers switching on their own threads while the control thread does what
/// the daemon's control plane does at the same time: applies learn events, ages, reloads
/// (taking VNI 200's index away and back), installs BGP routes and reads the tables.
/// CI runs it under ThreadSanitizer too, so every shared access between the workers and
/// the control plane (FDB seqlocks, snapshot cell, statistics, learn queues) is checked.
final class PipelineWorkerConcurrencyTests: XCTestCase {
  typealias S = TestSite

  static let workers = 2
  static let roundsPerWorker = 1500

  /// One worker: its own pipeline and in-memory ports, the same frames every round
  /// (copied from pristine bytes, as a receive ring would hand them over).
  final class Worker: @unchecked Sendable {
    // Safe: used by one thread at a time (built on the test's thread, then run by the
    // worker's thread only, then read after `DispatchGroup.wait`).
    let pipeline: Pipeline
    let ports: [MemoryPort]
    let inputs: [(interface: UInt16, frames: [[UInt8]])]
    private(set) var fed: [UInt64]

    init(core: SwitchCore, number: Int) {
      pipeline = core.makePipeline()
      ports = core.interfaces.map { MemoryPort(name: $0, output: .discard) }
      for (index, port) in ports.enumerated() {
        pipeline.attach(interface: UInt16(index), ring: port.transmitRing)
      }
      fed = Array(repeating: 0, count: ports.count)
      let interfaces = core.interfaces
      func index(_ name: String) -> UInt16 { UInt16(interfaces.firstIndex(of: name)!) }
      // Sources learnt on vm1 and in decapsulated frames; known and unknown destinations.
      let local = (0..<32).map { MACAddress(rawValue: 0x02aa_0100_0000 | UInt64(number) << 16 | UInt64($0)) }
      let remote = (0..<32).map { MACAddress(rawValue: 0x02bb_0100_0000 | UInt64(number) << 16 | UInt64($0)) }
      inputs = [
        (
          index("vm1"),
          local.map { S.ping(from: $0, to: S.hostB) } + local.map { S.ping(from: $0, to: remote[0]) }
        ),
        (index("vm2"), [S.ping(from: S.hostB, to: .broadcast)]),
        (index("vm3"), local.map { S.ping(from: $0, to: S.hostR) }),
        (index("eth1"), remote.map { S.vxlan(S.ping(from: $0, to: local[0])) }),
        (index("eth1"), remote.map { S.vxlan(S.ping(from: $0, to: S.hostR), vni: 200) }),
      ]
    }

    func run(rounds: Int, core: SwitchCore) {
      var vector = FrameVector()
      let buffers = inputs.map { input in
        input.frames.map { frame in
          (UnsafeMutableRawPointer.allocate(byteCount: max(frame.count, 64), alignment: 64), frame)
        }
      }
      defer { for set in buffers { for buffer in set { buffer.0.deallocate() } } }
      for round in 0..<rounds {
        for (position, input) in inputs.enumerated() {
          vector.count = 0
          vector.ingress = input.interface
          vector.now = UInt32(1 + round / 100)
          for (memory, frame) in buffers[position] {
            frame.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
            vector.append(memory, length: frame.count)
          }
          pipeline.process(&vector)
          for port in ports where port.transmitRing.pointee.pending > 0 { port.flushTransmit() }
          fed[Int(input.interface)] += UInt64(input.frames.count)
        }
      }
    }
  }

  func testWorkersSwitchWhileTheControlPlaneLearnsAgesReloadsAndInstallsRoutes() {
    let core = SwitchCore(config: S.config())
    let reused = ReloadIndexReuseTests.configReusingGreen()
    let workers = (0..<Self.workers).map { Worker(core: core, number: $0) }
    let group = DispatchGroup()
    let running = Atomic<Int>(Self.workers)
    for worker in workers {
      group.enter()
      Thread.detachNewThread {
        defer {
          running.subtract(1, ordering: .releasing)
          group.leave()
        }
        worker.run(rounds: Self.roundsPerWorker, core: core)
      }
    }
    var turns = 0
    var serial: UInt64 = 0
    while running.load(ordering: .acquiring) > 0 {
      turns += 1
      core.drainLearnQueues()
      serial &+= 1
      let routed = MACAddress(rawValue: 0x02dd_0000_0000 | (serial & 0xff))
      core.installRemoteMAC(vni: 100, mac: routed, vtep: S.remoteB)
      if turns % 4 == 0 { core.reload(turns % 8 == 0 ? S.config() : reused) }
      if turns % 16 == 0 { core.age(now: UInt32(turns / 16)) }
      _ = core.fdbRows(now: 1)
      _ = core.learnStatistics
    }
    group.wait()
    core.reload(S.config())
    core.drainLearnQueues()

    // Every frame a worker fed was counted once at ingress, on its interface.
    for interface in 0..<core.interfaces.count {
      let fed = workers.reduce(UInt64(0)) { $0 + $1.fed[interface] }
      XCTAssertEqual(
        core.statistics[Counter.rxFrames(interface)], fed, "frames received on \(core.interfaces[interface])")
    }
    XCTAssertGreaterThan(turns, 1, "the control plane ran while the workers switched")
    // And the switch still switches: hostB known on vm2, a frame to it goes there only.
    let check = OfflineSwitchHarness(core: core)
    check.forward("vm2", S.ping(from: S.hostB, to: .broadcast))
    XCTAssertEqual(check.transmitted("eth1"), 2, "the broadcast flooded to both VTEPs")
    check.forward("vm1", S.ping(from: S.hostA, to: S.hostB))
    XCTAssertEqual(check.transmitted("vm2"), 1)
    XCTAssertEqual(check.transmitted("eth1"), 0)
    for worker in workers { core.retire(worker.pipeline) }
    core.retire(check.pipeline)
  }
}

/// One more pipeline on an existing core, driven synchronously, counting what each port
/// transmits.
final class OfflineSwitchHarness {
  let core: SwitchCore
  let pipeline: Pipeline
  let ports: [MemoryPort]

  init(core: SwitchCore) {
    self.core = core
    pipeline = core.makePipeline()
    ports = core.interfaces.map { MemoryPort(name: $0, output: .collect) }
    for (index, port) in ports.enumerated() {
      pipeline.attach(interface: UInt16(index), ring: port.transmitRing)
    }
  }

  func forward(_ interface: String, _ frame: [UInt8]) {
    var vector = FrameVector()
    let memory = UnsafeMutableRawPointer.allocate(byteCount: max(frame.count, 64), alignment: 64)
    defer { memory.deallocate() }
    frame.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
    vector.ingress = UInt16(core.interfaces.firstIndex(of: interface)!)
    vector.now = 1
    vector.append(memory, length: frame.count)
    pipeline.process(&vector)
    for port in ports where port.transmitRing.pointee.pending > 0 { port.flushTransmit() }
    core.drainLearnQueues()
  }

  func transmitted(_ interface: String) -> Int {
    ports[core.interfaces.firstIndex(of: interface)!].takeTransmitted().count
  }
}
