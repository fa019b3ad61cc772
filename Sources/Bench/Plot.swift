import Foundation

/// A self-written SVG: two panels, frames/s versus frame size and versus FDB size, one
/// line per series (memory encap/decap, live vxswitch/bridge per direction).
enum Plot {
  struct Series {
    var name: String
    var color: String
    var dashed: Bool
    /// (x category, frames/s)
    var points: [(String, Double)]
  }

  static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

  static func svg(memory: MemoryReport?, live: LiveBench.Report?) -> String {
    var sizeSeries: [Series] = []
    var fdbSeries: [Series] = []
    var colorIndex = 0
    func nextColor() -> String {
      defer { colorIndex += 1 }
      return palette[colorIndex % palette.count]
    }
    if let sweep = memory?.sweep {
      for direction in [Direction.encap, .decap] {
        let color = nextColor()
        let sizes = sweep.filter { $0.axis == "frame_size" && $0.direction == direction }
        if !sizes.isEmpty {
          sizeSeries.append(
            Series(
              name: "memory \(direction.rawValue)", color: color, dashed: false,
              points: sizes.map { ($0.frameSize, $0.framesPerSecond) }))
        }
        let fdb = sweep.filter { $0.axis == "fdb_size" && $0.direction == direction }
        if !fdb.isEmpty {
          fdbSeries.append(
            Series(
              name: "memory \(direction.rawValue)", color: color, dashed: false,
              points: fdb.map { (Output.count(roundedFDB($0.fdbSize)), $0.framesPerSecond) }))
        }
      }
    }
    if let live {
      for direction in [Direction.encap, .decap] {
        let rows = live.summary.filter { $0.direction == direction }
        guard !rows.isEmpty else { continue }
        let a = rows.compactMap { row in row.vxswitchFramesPerSecond.map { (row.frameSize, $0) } }
        let b = rows.compactMap { row in row.bridgeFramesPerSecond.map { (row.frameSize, $0) } }
        if !a.isEmpty {
          sizeSeries.append(
            Series(name: "live vxswitch \(direction.rawValue)", color: nextColor(), dashed: false, points: a))
        }
        if !b.isEmpty {
          sizeSeries.append(
            Series(name: "live bridge \(direction.rawValue)", color: nextColor(), dashed: true, points: b))
        }
      }
    }
    let width = 1000.0
    let height = 480.0
    var body = ""
    body += panel(
      x: 0, title: "frames/s vs frame size (bytes)", series: sizeSeries, width: width / 2, height: height)
    body += panel(
      x: width / 2, title: "frames/s vs FDB entries", series: fdbSeries, width: width / 2, height: height)
    return """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
      viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>
      \(body)</svg>

      """
  }

  /// The sweep reports actual entries (traffic MACs included); label by the requested power of two.
  static func roundedFDB(_ entries: Int) -> Int {
    var size = 1024
    while size * 2 <= entries { size *= 2 }
    return size
  }

  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }

  static func panel(x: Double, title: String, series: [Series], width: Double, height: Double) -> String {
    let left = x + 70
    let right = x + width - 20
    let top = 40.0
    let bottom = height - 150
    var out =
      "<text x=\"\(x + width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">\(escape(title))</text>\n"
    out += "<line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(right)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
    out += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
    var categories: [String] = []
    for s in series { for (c, _) in s.points where !categories.contains(c) { categories.append(c) } }
    let maxValue = series.flatMap { $0.points.map(\.1) }.max() ?? 0
    guard !categories.isEmpty, maxValue > 0 else {
      return out
        + "<text x=\"\(x + width / 2)\" y=\"\(height / 2)\" text-anchor=\"middle\" fill=\"gray\">not measured</text>\n"
    }
    let top10 = pow(10, floor(log10(maxValue)))
    let yMax = (maxValue / top10).rounded(.up) * top10
    func xPos(_ category: String) -> Double {
      let index = Double(categories.firstIndex(of: category) ?? 0)
      return categories.count == 1
        ? (left + right) / 2 : left + 20 + index * (right - left - 40) / Double(categories.count - 1)
    }
    func yPos(_ value: Double) -> Double { bottom - value / yMax * (bottom - top) }
    for step in 0...5 {
      let value = yMax * Double(step) / 5
      let y = yPos(value)
      out += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(right)\" y2=\"\(y)\" stroke=\"#ddd\"/>\n"
      out += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(Output.rate(value))</text>\n"
    }
    for category in categories {
      out +=
        "<text x=\"\(xPos(category))\" y=\"\(bottom + 18)\" text-anchor=\"middle\">\(escape(category))</text>\n"
    }
    for (index, s) in series.enumerated() {
      let points = s.points.map { "\(xPos($0.0)),\(yPos($0.1))" }.joined(separator: " ")
      let dash = s.dashed ? " stroke-dasharray=\"6,4\"" : ""
      out +=
        "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)/>\n"
      for (category, value) in s.points {
        out += "<circle cx=\"\(xPos(category))\" cy=\"\(yPos(value))\" r=\"3\" fill=\"\(s.color)\"/>\n"
      }
      let legendY = bottom + 40 + Double(index) * 16
      out +=
        "<line x1=\"\(left)\" y1=\"\(legendY - 4)\" x2=\"\(left + 24)\" y2=\"\(legendY - 4)\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)/>\n"
      out += "<text x=\"\(left + 30)\" y=\"\(legendY)\">\(escape(s.name))</text>\n"
    }
    return out
  }
}
