import Foundation

/// The receive work of one veth in a NAPI kthread of its own, pinned to the measured CPU.
///
/// A veth has a NAPI instance only while GRO is on or an XDP program is attached; without
/// one, what it receives is processed in the sender's softirq, on the sender's CPU, and a
/// benchmark charges the switch's receive work to the generator. With `threaded` set, the
/// kernel runs the instance in a kthread named `napi/IF-ID`, which is pinned here, so that
/// the measured CPU's busy time holds it whatever system runs there.
struct ThreadedNAPI {
  /// What gives the veth its NAPI instance.
  enum Mode: String, Codable, CaseIterable {
    /// GRO on: every frame goes through GRO, which merges nothing at 64 bytes of UDP.
    case gro
    /// An XDP program that passes every frame (`XDPPassProgram`), GRO off: the same NAPI
    /// poll without the GRO attempt; the peer's TSO is turned off by the kernel.
    case xdp
  }

  let namespace: String
  let interface: String
  let cpu: Int
  let mode: Mode
  /// The instance's kthreads (one per receive queue).
  let kthreads: [Int32]

  /// Gives `interface` in `namespace` a NAPI instance (`mode`), makes it threaded and pins
  /// the kthreads that appear to `cpu`. `xdpObject`: the pass program, for `.xdp`.
  static func enable(
    namespace: String, interface: String, cpu: Int, mode: Mode, xdpObject: String?
  ) throws -> ThreadedNAPI {
    let before = Set(napiKthreads())
    switch mode {
    case .gro:
      try Shell.check(["ip", "netns", "exec", namespace, "ethtool", "-K", interface, "gro", "on"])
    case .xdp:
      guard let xdpObject else { throw BenchError.failed("no XDP program for \(namespace)/\(interface)") }
      try Shell.check(["ip", "netns", "exec", namespace, "ethtool", "-K", interface, "gro", "off"])
      try Shell.check([
        "ip", "-n", namespace, "link", "set", "dev", interface, "xdpdrv", "obj", xdpObject, "sec", "xdp",
      ])
    }
    try Shell.check([
      "ip", "netns", "exec", namespace, "sh", "-c", "echo 1 > /sys/class/net/\(interface)/threaded",
    ])
    let fresh = napiKthreads().filter {
      !before.contains($0) && comm($0)?.hasPrefix("napi/\(interface)-") == true
    }
    guard !fresh.isEmpty else {
      throw BenchError.failed(
        "\(namespace)/\(interface): no NAPI kthread after \(mode.rawValue) and threaded = 1")
    }
    for pid in fresh { try Shell.check(["taskset", "-pc", String(cpu), String(pid)]) }
    let napi = ThreadedNAPI(namespace: namespace, interface: interface, cpu: cpu, mode: mode, kthreads: fresh)
    if let problem = napi.problem() { throw BenchError.failed(problem) }
    return napi
  }

  /// What is wrong with the set-up now (checked before and after every measurement: a
  /// system under test that turns GRO off removes the kthread), nil when it holds.
  func problem() -> String? {
    let threaded = Shell.run([
      "ip", "netns", "exec", namespace, "cat", "/sys/class/net/\(interface)/threaded",
    ]).output.trimmingCharacters(in: .whitespacesAndNewlines)
    guard threaded == "1" || threaded == "enabled" else {
      return "\(namespace)/\(interface): threaded NAPI is off (\(threaded))"
    }
    if mode == .xdp {
      let link = Shell.run(["ip", "-n", namespace, "-d", "link", "show", "dev", interface]).output
      guard link.contains("prog/xdp") else { return "\(namespace)/\(interface): the XDP program is gone" }
    }
    for pid in kthreads {
      guard Self.comm(pid)?.hasPrefix("napi/\(interface)-") == true else {
        return "\(namespace)/\(interface): NAPI kthread \(pid) is gone (GRO turned off?)"
      }
      guard CoreBusyTime.affinity(of: pid) == String(cpu) else {
        return
          "\(namespace)/\(interface): NAPI kthread \(pid) runs on CPUs \(CoreBusyTime.affinity(of: pid) ?? "?"), not \(cpu)"
      }
    }
    return nil
  }

  /// CPU time of the kthreads so far (ns, /proc/PID/schedstat): a measurement checks that
  /// the receive work really ran there.
  func runTime() -> UInt64 {
    kthreads.reduce(0) { total, pid in
      let text = (try? String(contentsOfFile: "/proc/\(pid)/schedstat", encoding: .utf8)) ?? ""
      return total &+ (text.split(separator: " ").first.flatMap { UInt64($0) } ?? 0)
    }
  }

  /// Every `napi/*` kthread of the machine.
  static func napiKthreads() -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { comm($0)?.hasPrefix("napi/") == true }
  }

  static func comm(_ pid: Int32) -> String? {
    (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
      .trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

/// The XDP program of `ThreadedNAPI.Mode.xdp`: returns XDP_PASS for every frame, so the
/// veth polls in NAPI and hands every frame on to the stack unchanged. Compiled at run time
/// with the toolchain's clang (BPF target), loaded by `ip link` (iproute2 with libbpf).
enum XDPPassProgram {
  static let source = """
    __attribute__((section("xdp"), used)) int xdp_pass(void *context) { return 2; /* XDP_PASS */ }
    char program_license[] __attribute__((section("license"), used)) = "GPL";

    """

  /// The largest MTU a veth's peer may have while the veth carries an XDP program
  /// (a frame must fit one page with XDP's headroom: about 3500 bytes with 4 KiB pages).
  static let largestMTU = 3000

  /// Compiles the program into `directory` and returns the object's path.
  static func compile(into directory: String) throws -> String {
    let sourcePath = directory + "/xdp-pass.c"
    let objectPath = directory + "/xdp-pass.o"
    try Generator.writeText(sourcePath, source)
    guard let clang = clangPath() else {
      throw BenchError.failed("--receive-napi xdp needs clang with the BPF target (the Swift toolchain's)")
    }
    try Shell.check([clang, "-O2", "-target", "bpf", "-c", sourcePath, "-o", objectPath])
    return objectPath
  }

  /// clang on PATH, else the one beside swift (toolchains ship it).
  static func clangPath() -> String? {
    if Shell.exists("clang") { return "clang" }
    let swift = Shell.run(["sh", "-c", "command -v swift"]).output.trimmingCharacters(
      in: .whitespacesAndNewlines)
    guard !swift.isEmpty else { return nil }
    let resolved = URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent()
    let candidate = resolved.appendingPathComponent("clang").path
    return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
  }
}
