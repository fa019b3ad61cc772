import Foundation
import XCTest

/// A real Prometheus server scrapes a running `vxswitch run` over the TCP API (bearer
/// token from a credentials file), and a counter is read back through Prometheus's own
/// query API after traffic crossed the switch.
final class PrometheusScrapeTests: XCTestCase {
  var fixture: DaemonFixture?

  override func setUpWithError() throws {
    try DaemonFixture.skipUnlessCapable()
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/prometheus") else {
      throw XCTSkip("prometheus is not installed (apt-get install prometheus; scripts/setup.sh does)")
    }
  }

  override func tearDown() { fixture?.stop() }

  func testPrometheusScrapesTheDaemonAndReadsBackAFrameCounter() throws {
    let fixture = try DaemonFixture(tag: "pm")
    self.fixture = fixture
    let promPort = 19000 + Int(getpid() % 1000)
    try """
    global:
      scrape_interval: 1s
      scrape_timeout: 1s
    scrape_configs:
      - job_name: vxswitch
        authorization:
          type: Bearer
          credentials_file: \(fixture.tokenFile)
        static_configs:
          - targets: ["127.0.0.1:\(fixture.apiPort)"]
    """.write(toFile: fixture.directory + "/prometheus.yml", atomically: true, encoding: .utf8)
    try fixture.start(
      [
        "ip", "netns", "exec", fixture.site, "/usr/bin/prometheus",
        "--config.file=\(fixture.directory)/prometheus.yml", "--storage.tsdb.path=\(fixture.directory)/tsdb",
        "--web.listen-address=127.0.0.1:\(promPort)",
      ], log: "prometheus.log")

    // Traffic across the switch: 20 pings from VM A to VM B (and their replies).
    let ping = try DaemonFixture.run(
      ["ip", "netns", "exec", fixture.vmA, "ping", "-c", "20", "-i", "0.05", "-W", "2", "192.168.77.2"])
    XCTAssertTrue(ping.contains(" 0% packet loss"), ping)

    // Prometheus's query API: vm1's received-frame counter carries the pings (at least 20
    // requests entered on vm1), and the scrape target is up.
    let query = "http://127.0.0.1:\(promPort)/api/v1/query?query="
    let frames = query + "vxswitch_port_frames_total%7Bport%3D%22vm1%22%2Cdirection%3D%22rx%22%7D"
    var value = 0.0
    try fixture.waitFor(
      "Prometheus to scrape vm1's rx counter (log: \(fixture.log("prometheus.log").suffix(1500)))",
      timeout: 60
    ) {
      let reply = (try? DaemonFixture.run(["ip", "netns", "exec", fixture.site, "curl", "-s", frames])) ?? ""
      value = Self.firstValue(reply) ?? 0
      return value >= 20
    }
    XCTAssertGreaterThanOrEqual(value, 20)
    let up = try DaemonFixture.run([
      "ip", "netns", "exec", fixture.site, "curl", "-s", query + "up%7Bjob%3D%22vxswitch%22%7D",
    ])
    XCTAssertEqual(Self.firstValue(up), 1, up)
    // Without the token the daemon refuses the scrape.
    let refused = try DaemonFixture.run([
      "ip", "netns", "exec", fixture.site, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
      "Authorization: Bearer wrong", fixture.apiURL + "/metrics",
    ])
    XCTAssertEqual(refused, "401")
  }

  /// The value of the first sample in a Prometheus query reply.
  static func firstValue(_ reply: String) -> Double? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any],
      let data = object["data"] as? [String: Any], let result = data["result"] as? [[String: Any]],
      let sample = result.first?["value"] as? [Any], sample.count == 2, let text = sample[1] as? String
    else { return nil }
    return Double(text)
  }
}
