import Foundation

/// Offline replay: frames from pcap files enter named ports (several files merged by
/// timestamp), run through the same `SwitchCore` and `Pipeline` as the live switch, and
/// every frame a port emits is written to `DIR/PORT.pcap`.
///
/// Batches are runs of consecutive frames (in merged order) on the same port within the
/// same second, at most `FrameVector.capacity` long; learning is applied after every
/// batch and the switch clock is the capture clock (seconds since the first frame, from
/// 1), so aging follows capture time. An output frame carries the timestamp of the last
/// input frame of the batch that produced it.
public struct Replay {
  public struct Input {
    public var port: String
    public var path: String
    public init(port: String, path: String) {
      self.port = port
      self.path = path
    }
  }

  public enum Failure: Error, CustomStringConvertible {
    case unknownPort(String, known: [String])
    case unreadable(PcapError)
    case cannotWrite(PcapError)
    case outputDirectory(String, String)
    public var description: String {
      switch self {
      case .unknownPort(let port, let known):
        return "port '\(port)' is not in the configuration (ports: \(known.joined(separator: ", ")))"
      case .unreadable(let error): return error.description
      case .cannotWrite(let error): return error.description
      case .outputDirectory(let path, let reason): return "cannot create output directory \(path): \(reason)"
      }
    }
  }

  public typealias Report = StatisticsReport

  public let config: SiteConfig
  public let inputs: [Input]
  public let outputDirectory: String

  public init(config: SiteConfig, inputs: [Input], outputDirectory: String) {
    self.config = config
    self.inputs = inputs
    self.outputDirectory = outputDirectory
  }

  public func run() throws -> Report {
    var writers: [String: PcapWriter] = [:]
    var timestamp: UInt64 = 0
    var writeError: PcapError?
    do {
      try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
    } catch {
      throw Failure.outputDirectory(outputDirectory, "\(error.localizedDescription)")
    }
    let names = SwitchCore.interfaceNames(of: config)
    for name in names {
      do throws(PcapError) {
        writers[name] = try PcapWriter(path: outputDirectory + "/" + name + ".pcap", resolution: .nanoseconds)
      } catch {
        throw Failure.cannotWrite(error)
      }
    }
    let sw = OfflineSwitch(config: config) { name in
      .handler { frame in
        do throws(PcapError) {
          try writers[name]?.write(bytes: frame, timestampNanos: timestamp)
        } catch {
          if writeError == nil { writeError = error }
        }
      }
    }
    var traces: [(tag: Int, trace: PcapTrace)] = []
    var interfaceOfInput: [Int] = []
    for (position, input) in inputs.enumerated() {
      guard let interface = sw.interfaceIndex(input.port) else {
        throw Failure.unknownPort(input.port, known: names)
      }
      do throws(PcapError) {
        traces.append((position, try PcapTrace(path: input.path)))
        interfaceOfInput.append(interface)
      } catch {
        throw Failure.unreadable(error)
      }
    }
    let order = PcapTrace.merge(traces)
    var batch: [(UnsafeMutableRawPointer, Int)] = []
    batch.reserveCapacity(FrameVector.capacity)
    var batchInterface = -1
    var batchSecond: UInt32 = 0
    func flushBatch() {
      guard !batch.isEmpty else { return }
      batch.withUnsafeBufferPointer { sw.forward(interface: batchInterface, frames: $0, now: batchSecond) }
      batch.removeAll(keepingCapacity: true)
    }
    let origin = order.first.map { traces[$0.tag].trace.timestampsNanos[$0.index] } ?? 0
    for (tag, index) in order {
      let trace = traces[tag].trace
      let interface = interfaceOfInput[tag]
      let time = trace.timestampsNanos[index]
      let second = UInt32(truncatingIfNeeded: (time &- origin) / 1_000_000_000) &+ 1
      if interface != batchInterface || second != batchSecond || batch.count == FrameVector.capacity {
        flushBatch()
        batchInterface = interface
        batchSecond = second
      }
      if trace.isTruncated(index) {
        sw.core.statistics.add(Counter.drop(.truncated), 1)
        continue
      }
      timestamp = time
      let frame = trace.frame(at: index)
      batch.append((UnsafeMutableRawPointer(mutating: frame.baseAddress!), frame.count))
    }
    flushBatch()
    for writer in writers.values {
      do throws(PcapError) { try writer.close() } catch { if writeError == nil { writeError = error } }
    }
    if let writeError { throw Failure.cannotWrite(writeError) }
    return Self.report(core: sw.core, outputDirectory: outputDirectory)
  }

  static func report(core: SwitchCore, outputDirectory: String?) -> Report {
    core.statisticsReport(outputDirectory: outputDirectory)
  }
}
