import Dataplane

#if canImport(Glibc)
  import Glibc
#endif

/// `Bench gen`: writes access.pcap, underlay.pcap and a matching site config.
enum Generator {
  struct Output {
    var accessPath: String
    var underlayPath: String
    var configPath: String
    var accessFrames: Int
    var underlayFrames: Int
  }

  /// Timestamps: 1 µs apart from a fixed epoch, so that the files are reproducible.
  static let epochNanos: UInt64 = 1_700_000_000 * 1_000_000_000

  static func write(_ plan: TrafficPlan, directory: String, configPath: String? = nil) throws -> Output {
    try plan.validate()
    try makeDirectory(directory)
    let access = directory + "/access.pcap"
    let underlay = directory + "/underlay.pcap"
    let config = configPath ?? directory + "/site.toml"
    let accessFrames = plan.accessFrames()
    try writePcap(access, accessFrames)
    let underlayFrames = plan.underlayFrames()
    try writePcap(underlay, underlayFrames)
    try writeText(config, plan.siteConfig())
    return Output(
      accessPath: access, underlayPath: underlay, configPath: config, accessFrames: accessFrames.count,
      underlayFrames: underlayFrames.count)
  }

  static func writePcap(_ path: String, _ frames: [[UInt8]]) throws {
    let writer = try PcapWriter(path: path, resolution: .microseconds)
    for (index, frame) in frames.enumerated() {
      try writer.write(frame, timestampNanos: epochNanos + UInt64(index) * 1_000)
    }
    try writer.close()
  }

  static func makeDirectory(_ path: String) throws {
    var status = stat()
    if stat(path, &status) == 0 {
      guard status.st_mode & S_IFMT == S_IFDIR else { throw BenchError.failed("\(path) is not a directory") }
      return
    }
    // mkdir -p
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
      prefix += part
      if stat(prefix, &status) != 0 && mkdir(prefix, 0o755) != 0 && errno != EEXIST {
        throw BenchError.failed("cannot create \(prefix): \(String(cString: strerror(errno)))")
      }
      prefix += "/"
    }
  }

  static func writeText(_ path: String, _ text: String) throws {
    guard let file = fopen(path, "w") else {
      throw BenchError.failed("cannot write \(path): \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    if fputs(text, file) < 0 { throw BenchError.failed("cannot write \(path)") }
  }
}
