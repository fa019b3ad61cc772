import Dataplane
import Foundation
import XCTest

@testable import ControlShim

/// Parses hex with optional spaces, for writing expected wire bytes readably.
func hex(_ text: String) -> [UInt8] {
  let digits = text.filter { !$0.isWhitespace }
  var bytes: [UInt8] = []
  var index = digits.startIndex
  while index < digits.endIndex {
    let next = digits.index(index, offsetBy: 2)
    bytes.append(UInt8(digits[index..<next], radix: 16)!)
    index = next
  }
  return bytes
}

func ip(_ text: String) -> IPAddress { IPAddress(text)! }
func mac(_ text: String) -> MACAddress { MACAddress(text)! }

/// What a sink has been told, plus speaker events; tests block on it with a deadline
/// and are woken by every change instead of sleeping.
struct RecordedState {
  struct Installed: Equatable {
    var vtep: IPAddress
    var sequence: UInt32
    var sticky: Bool
    var peer: String
  }
  var macs: [String: Installed] = [:]
  var flood: [UInt32: Set<IPAddress>] = [:]
  var installCalls = 0
  var removeCalls = 0
  var frozen: [(UInt32, MACAddress, Int)] = []
  var events: [SpeakerEvent] = []

  static func key(_ vni: UInt32, _ mac: MACAddress, _ ip: IPAddress? = nil) -> String {
    "\(vni)/\(mac)" + (ip.map { "/\($0)" } ?? "")
  }

  func installed(_ vni: UInt32, _ mac: MACAddress, _ ip: IPAddress? = nil) -> Installed? {
    macs[Self.key(vni, mac, ip)]
  }

  func count(_ match: (SpeakerEvent) -> Bool) -> Int { events.filter(match).count }

  func established(_ peer: String) -> Int {
    count { if case .established(let name) = $0 { return name == peer } else { return false } }
  }
}

final class RecordingSink: EVPNRouteSink, @unchecked Sendable {
  private let condition = NSCondition()
  private var state = RecordedState()
  /// Off for the performance test, where bookkeeping would dominate.
  var recordMACs = true

  var snapshot: RecordedState {
    condition.lock()
    defer { condition.unlock() }
    return state
  }

  func update(_ body: (inout RecordedState) -> Void) {
    condition.lock()
    body(&state)
    condition.broadcast()
    condition.unlock()
  }

  /// Blocks until `predicate` holds or `timeout` passes; returns whether it held.
  @discardableResult
  func wait(timeout: Double = 15, _ predicate: (RecordedState) -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    condition.lock()
    defer { condition.unlock() }
    while !predicate(state) {
      if !condition.wait(until: deadline) { return predicate(state) }
    }
    return true
  }

  func observe(_ speaker: EVPNSpeaker) {
    speaker.addObserver { [weak self] event in self?.update { $0.events.append(event) } }
  }

  func installMAC(
    vni: UInt32, mac: MACAddress, ip: IPAddress?, vtep: IPAddress, sequence: UInt32, sticky: Bool,
    peer: String
  ) {
    update { state in
      state.installCalls += 1
      if recordMACs {
        state.macs[RecordedState.key(vni, mac, ip)] = .init(
          vtep: vtep, sequence: sequence, sticky: sticky, peer: peer)
      }
    }
  }

  func removeMAC(vni: UInt32, mac: MACAddress, ip: IPAddress?) {
    update { state in
      state.removeCalls += 1
      state.macs[RecordedState.key(vni, mac, ip)] = nil
    }
  }

  func addFloodMember(vni: UInt32, vtep: IPAddress) { update { $0.flood[vni, default: []].insert(vtep) } }
  func removeFloodMember(vni: UInt32, vtep: IPAddress) { update { $0.flood[vni]?.remove(vtep) } }
  func macFrozen(vni: UInt32, mac: MACAddress, moves: Int) { update { $0.frozen.append((vni, mac, moves)) } }
}

/// A free TCP port on 127.0.0.1, chosen below the kernel's ephemeral range so that
/// outgoing connections of other tests cannot take it between now and bind().
func freeTCPPort() -> UInt16 {
  var generator = SystemRandomNumberGenerator()
  for _ in 0..<200 {
    let candidate = UInt16.random(in: 20_000..<32_000, using: &generator)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = candidate.bigEndian
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    close(fd)
    if result == 0 { return candidate }
  }
  return 0
}

/// A hand-driven BGP peer over a blocking socket, to send what a real speaker would not
/// (silence, malformed UPDATEs) and to see exactly what the speaker sends.
final class RawBGPPeer {
  let fd: Int32
  private var buffer: [UInt8] = []

  init?(port: UInt16) {
    fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = port.bigEndian
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard result == 0 else {
      close(fd)
      return nil
    }
  }

  deinit { close(fd) }

  func send(_ bytes: [UInt8]) {
    _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
  }
  func send(_ message: BGPMessage) { send(BGPMessageCodec.encode(message)) }

  /// Next message, or nil on timeout or EOF.
  func receive(timeout: Double = 10) -> BGPMessage? {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      if let length = try? BGPMessageCodec.frameLength(buffer), buffer.count >= length {
        let frame = Array(buffer[0..<length])
        buffer.removeFirst(length)
        return try? BGPMessageCodec.decode(frame).message
      }
      let remaining = deadline.timeIntervalSinceNow
      guard remaining > 0 else { return nil }
      var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      guard poll(&poller, 1, Int32(remaining * 1000)) > 0 else { return nil }
      var chunk = [UInt8](repeating: 0, count: 65536)
      let count = recv(fd, &chunk, chunk.count, 0)
      guard count > 0 else { return nil }
      buffer += chunk[0..<count]
    }
  }

  /// Skips KEEPALIVEs and UPDATEs until a NOTIFICATION (or nil on timeout/EOF).
  func receiveNotification(timeout: Double = 10) -> NotificationMessage? {
    let deadline = Date().addingTimeInterval(timeout)
    while let message = receive(timeout: max(0, deadline.timeIntervalSinceNow)) {
      if case .notification(let notification) = message { return notification }
    }
    return nil
  }

  /// OPEN + KEEPALIVE exchange; returns the speaker's OPEN.
  func handshake(
    asn: UInt32, routerID: UInt32, holdTime: UInt16,
    capabilities: [BGPCapability] = [.multiprotocol(.l2vpnEVPN)]
  ) -> OpenMessage? {
    send(
      .open(OpenMessage(asn: asn, holdTime: holdTime, bgpIdentifier: routerID, capabilities: capabilities)))
    guard case .open(let open)? = receive() else { return nil }
    send(.keepalive)
    guard case .keepalive? = receive() else { return nil }
    return open
  }
}

/// Whether a plain (unsigned) TCP connect to 127.0.0.1:port completes within `timeout`.
/// A listener with a TCP MD5 key for 127.0.0.1 drops unsigned SYNs, so it must not.
func plainConnectSucceeds(port: UInt16, timeout: Double) -> Bool {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(fd) }
  _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  address.sin_port = port.bigEndian
  let result = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  if result == 0 { return true }
  guard errno == EINPROGRESS else { return false }
  var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
  guard poll(&poller, 1, Int32(timeout * 1000)) > 0 else { return false }
  var error: Int32 = 0
  var length = socklen_t(MemoryLayout<Int32>.size)
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
  return error == 0
}
