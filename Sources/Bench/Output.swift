import Foundation

/// Terminal tables and JSON.
enum Output {
  static func json<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    guard let data = try? encoder.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
  }

  static func table(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows {
      for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) }
    }
    func line(_ cells: [String]) -> String {
      cells.enumerated().map { column, cell in
        let pad = String(repeating: " ", count: widths[column] - cell.count)
        return column == 0 ? cell + pad : pad + cell
      }.joined(separator: "  ")
    }
    var lines = [line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
    lines += rows.map(line)
    return lines.joined(separator: "\n")
  }

  static func rate(_ value: Double) -> String {
    if value >= 1e6 { return String(format: "%.2fM", value / 1e6) }
    if value >= 1e3 { return String(format: "%.1fk", value / 1e3) }
    return String(format: "%.0f", value)
  }

  static func count(_ value: Int) -> String {
    if value >= 1 << 20 && value % (1 << 20) == 0 { return "\(value >> 20)M" }
    if value >= 1 << 10 && value % (1 << 10) == 0 { return "\(value >> 10)k" }
    return String(value)
  }

  static func memoryTable(_ report: MemoryReport) -> String {
    var text =
      "config \(report.config), FDB \(report.fdbEntries) entries (capacity \(report.fdbCapacity)), \(report.mode)\n\n"
    let header = [
      "port", "direction", "size", "frames", "ns/frame", "frames/s", "delivered", "floods", "drops", "status",
    ]
    let rows = report.results.map { r in
      [
        r.port, r.direction.rawValue, r.frameSize, String(r.frames), String(format: "%.1f", r.nsPerFrame),
        rate(r.framesPerSecond), String(r.delivered), String(r.floodCopies), String(r.drops),
        r.flagged ? "FLAGGED" : "ok",
      ]
    }
    text += table(header, rows)
    for r in report.results where r.flagged {
      text += "\n\(r.port) \(r.direction.rawValue): " + r.warnings.joined(separator: "; ")
    }
    if let sweep = report.sweep {
      text += "\n\nsweep (ns/frame, frames/s):\n"
      let sweepRows = sweep.map { p in
        [
          p.axis, count(p.fdbSize), p.frameSize, p.direction.rawValue, String(format: "%.1f", p.nsPerFrame),
          rate(p.framesPerSecond), p.flagged ? "FLAGGED" : "ok",
        ]
      }
      text += table(["axis", "fdb", "size", "direction", "ns/frame", "frames/s", "status"], sweepRows)
    }
    return text
  }

  static func liveTable(_ report: LiveBench.Report) -> String {
    var text = "generator: \(report.generator); vxswitch: \(report.vxswitch)\n"
    for note in report.notes { text += "note: \(note)\n" }
    for system in LiveBench.System.allCases {
      if let method = report.measurements.first(where: { $0.system == system })?.cpuMethod {
        text += "\(system) CPU: \(method)\n"
      }
    }
    text += "\n"
    func cell(_ value: Double?, _ format: String) -> String {
      value.map { String(format: format, $0) } ?? "-"
    }
    let rows = report.summary.map { s in
      [
        s.direction.rawValue, s.frameSize,
        s.vxswitchFramesPerSecond.map(rate) ?? "-", cell(s.vxswitchLossPercent, "%.2f%%"),
        cell(s.vxswitchCPUNsPerFrame, "%.0f"),
        s.xdpFramesPerSecond.map(rate) ?? "-", cell(s.xdpLossPercent, "%.2f%%"),
        cell(s.xdpCPUNsPerFrame, "%.0f"),
        s.bridgeFramesPerSecond.map(rate) ?? "-", cell(s.bridgeLossPercent, "%.2f%%"),
        cell(s.bridgeCPUNsPerFrame, "%.0f"),
        s.baselineFramesPerSecond.map(rate) ?? "-", cell(s.baselineLossPercent, "%.2f%%"),
        cell(s.baselineCPUNsPerFrame, "%.0f"),
        s.baselineXDPFramesPerSecond.map(rate) ?? "-", cell(s.baselineXDPLossPercent, "%.2f%%"),
        cell(s.baselineXDPCPUNsPerFrame, "%.0f"),
        cell(s.ratio, "%.2f"), cell(s.xdpRatio, "%.2f"), cell(s.baselineRatio, "%.2f"),
        cell(s.xdpBaselineRatio, "%.2f"),
      ]
    }
    text += table(
      [
        "direction", "size", "vxswitch f/s", "loss", "cpu ns/f", "vxs-xdp f/s", "loss", "cpu ns/f",
        "bridge f/s", "loss", "cpu ns/f", "baseline f/s", "loss", "cpu ns/f", "base-xdp f/s", "loss",
        "cpu ns/f",
        "vxs/bridge", "xdp/bridge", "vxs/baseline", "xdp/base-xdp",
      ], rows)
    text +=
      "\n(\(report.rate); medians over repetitions, the systems alternating in each; only figures whose sampled output decoded correctly)"
    // vxswitch on AF_XDP beside a variant of it: frames/s and CPU per frame of each, and
    // the ratio, for the summaries that have the variant.
    func comparison(
      _ title: String, _ columns: [String],
      _ figures: (LiveBench.Summary) -> (Double?, Double?, Double?, Double?, Double?)?
    ) {
      let rows = report.summary.compactMap { s in figures(s).map { (s, $0) } }
      if rows.isEmpty { return }
      text += "\n\n\(title):\n"
      text += table(
        ["direction", "size"] + columns,
        rows.map { s, f in
          [
            s.direction.rawValue, s.frameSize, f.0.map(rate) ?? "-", cell(f.1, "%.0f"), f.2.map(rate) ?? "-",
            cell(f.3, "%.0f"), cell(f.4, "%.2f"),
          ]
        })
    }
    comparison(
      "vxswitch on AF_XDP, two workers sharing each veth's queue, both on the measured CPU",
      ["2 workers f/s", "cpu ns/f", "1 worker f/s", "cpu ns/f", "2w/1w"]
    ) { s in
      s.xdpTwoWorkersFramesPerSecond == nil
        ? nil
        : (
          s.xdpTwoWorkersFramesPerSecond, s.xdpTwoWorkersCPUNsPerFrame, s.xdpFramesPerSecond,
          s.xdpCPUNsPerFrame,
          s.xdpTwoWorkersRatio
        )
    }
    comparison(
      "vxswitch on AF_XDP, frames sent from where they were received against copied into a slot",
      ["in place f/s", "cpu ns/f", "copied f/s", "cpu ns/f", "in place/copied"]
    ) { s in
      s.xdpCopyFramesPerSecond == nil
        ? nil
        : (
          s.xdpFramesPerSecond, s.xdpCPUNsPerFrame, s.xdpCopyFramesPerSecond, s.xdpCopyCPUNsPerFrame,
          s.xdpInPlaceOverCopyRatio
        )
    }
    // Where frames were lost, per system: in the kernel before the system (the veth's NAPI
    // ring full), in the system's own receive ring (vxswitch reports it), or elsewhere.
    var dropRows: [[String]] = []
    for s in report.summary {
      for system in LiveBench.System.allCases {
        let runs = report.measurements.filter {
          $0.system == system && $0.direction == s.direction && $0.frameSize == s.frameSize
            && $0.repetition >= 0
        }
        guard !runs.isEmpty else { continue }
        let offered = runs.reduce(UInt64(0)) { $0 &+ $1.offered }
        let lost = runs.reduce(UInt64(0)) { $0 &+ ($1.offered &- min($1.offered, $1.delivered)) }
        let kernel = runs.reduce(UInt64(0)) { $0 &+ $1.kernelDrops }
        let ring =
          runs.allSatisfy { $0.ringDrops != nil }
          ? String(runs.reduce(UInt64(0)) { $0 &+ $1.ringDrops! }) : "-"
        let pinned = runs.allSatisfy(\.processPinned) ? "yes" : "NO"
        dropRows.append([
          s.direction.rawValue, s.frameSize, system.rawValue, String(offered), String(lost), String(kernel),
          ring,
          pinned,
        ])
      }
    }
    text += "\n\nframes lost, summed over repetitions:\n"
    text += table(
      ["direction", "size", "system", "offered", "lost", "veth drops", "ring drops", "pinned"], dropRows)
    if !report.searches.isEmpty {
      text +=
        "\n\nlargest offered rate with < \(RateSearch.lossLimit)% loss (frames/s; * = generator's limit, no loss flat out):\n"
      func found(_ system: LiveBench.System, _ s: LiveBench.Summary) -> String {
        guard
          let r = report.searches.first(where: {
            $0.system == system && $0.direction == s.direction && $0.frameSize == s.frameSize
          })
        else { return "-" }
        return rate(Double(r.lossFreeRate)) + (r.generatorBound ? "*" : "")
      }
      let searchRows = report.summary.map { s in
        [
          s.direction.rawValue, s.frameSize, found(.vxswitch, s), found(.bridge, s), found(.baseline, s),
          cell(s.lossFreeBaselineRatio, "%.2f"),
        ]
      }
      text += table(["direction", "size", "vxswitch", "bridge", "baseline", "vxs/baseline"], searchRows)
    }
    return text
  }
}
