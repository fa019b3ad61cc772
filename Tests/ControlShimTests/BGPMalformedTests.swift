import XCTest

@testable import ControlShim

/// Every class of malformed input maps to the NOTIFICATION code/subcode of RFC 4271
/// and the RFC 7606 action.
final class BGPMalformedTests: XCTestCase {
  let marker = String(repeating: "ff", count: 16)

  private func message(type: UInt8, body: [UInt8]) -> [UInt8] {
    var bytes = hex(marker)
    let length = 19 + body.count
    bytes += [UInt8(length >> 8), UInt8(length & 0xFF), type] + body
    return bytes
  }

  private func update(attributes: String, nlri: String = "") -> [UInt8] {
    let attributeBytes = hex(attributes)
    return message(
      type: 2,
      body: [0, 0, UInt8(attributeBytes.count >> 8), UInt8(attributeBytes.count & 0xFF)] + attributeBytes
        + hex(nlri))
  }

  private func open(_ body: String) -> [UInt8] { message(type: 1, body: hex(body)) }

  private func assertError(
    _ bytes: [UInt8], code: UInt8, subcode: UInt8, action: RFC7606Action = .sessionReset,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertThrowsError(try BGPMessageCodec.decode(bytes), file: file, line: line) { error in
      guard let wireError = error as? BGPWireError else {
        return XCTFail("untyped \(error)", file: file, line: line)
      }
      XCTAssertEqual(wireError.notificationCode.code, code, "\(wireError)", file: file, line: line)
      XCTAssertEqual(wireError.notificationCode.subcode, subcode, "\(wireError)", file: file, line: line)
      XCTAssertEqual(wireError.action, action, file: file, line: line)
    }
  }

  /// Decodes an UPDATE that must survive, returning its soft findings.
  private func soft(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> DecodedMessage? {
    do { return try BGPMessageCodec.decode(bytes) } catch {
      XCTFail("unexpected \(error)", file: file, line: line)
      return nil
    }
  }

  private func assertSoft(
    _ bytes: [UInt8], code: UInt8, subcode: UInt8, action: RFC7606Action, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    guard let decoded = soft(bytes, file: file, line: line) else { return }
    let findings = action == .treatAsWithdraw ? decoded.treatAsWithdraw : decoded.discardedAttributes
    XCTAssertEqual(findings.count, 1, "\(decoded)", file: file, line: line)
    XCTAssertEqual(findings.first?.notificationCode.code, code, file: file, line: line)
    XCTAssertEqual(findings.first?.notificationCode.subcode, subcode, file: file, line: line)
    XCTAssertEqual(findings.first?.action, action, file: file, line: line)
  }

  let validPath = "40 01 01 00  40 02 00"
  /// MP_REACH for EVPN with one type-3 route.
  let evpnReach = "80 0e 1c 0019 46 04 c0000201 00 03 11 0001 c0000201 0001 00000000 20 c0000201"

  // MARK: header

  func testHeaderErrors() {
    var badMarker = BGPMessageCodec.encode(.keepalive)
    badMarker[3] = 0
    assertError(badMarker, code: 1, subcode: 1)
    assertError(hex(marker + "0012 04"), code: 1, subcode: 2)  // shorter than a header
    assertError(hex(marker + "1001 02"), code: 1, subcode: 2)  // over 4096
    assertError(hex(marker + "0014 04 00"), code: 1, subcode: 2)  // KEEPALIVE with a body
    assertError(hex(marker + "0018 05 00190046"), code: 1, subcode: 2)  // ROUTE-REFRESH too long
    assertError(hex(marker + "0014 03 06"), code: 1, subcode: 2)  // NOTIFICATION without subcode
    assertError(hex(marker + "0013 09"), code: 1, subcode: 3)
    assertError(hex(marker + "0017 04"), code: 1, subcode: 2)  // frame shorter than its length
  }

  // MARK: OPEN

  func testOpenErrors() {
    assertError(open("03 fde9 005a 01010101 00"), code: 2, subcode: 1)
    assertError(open("04 fde9 0002 01010101 00"), code: 2, subcode: 6)
    assertError(open("04 fde9 005a 00000000 00"), code: 2, subcode: 3)
    assertError(open("04 fde9 005a 01010101 04 01 02 0000"), code: 2, subcode: 4)
    assertError(open("04 fde9 005a 01010101 04 02 02 01 04"), code: 2, subcode: 0)  // capability overruns
    assertError(open("04 fde9 005a 01010101 05 02 02 0100"), code: 2, subcode: 0)  // length mismatch
    assertError(open("04 fde9 005a 01010101 04 02 02 4103"), code: 2, subcode: 0)  // 4-octet AS cap length 3
    // RFC 9494 capability: 7 octets per family; 4 or 8 is malformed, not a crash.
    assertError(open("04 fde9 005a 01010101 08 02 06 4704 00194680"), code: 2, subcode: 0)
    assertError(open("04 fde9 005a 01010101 0c 02 0a 4708 0019468000 0e1000"), code: 2, subcode: 0)
  }

  // MARK: UPDATE, session reset

  func testUpdateStructureErrorsResetTheSession() {
    assertError(message(type: 2, body: hex("0010 0000")), code: 3, subcode: 1)  // withdrawn length overruns
    // attribute length overruns
    assertError(message(type: 2, body: hex("0000 0010 400101")), code: 3, subcode: 1)
    // MP_REACH / MP_UNREACH longer than the attribute list: their NLRI cannot be read.
    assertError(update(attributes: validPath + "80 0e 20 0019 46 04"), code: 3, subcode: 5)
    assertError(update(attributes: validPath + "90 0f 0100 0019 46"), code: 3, subcode: 5)
    assertError(update(attributes: validPath + " 40 c8 01 00"), code: 3, subcode: 2)  // unknown well-known
    // duplicate MP_REACH
    assertError(update(attributes: validPath + evpnReach + evpnReach), code: 3, subcode: 1)
    // truncated MP_REACH
    assertError(update(attributes: validPath + "80 0e 03 0019 46"), code: 3, subcode: 9)
    assertError(update(attributes: "80 0f 02 0019"), code: 3, subcode: 9)  // truncated MP_UNREACH
    // next hop length 5
    assertError(update(attributes: validPath + "80 0e 0a 0019 46 05 c000020101 00"), code: 3, subcode: 8)
    // EVPN NLRI: MAC length 47, IP length 31, route length beyond the attribute.
    let badMAC =
      "80 0e 2c 0019 46 04 c0000201 00 02 21 0001c00002010001 00000000000000000000 00000000 2f 001122334455 00 000064"
    assertError(update(attributes: validPath + badMAC), code: 3, subcode: 9)
    let badIP =
      "80 0e 30 0019 46 04 c0000201 00 02 25 0001c00002010001 00000000000000000000 00000000 30 001122334455 1f 0a01010a 000064"
    assertError(update(attributes: validPath + badIP), code: 3, subcode: 9)
    assertError(
      update(attributes: validPath + "80 0e 0c 0019 46 04 c0000201 00 02 21 00"), code: 3, subcode: 9)
    // MP_UNREACH: an EVPN MAC/IP route whose length (0x21) overruns the attribute.
    assertError(update(attributes: "80 0f 06 0019 46 02 21 0001"), code: 3, subcode: 9)
    // RTC prefix length over 96.
    assertError(update(attributes: validPath + "80 0e 0a 0001 84 04 01010101 00 61"), code: 3, subcode: 9)
  }

  // MARK: UPDATE, treat-as-withdraw

  func testTreatAsWithdrawClasses() {
    assertSoft(
      update(attributes: "40 01 01 05  40 02 00" + evpnReach), code: 3, subcode: 6, action: .treatAsWithdraw)
    assertSoft(
      update(attributes: "40 01 02 0000  40 02 00" + evpnReach), code: 3, subcode: 5, action: .treatAsWithdraw
    )
    assertSoft(
      update(attributes: "c0 01 01 00  40 02 00" + evpnReach), code: 3, subcode: 4, action: .treatAsWithdraw)
    assertSoft(
      update(attributes: "40 01 01 00  40 02 03 02 02 00" + evpnReach), code: 3, subcode: 11,
      action: .treatAsWithdraw)
    assertSoft(
      update(attributes: "40 01 01 00  40 02 02 07 01" + evpnReach), code: 3, subcode: 11,
      action: .treatAsWithdraw)
    assertSoft(
      update(attributes: validPath + "40 05 03 000064" + evpnReach), code: 3, subcode: 5,
      action: .treatAsWithdraw)
    assertSoft(
      update(attributes: validPath + "80 04 02 0000" + evpnReach), code: 3, subcode: 5,
      action: .treatAsWithdraw)
    assertSoft(
      update(attributes: validPath + "c0 10 07 00020000000000" + evpnReach), code: 3, subcode: 5,
      action: .treatAsWithdraw)
    assertSoft(
      update(attributes: validPath + "c0 16 03 000600" + evpnReach), code: 3, subcode: 5,
      action: .treatAsWithdraw)
    assertSoft(
      update(attributes: validPath + "c0 16 07 0006000064 0102" + evpnReach), code: 3, subcode: 9,
      action: .treatAsWithdraw)
    // no ORIGIN
    assertSoft(update(attributes: "40 02 00" + evpnReach), code: 3, subcode: 3, action: .treatAsWithdraw)
    // no AS_PATH
    assertSoft(update(attributes: "40 01 01 00" + evpnReach), code: 3, subcode: 3, action: .treatAsWithdraw)
    // RFC 7606 section 4: a truncated attribute header, or an attribute longer than the
    // attribute list, is treat-as-withdraw; the NLRI is located by the Total Path Attribute
    // Length.
    let withNextHop = validPath + "40 03 04 0a000001"
    for (attributes, subcode) in [(withNextHop + "40", UInt8(1)), (withNextHop + "40 05 05 00000064", 5)] {
      let bytes = update(attributes: attributes, nlri: "18 0a0000")
      assertSoft(bytes, code: 3, subcode: subcode, action: .treatAsWithdraw)
      guard case .update(let message)? = soft(bytes)?.message else { return XCTFail() }
      XCTAssertEqual(message.nlri, hex("18 0a0000"))
      XCTAssertEqual(message.attributes.nextHop, 0x0A00_0001)
    }
    // IPv4 NLRI without NEXT_HOP.
    assertSoft(
      update(attributes: validPath, nlri: "18 0a0000"), code: 3, subcode: 3, action: .treatAsWithdraw)
  }

  func testMissingAttributesDoNotMatterWithoutRoutes() {
    guard let decoded = soft(update(attributes: "80 0f 03 0019 46")) else { return }
    XCTAssertTrue(decoded.treatAsWithdraw.isEmpty)
  }

  // MARK: UPDATE, attribute discard

  func testAttributeDiscardClasses() {
    assertSoft(
      update(attributes: validPath + "40 06 01 00" + evpnReach), code: 3, subcode: 5,
      action: .attributeDiscard)
    assertSoft(
      update(attributes: validPath + "c0 07 03 000000" + evpnReach), code: 3, subcode: 5,
      action: .attributeDiscard)
    assertSoft(
      update(attributes: validPath + "c0 11 03 020101" + evpnReach), code: 3, subcode: 11,
      action: .attributeDiscard)
    // A repeated ORIGIN keeps the first.
    guard let decoded = soft(update(attributes: validPath + "40 01 01 02" + evpnReach)) else { return }
    XCTAssertEqual(decoded.discardedAttributes.count, 1)
    guard case .update(let message) = decoded.message else { return XCTFail() }
    XCTAssertEqual(message.attributes.origin, .igp)
  }

  func testUnknownRouteTypeIsSkippedByLength() throws {
    let reach =
      "80 0e 23 0019 46 04 c0000201 00  07 05 0102030405  03 11 0001 c0000201 0001 00000000 20 c0000201"
    guard
      case .update(let message) = try BGPMessageCodec.decode(update(attributes: validPath + reach)).message,
      case .evpn(let routes)? = message.attributes.mpReach?.nlri
    else { return XCTFail() }
    XCTAssertEqual(routes.count, 2)
    XCTAssertEqual(routes.first, .unknown(type: 7, value: [1, 2, 3, 4, 5]))
    guard case .inclusiveMulticast = routes.last else { return XCTFail() }
  }

  func testUnknownOptionalAttributesAreKept() throws {
    guard
      case .update(let message) = try BGPMessageCodec.decode(update(attributes: validPath + "c0 63 02 abcd"))
        .message
    else {
      return XCTFail()
    }
    XCTAssertEqual(
      message.attributes.other, [RawPathAttribute(flags: 0xC0, type: 0x63, value: [0xAB, 0xCD])])
  }

  /// Random bytes, and random corruptions of valid messages, never crash the decoder:
  /// they decode or throw a typed error. Seeded and bounded.
  func testRandomInputNeverCrashes() {
    var generator = SplitMix64(seed: 0x5EED_B6B0)
    var valid: [[UInt8]] = [
      BGPMessageCodec.encode(.keepalive),
      update(attributes: validPath + evpnReach),
      update(
        attributes: validPath
          + "80 0e 2c 0019 46 04 c0000201 00 02 21 0001c00002010001 00000000000000000000 00000000 30 001122334455 00 000064"
      ),
      open("04 fde9 005a 01010101 0e 02 0c 01040019004602004104 0000fde9"),
    ]
    valid.append(BGPMessageCodec.encode(.update(.endOfRIB(.l2vpnEVPN))))
    var outcomes = [0, 0]
    for round in 0..<40_000 {
      var bytes: [UInt8]
      if round % 2 == 0 {
        // Valid header, random body: exercises the message decoders.
        let length = Int(generator.next() % 120)
        let type = UInt8(1 + generator.next() % 5)
        bytes = message(
          type: type, body: (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
      } else {
        bytes = valid[Int(generator.next() % UInt64(valid.count))]
        for _ in 0..<(1 + generator.next() % 4) {
          let index = 16 + Int(generator.next() % UInt64(bytes.count - 16))
          bytes[index] = UInt8(truncatingIfNeeded: generator.next())
        }
      }
      do {
        _ = try BGPMessageCodec.decode(bytes)
        outcomes[0] += 1
      } catch is BGPWireError {
        outcomes[1] += 1
      } catch {
        XCTFail("untyped error \(error)")
      }
    }
    XCTAssertGreaterThan(outcomes[0], 0)
    XCTAssertGreaterThan(outcomes[1], 0)
  }
}

/// Small deterministic generator so fuzz rounds reproduce.
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
