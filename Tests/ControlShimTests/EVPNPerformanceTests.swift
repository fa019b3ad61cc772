import Dataplane
import Foundation
import XCTest

@testable import ControlShim

/// Counts sink calls only: the dataplane's own cost is not part of this measurement.
final class CountingSink: EVPNRouteSink, @unchecked Sendable {
  // Only the speaker's event loop calls in; the test reads after a loop round trip.
  var installs = 0
  var removals = 0
  func installMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, sticky: Bool,
    peer: String
  ) {
    installs += 1
  }
  func removeMAC(vni: UInt32, mac: MACAddress, ip: IPAddress?) { removals += 1 }
  func addFloodMember(vni: UInt32, vtep: IPAddress) {}
  func removeFloodMember(vni: UInt32, vtep: IPAddress) {}
}

/// 100k type-2 routes: decode + RIB import + sink (all accepted, all installed), and
/// table memory per route (asserted). Times are printed, not asserted; run in release for
/// the real numbers:
///   swift test -c release -Xswiftc -enable-testing --filter EVPNPerformanceTests
final class EVPNPerformanceTests: XCTestCase {
  static let routeCount = 100_000

  private func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
  }

  func test100kMACRoutesDecodeAndInstall() throws {
    try measureImport(sizeHint: false)
  }

  func test100kMACRoutesWithTableSizeHint() throws {
    try measureImport(sizeHint: true)
  }

  private func measureImport(sizeHint: Bool) throws {
    let sink = CountingSink()
    var configuration = SpeakerConfiguration(
      asn: 65000, routerID: 0x0101_0101, vtep: ip("10.0.0.1"), vnis: [VNIConfiguration(vni: 100)],
      peers: [PeerConfiguration(name: "p", address: "127.0.0.2", remoteAS: 65000)])
    if sizeHint { configuration.expectedMACRoutes = Self.routeCount }
    let speaker = EVPNSpeaker(configuration: configuration, sink: sink)
    defer { Task { await speaker.shutdown() } }

    // 100k MAC+IPv4 routes from 25 remote VTEPs, packed as a peer would send them.
    var attributes = PathAttributes()
    attributes.origin = .igp
    attributes.asPath = []
    attributes.localPreference = 100
    attributes.extendedCommunities = [.routeTarget(.twoOctetAS(65000, 100)), .vxlanEncapsulation]
    var frames: [[UInt8]] = []
    let perVTEP = Self.routeCount / 25
    for vtep in 0..<25 {
      let routes = (0..<perVTEP).map { index -> EVPNNLRI in
        let n = UInt64(vtep * perVTEP + index)
        return .macIP(
          MACIPAdvertisementRoute(
            routeDistinguisher: .ipv4(0x0A00_0100 + UInt32(vtep), 1),
            mac: MACAddress(rawValue: 0x0200_0000_0000 | n),
            ip: .v4(0x0A80_0000 | UInt32(n)), label1: 100))
      }
      frames += UpdateBuilder.announcements(
        routes, attributes: attributes, nextHop: IPAddress.v4(0x0A00_0100 + UInt32(vtep)).bytes,
        context: DecodingContext())
    }
    let bytes = frames.reduce(0) { $0 + $1.count }

    let residentBefore = residentBytes()
    let (decodeSeconds, totalSeconds, tableBytes) = try speaker.eventLoop.submit {
      () -> (Double, Double, Int) in
      let peer = speaker.peers[0]
      let start = DispatchTime.now().uptimeNanoseconds
      var decoded: [DecodedMessage] = []
      decoded.reserveCapacity(frames.count)
      for frame in frames { decoded.append(try BGPMessageCodec.decode(frame)) }
      let decodedAt = DispatchTime.now().uptimeNanoseconds
      for message in decoded { speaker.processUpdate(message, from: peer) }
      let end = DispatchTime.now().uptimeNanoseconds
      return (Double(decodedAt - start) / 1e9, Double(end - start) / 1e9, speaker.rib.macTableBytes)
    }.wait()
    let residentAfter = residentBytes()

    XCTAssertEqual(sink.installs, Self.routeCount)
    let status = try speaker.eventLoop.submit { speaker.peers[0].status(rib: speaker.rib) }.wait()
    XCTAssertEqual(status.routesAccepted, Self.routeCount)
    print(
      String(
        format:
          "EVPN perf%@: %d routes in %d UPDATEs (%.1f MB): decode %.3f s, decode+install %.3f s; table %.0f B/route, RSS delta %.0f B/route",
        sizeHint ? " (size hint)" : "", Self.routeCount, frames.count, Double(bytes) / 1e6, decodeSeconds,
        totalSeconds,
        Double(tableBytes) / Double(Self.routeCount),
        Double(residentAfter - residentBefore) / Double(Self.routeCount)))
    // Storage is deterministic and asserted; time is not (speed is shown by `Bench control`).
    XCTAssertLessThan(Double(tableBytes) / Double(Self.routeCount), 300, "compact per-route storage")
  }
}
