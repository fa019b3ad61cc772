import Foundation

/// The soak's series as an SVG: RSS (MiB) per site over time on the left, file
/// descriptors and threads per site on the right, the warm-up shaded.
enum SoakPlot {
  static func svg(_ report: SoakReport) -> String {
    let width = 960.0
    let height = 360.0
    var body = ""
    body += panel(
      x: 0, title: "RSS (MiB)", report: report, width: width / 2, height: height,
      values: [
        ("site 1", { $0.site == 1 ? Double($0.rssKibibytes) / 1024 : nil }),
        ("site 2", { $0.site == 2 ? Double($0.rssKibibytes) / 1024 : nil }),
      ])
    body += panel(
      x: width / 2, title: "file descriptors, threads", report: report, width: width / 2, height: height,
      values: [
        ("site 1 fds", { $0.site == 1 ? Double($0.fds) : nil }),
        ("site 2 fds", { $0.site == 2 ? Double($0.fds) : nil }),
        ("site 1 threads", { $0.site == 1 ? Double($0.threads) : nil }),
        ("site 2 threads", { $0.site == 2 ? Double($0.threads) : nil }),
      ])
    return """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="11">
      <rect width="100%" height="100%" fill="white"/>
      \(body)</svg>

      """
  }

  static func panel(
    x: Double, title: String, report: SoakReport, width: Double, height: Double,
    values: [(String, (SoakSample) -> Double?)]
  ) -> String {
    let left = x + 50
    let right = x + width - 20
    let top = 30.0
    let bottom = height - 60
    let series = values.map { name, value in
      (name, report.samples.compactMap { s in value(s).map { (s.seconds, $0) } })
    }
    let xMax = max(1, report.samples.map(\.seconds).max() ?? 1)
    let yMax = max(1, series.flatMap { $0.1.map(\.1) }.max() ?? 1) * 1.1
    func xPos(_ v: Double) -> Double { left + v / xMax * (right - left) }
    func yPos(_ v: Double) -> Double { bottom - v / yMax * (bottom - top) }
    var text = "<text x=\"\(left)\" y=\"18\" font-weight=\"bold\">\(title)</text>\n"
    let warm = min(report.warmUpSeconds, xMax)
    text +=
      "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(xPos(warm) - left)\" height=\"\(bottom - top)\" fill=\"#eeeeee\"/>\n"
    text += "<line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(right)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
    text += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
    for step in 0...4 {
      let value = yMax * Double(step) / 4
      text +=
        "<text x=\"\(left - 5)\" y=\"\(yPos(value) + 4)\" text-anchor=\"end\">\(String(format: "%.0f", value))</text>\n"
      let seconds = xMax * Double(step) / 4
      text +=
        "<text x=\"\(xPos(seconds))\" y=\"\(bottom + 15)\" text-anchor=\"middle\">\(String(format: "%.0f s", seconds))</text>\n"
    }
    for (index, (name, points)) in series.enumerated() {
      let color = Plot.palette[index % Plot.palette.count]
      let path = points.map { String(format: "%.1f,%.1f", xPos($0.0), yPos($0.1)) }.joined(separator: " ")
      text += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(path)\"/>\n"
      text +=
        "<text x=\"\(left + Double(index) * 100)\" y=\"\(bottom + 35)\" fill=\"\(color)\">\(Plot.escape(name))</text>\n"
    }
    return text
  }
}
