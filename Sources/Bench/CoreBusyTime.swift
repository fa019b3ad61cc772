import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The busy time of one CPU over an interval: wall clock minus the CPU's idle, iowait and
/// steal time (steal: the hypervisor ran another guest on this virtual CPU, which is no
/// system's work here; on a shared host it reached 40% of the wall clock under load). Idle time is what the scheduler measured (the tickless kernel accounts it
/// exactly), where the user, system and softirq fields of /proc/stat are sampled at each
/// tick and miss work that starts and ends between ticks: below saturation they
/// undercount a switch's receive work. Everything that ran on the CPU counts, whoever
/// caused it: the measured system's process, its NAPI kthreads, the softirq work of its
/// transmissions.
struct CoreBusyTime {
  let cpu: Int
  private let wall: Double
  private let idle: Double

  /// A snapshot of `cpu` now; nil when /proc/stat has no line for it.
  init?(cpu: Int) {
    guard let idle = Self.idleSeconds(cpu: cpu) else { return nil }
    self.cpu = cpu
    self.idle = idle
    wall = Self.monotonicSeconds()
  }

  /// Seconds the CPU was busy between `earlier` and this snapshot.
  func busySeconds(since earlier: CoreBusyTime) -> Double {
    max(0, (wall - earlier.wall) - (idle - earlier.idle))
  }

  static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

  /// idle + iowait + steal of `cpu` in seconds, from its `cpuN` line of /proc/stat.
  static func idleSeconds(cpu: Int, stat: String? = nil) -> Double? {
    guard let text = stat ?? (try? String(contentsOfFile: "/proc/stat", encoding: .utf8)) else { return nil }
    let label = "cpu\(cpu) "
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(label) }) else { return nil }
    // cpuN user nice system idle iowait irq softirq steal ...
    let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard fields.count >= 8 else { return nil }
    return (fields[3] + fields[4] + fields[7]) / ticksPerSecond
  }

  static func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
  }

  /// The CPUs this process may run on (its affinity), in order.
  static func allowedCPUs() -> [Int] {
    cpus(inList: affinity(of: getpid()) ?? "")
  }

  /// The CPUs of a list such as "0-2,5".
  static func cpus(inList list: String) -> [Int] {
    list.split(separator: ",").flatMap { range -> [Int] in
      let bounds = range.split(separator: "-").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
      guard let low = bounds.first, let high = bounds.last, low <= high else { return [] }
      return Array(low...high)
    }
  }

  /// `Cpus_allowed_list` of a process or thread (e.g. "1", "0-1"), nil when it is gone.
  static func affinity(of pid: Int32, thread: Int32? = nil) -> String? {
    let path = thread.map { "/proc/\(pid)/task/\($0)/status" } ?? "/proc/\(pid)/status"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8),
      let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
    else { return nil }
    return line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
  }

  /// Whether every thread of `pid` may run on `cpu` only.
  static func isPinned(_ pid: Int32, to cpu: Int) -> Bool {
    guard let threads = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"),
      !threads.isEmpty
    else { return false }
    return threads.allSatisfy { thread in
      Int32(thread).flatMap { affinity(of: pid, thread: $0) } == String(cpu)
    }
  }
}
