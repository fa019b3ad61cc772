import Dataplane
import XCTest

@testable import ControlShim

final class BGPCodecTests: XCTestCase {
  let marker = String(repeating: "ff", count: 16)

  func testKeepaliveBytes() throws {
    XCTAssertEqual(BGPMessageCodec.encode(.keepalive), hex(marker + "0013 04"))
    XCTAssertEqual(try BGPMessageCodec.decode(hex(marker + "0013 04")).message, .keepalive)
  }

  func testOpenBytesWithCapabilities() throws {
    let open = OpenMessage(
      asn: 65001, holdTime: 90, bgpIdentifier: 0x0101_0101,
      capabilities: [
        .multiprotocol(.l2vpnEVPN), .multiprotocol(.routeTargetConstraint), .routeRefresh,
        .gracefulRestart(
          GracefulRestartCapability(
            restartTime: 120,
            families: [
              .init(family: .l2vpnEVPN, forwardingPreserved: true),
              .init(family: .routeTargetConstraint, forwardingPreserved: false),
            ])),
      ])
    let capabilities =
      "01 04 0019 00 46" + "01 04 0001 00 84" + "02 00"
      + "40 0a 0078 0019 46 80 0001 84 00" + "41 04 0000fde9"
    let body = "04 fde9 005a 01010101 22 02 20" + capabilities
    let expected = hex(marker + String(format: "%04x", 19 + hex(body).count) + "01" + body)
    XCTAssertEqual(BGPMessageCodec.encode(.open(open)), expected)
    let decoded = try BGPMessageCodec.decode(expected)
    XCTAssertEqual(decoded.message, .open(open))
    XCTAssertEqual(open.asn, 65001)
    XCTAssertEqual(open.families, [.l2vpnEVPN, .routeTargetConstraint])
  }

  /// RFC 9494 section 3: code 71, per family AFI(2) SAFI(1) flags(1, F = 0x80) and a
  /// 24-bit long-lived stale time; sent next to the GR capability.
  func testLongLivedGracefulRestartCapabilityBytes() throws {
    let open = OpenMessage(
      asn: 65001, holdTime: 90, bgpIdentifier: 0x0101_0101,
      capabilities: [
        .gracefulRestart(
          GracefulRestartCapability(
            restartTime: 0, families: [.init(family: .l2vpnEVPN, forwardingPreserved: true)])),
        .longLivedGracefulRestart(
          LongLivedGracefulRestartCapability(families: [
            .init(family: .l2vpnEVPN, forwardingPreserved: true, staleTime: 86400),
            .init(family: .routeTargetConstraint, forwardingPreserved: false, staleTime: 0xFF_FFFF),
          ])),
      ])
    let capabilities =
      "40 06 0000 0019 46 80" + "47 0e 0019 46 80 015180 0001 84 00 ffffff" + "41 04 0000fde9"
    let body = "04 fde9 005a 01010101 20 02 1e" + capabilities
    let expected = hex(marker + String(format: "%04x", 19 + hex(body).count) + "01" + body)
    XCTAssertEqual(BGPMessageCodec.encode(.open(open)), expected)
    guard case .open(let decoded) = try BGPMessageCodec.decode(expected).message else { return XCTFail() }
    XCTAssertEqual(decoded, open)
    XCTAssertEqual(decoded.longLivedGracefulRestart?.staleTime(for: .l2vpnEVPN), 86400)
    XCTAssertEqual(decoded.longLivedGracefulRestart?.staleTime(for: .routeTargetConstraint), 0xFF_FFFF)
    XCTAssertNil(decoded.longLivedGracefulRestart?.staleTime(for: AddressFamily(afi: 1, safi: 1)))
    // Out-of-range times are clamped to 24 bits; an empty capability is valid (no family).
    XCTAssertEqual(
      LongLivedGracefulRestartCapability.Family(
        family: .l2vpnEVPN, forwardingPreserved: false, staleTime: .max
      )
      .staleTime, 0xFF_FFFF)
    let bare = "04 fde9 005a 01010101 04 02 02 4700"
    guard
      case .open(let minimal) = try BGPMessageCodec.decode(
        hex(marker + String(format: "%04x", 19 + hex(bare).count) + "01" + bare)
      ).message
    else { return XCTFail() }
    XCTAssertEqual(minimal.longLivedGracefulRestart, LongLivedGracefulRestartCapability(families: []))
  }

  func testOpenUsesASTransForFourOctetAS() throws {
    let open = OpenMessage(asn: 4_200_000_001, holdTime: 9, bgpIdentifier: 7, capabilities: [])
    XCTAssertEqual(open.myAS, 23456)
    let bytes = BGPMessageCodec.encode(.open(open))
    XCTAssertEqual(Array(bytes[20..<22]), [0x5B, 0xA0])
    guard case .open(let decoded) = try BGPMessageCodec.decode(bytes).message else { return XCTFail() }
    XCTAssertEqual(decoded.asn, 4_200_000_001)
  }

  /// RFC 7432 7.2 layout with RFC 8365 label: VNI 100 is 00 00 64.
  func testMACIPRouteBytes() {
    let route = EVPNNLRI.macIP(
      MACIPAdvertisementRoute(
        routeDistinguisher: .ipv4(0x0A00_0001, 1), mac: mac("00:11:22:33:44:55"), ip: ip("10.1.1.10"),
        label1: 100))
    var writer = WireWriter()
    route.encode(into: &writer)
    XCTAssertEqual(
      writer.bytes,
      hex("02 25 0001 0a000001 0001 00000000000000000000 00000000 30 001122334455 20 0a01010a 000064"))
    var withoutIP = WireWriter()
    EVPNNLRI.macIP(
      MACIPAdvertisementRoute(
        routeDistinguisher: .twoOctetAS(65000, 7), mac: mac("02:00:00:00:00:01"), label1: 0x123456, label2: 5)
    ).encode(into: &withoutIP)
    XCTAssertEqual(
      withoutIP.bytes,
      hex("02 24 0000 fde8 00000007 00000000000000000000 00000000 30 020000000001 00 123456 000005"))
  }

  func testInclusiveMulticastRouteAndPMSIBytes() throws {
    var attributes = PathAttributes()
    attributes.origin = .igp
    attributes.asPath = []
    attributes.localPreference = 100
    attributes.extendedCommunities = [.routeTarget(.twoOctetAS(65000, 100)), .vxlanEncapsulation]
    attributes.pmsiTunnel = .ingressReplication(vni: 100, vtep: ip("192.0.2.1"))
    attributes.mpReach = MultiprotocolReach(
      nextHop: ip("192.0.2.1").bytes,
      nlri: .evpn([
        .inclusiveMulticast(
          InclusiveMulticastRoute(
            routeDistinguisher: .ipv4(0xC000_0201, 1), originatingRouter: ip("192.0.2.1")))
      ]))
    var writer = WireWriter()
    attributes.encode(into: &writer, context: DecodingContext())
    let expected =
      "40 01 01 00" + "40 02 00" + "40 05 04 00000064"
      + "80 0e 1c 0019 46 04 c0000201 00" + "03 11 0001 c0000201 0001 00000000 20 c0000201"
      + "c0 10 10 0002fde800000064 030c000000000008"
      + "c0 16 09 00 06 000064 c0000201"
    XCTAssertEqual(writer.bytes, hex(expected))
    var reader = WireReader(writer.bytes)
    let decoded = try PathAttributes.decode(&reader, context: DecodingContext())
    XCTAssertEqual(decoded.attributes, attributes)
    XCTAssertTrue(decoded.treatAsWithdraw.isEmpty)
  }

  func testExtendedCommunityForms() {
    XCTAssertEqual(RouteTarget.twoOctetAS(65000, 100).rawValue, 0x0002_FDE8_0000_0064)
    XCTAssertEqual(RouteTarget.ipv4(0x0A00_0001, 5).rawValue, 0x0102_0A00_0001_0005)
    XCTAssertEqual(RouteTarget.fourOctetAS(4_200_000_000, 9).rawValue, 0x0202_FA56_EA00_0009)
    XCTAssertEqual(ExtendedCommunity.vxlanEncapsulation.rawValue, 0x030C_0000_0000_0008)
    XCTAssertEqual(ExtendedCommunity.macMobility(sticky: true, sequence: 7).rawValue, 0x0600_0100_0000_0007)
    XCTAssertEqual(ExtendedCommunity.defaultGateway.rawValue, 0x030D_0000_0000_0000)
    XCTAssertEqual(
      ExtendedCommunity(rawValue: 0x0600_0000_0000_0003).kind, .macMobility(sticky: false, sequence: 3))
    XCTAssertEqual(ExtendedCommunity(rawValue: 0x030C_0000_0000_0008).kind, .encapsulation(tunnelType: 8))
    XCTAssertEqual(RouteTarget("65000:100"), .twoOctetAS(65000, 100))
    XCTAssertEqual(RouteTarget("10.0.0.1:5"), .ipv4(0x0A00_0001, 5))
    XCTAssertEqual(RouteTarget("4200000000:9"), .fourOctetAS(4_200_000_000, 9))
    XCTAssertEqual(RouteTarget.fourOctetAS(4_200_000_000, 9).description, "4200000000:9")
  }

  func testRouteDistinguisherTextForms() {
    for text in ["65000:100", "10.0.0.1:5", "4200000000:9", "65000L:9"] {
      XCTAssertEqual(RouteDistinguisher(text)?.description, text)
    }
    XCTAssertEqual(RouteDistinguisher("10.0.0.1:5")?.rawValue, 0x0001_0A00_0001_0005)
    XCTAssertEqual(RouteDistinguisher("65000:100")?.rawValue, 0x0000_FDE8_0000_0064)
    XCTAssertEqual(RouteDistinguisher("65000L:9")?.rawValue, 0x0002_0000_FDE8_0009)
    XCTAssertNil(RouteDistinguisher("1.2.3.4:70000"))
    XCTAssertNil(RouteDistinguisher("nonsense"))
  }

  func testEndOfRIB() throws {
    let bytes = BGPMessageCodec.encode(.update(.endOfRIB(.l2vpnEVPN)))
    XCTAssertEqual(bytes, hex(marker + "001d 02 0000 0006 800f 03 0019 46"))
    guard case .update(let update) = try BGPMessageCodec.decode(bytes).message else { return XCTFail() }
    XCTAssertEqual(update.endOfRIBFamily, .l2vpnEVPN)
    XCTAssertEqual(UpdateMessage.endOfRIB(.ipv4Unicast).endOfRIBFamily, .ipv4Unicast)
    XCTAssertEqual(
      BGPMessageCodec.encode(.update(.endOfRIB(.ipv4Unicast))), hex(marker + "0017 02 0000 0000"))
  }

  func testNotificationAndRouteRefreshBytes() throws {
    let notification = BGPMessage.notification(NotificationMessage(code: 6, subcode: 1, data: [1, 2]))
    XCTAssertEqual(BGPMessageCodec.encode(notification), hex(marker + "0017 03 06 01 0102"))
    XCTAssertEqual(try BGPMessageCodec.decode(BGPMessageCodec.encode(notification)).message, notification)
    let refresh = BGPMessage.routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN))
    XCTAssertEqual(BGPMessageCodec.encode(refresh), hex(marker + "0017 05 0019 00 46"))
    XCTAssertEqual(try BGPMessageCodec.decode(BGPMessageCodec.encode(refresh)).message, refresh)
    // RFC 7313 subtypes ride in the octet between AFI and SAFI.
    let beginning = BGPMessage.routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN, subtype: 1))
    XCTAssertEqual(BGPMessageCodec.encode(beginning), hex(marker + "0017 05 0019 01 46"))
    XCTAssertEqual(
      try BGPMessageCodec.decode(hex(marker + "0017 05 0019 02 46")).message,
      .routeRefresh(RouteRefreshMessage(family: .l2vpnEVPN, subtype: 2)))
  }

  func testUpdateRoundTripWithEveryRouteForm() throws {
    var attributes = PathAttributes()
    attributes.origin = .incomplete
    attributes.asPath = [
      ASPathSegment(kind: .sequence, asns: [4_200_000_000, 65001]), ASPathSegment(kind: .set, asns: [7]),
    ]
    attributes.multiExitDiscriminator = 5
    attributes.extendedCommunities = [
      .routeTarget(.ipv4(0x0A00_0001, 5)), .macMobility(sticky: false, sequence: 3), .defaultGateway,
      ExtendedCommunity(rawValue: 0x4242_0000_0000_0001),
    ]
    attributes.mpReach = MultiprotocolReach(
      nextHop: ip("2001:db8::1").bytes,
      nlri: .evpn([
        .macIP(
          MACIPAdvertisementRoute(
            routeDistinguisher: .fourOctetAS(4_200_000_000, 2), mac: mac("aa:bb:cc:dd:ee:ff"),
            ip: ip("2001:db8::99"), label1: 0xFFFFFF)),
        .macIP(
          MACIPAdvertisementRoute(
            routeDistinguisher: .ipv4(1, 1), esi: EthernetSegmentID(high: 1, low: 2), ethernetTag: 9,
            mac: mac("00:00:00:00:00:01"), label1: 1, label2: 2)),
        .inclusiveMulticast(
          InclusiveMulticastRoute(routeDistinguisher: .ipv4(1, 1), originatingRouter: ip("2001:db8::1"))),
        .unknown(type: 4, value: [1, 2, 3]),
      ]))
    attributes.other = [RawPathAttribute(flags: 0xC0, type: 99, value: [9, 9])]
    let message = BGPMessage.update(UpdateMessage(attributes: attributes))
    let bytes = BGPMessageCodec.encode(message)
    XCTAssertEqual(try BGPMessageCodec.decode(bytes).message, message)
    // Same with 2-octet AS_PATH encoding.
    let twoOctet = DecodingContext(fourOctetAS: false)
    var small = attributes
    small.asPath = [ASPathSegment(kind: .sequence, asns: [65001, 65002])]
    let smallMessage = BGPMessage.update(UpdateMessage(attributes: small))
    XCTAssertEqual(
      try BGPMessageCodec.decode(BGPMessageCodec.encode(smallMessage, context: twoOctet), context: twoOctet)
        .message, smallMessage)
  }

  func testRouteTargetMembershipRoundTripAndMatch() throws {
    var attributes = PathAttributes()
    attributes.mpReach = MultiprotocolReach(
      nextHop: [1, 1, 1, 1],
      nlri: .routeTargetMembership([
        RouteTargetMembership(originAS: 65000, routeTarget: .twoOctetAS(65000, 100)), .wildcard,
      ]))
    attributes.origin = .igp
    attributes.asPath = []
    let message = BGPMessage.update(UpdateMessage(attributes: attributes))
    let bytes = BGPMessageCodec.encode(message)
    XCTAssertTrue(bytes.starts(with: hex(marker)))
    XCTAssertEqual(try BGPMessageCodec.decode(bytes).message, message)
    let membership = RouteTargetMembership(originAS: 65000, routeTarget: .twoOctetAS(65000, 100))
    XCTAssertTrue(membership.matches(.twoOctetAS(65000, 100)))
    XCTAssertFalse(membership.matches(.twoOctetAS(65000, 101)))
    XCTAssertTrue(RouteTargetMembership.wildcard.matches(.twoOctetAS(1, 1)))
    var nlri = WireWriter()
    membership.encode(into: &nlri)
    XCTAssertEqual(nlri.bytes, hex("60 0000fde8 0002fde800000064"))
  }

  func testUpdateBuilderSplitsAt4096() throws {
    let routes = (0..<500).map { index in
      EVPNNLRI.macIP(
        MACIPAdvertisementRoute(
          routeDistinguisher: .ipv4(1, 1), mac: MACAddress(rawValue: UInt64(index)), ip: .v4(UInt32(index)),
          label1: 100))
    }
    var attributes = PathAttributes()
    attributes.origin = .igp
    attributes.asPath = []
    let messages = UpdateBuilder.announcements(
      routes, attributes: attributes, nextHop: [10, 0, 0, 1], context: DecodingContext())
    XCTAssertGreaterThan(messages.count, 1)
    var decodedRoutes: [EVPNNLRI] = []
    for message in messages {
      XCTAssertLessThanOrEqual(message.count, 4096)
      guard case .update(let update) = try BGPMessageCodec.decode(message).message,
        case .evpn(let chunk)? = update.attributes.mpReach?.nlri
      else { return XCTFail() }
      decodedRoutes += chunk
    }
    XCTAssertEqual(decodedRoutes, routes)
  }
}
