import Foundation

/// The receive work of one veth in a NAPI kthread of its own, pinned to the measured CPU.
///
/// A veth has a NAPI instance only while GRO is on (or XDP is attached); without one, what
/// it receives is processed in the sender's softirq, on the sender's CPU, and a benchmark
/// charges the switch's receive work to the generator. With GRO on and `threaded` set,
/// the kernel runs the instance in a kthread named `napi/IF-ID`, which is pinned here, so
/// that the measured CPU's busy time holds it whatever system runs there.
struct ThreadedNAPI {
  let namespace: String
  let interface: String
  let cpu: Int
  /// The instance's kthreads (one per receive queue).
  let kthreads: [Int32]

  /// Turns GRO and threaded NAPI on for `interface` in `namespace` and pins the kthreads
  /// that appear to `cpu`.
  static func enable(namespace: String, interface: String, cpu: Int) throws -> ThreadedNAPI {
    let before = Set(napiKthreads())
    try Shell.check(["ip", "netns", "exec", namespace, "ethtool", "-K", interface, "gro", "on"])
    try Shell.check([
      "ip", "netns", "exec", namespace, "sh", "-c", "echo 1 > /sys/class/net/\(interface)/threaded",
    ])
    let fresh = napiKthreads().filter {
      !before.contains($0) && comm($0)?.hasPrefix("napi/\(interface)-") == true
    }
    guard !fresh.isEmpty else {
      throw BenchError.failed("\(namespace)/\(interface): no NAPI kthread after GRO on and threaded = 1")
    }
    for pid in fresh { try Shell.check(["taskset", "-pc", String(cpu), String(pid)]) }
    let napi = ThreadedNAPI(namespace: namespace, interface: interface, cpu: cpu, kthreads: fresh)
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
