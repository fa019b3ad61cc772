import CPacket
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Finds, for every remote VTEP, the underlay MAC to send to, and keeps it current.
///
/// For each VTEP (`core.remoteVTEPs`): the route out of the underlay interface
/// (RTM_GETROUTE with RTA_OIF, like `ip route get VTEP oif UNDERLAY`) gives the gateway,
/// or the VTEP itself when on-link; the kernel neighbour table (RTM_GETNEIGH) gives that
/// next hop's MAC. A missing or failed entry is resolved by the kernel on request
/// (RTM_NEWNEIGH with NTF_USE, `ip neigh replace ... use`): the kernel ARPs / solicits as
/// if it had a packet to send, and reports the result as RTM_NEWNEIGH. Because vxswitch's
/// frames bypass the kernel, the kernel never "uses" these entries itself; every
/// `refreshInterval` the resolver marks them used again so that they are re-validated
/// (a changed MAC is noticed within a reachable time).
///
/// Link, neighbour and route notifications are followed without restarting; changes go to
/// `core.setNextHop`. Static `[[neighbor]]` entries (by VTEP address, or by gateway
/// address) take precedence and are never overwritten. The underlay interface's MAC is
/// pushed with `core.setUnderlayMAC` unless the configuration sets one; its MTU lowers the
/// effective `site.mtu` when smaller (`clampMTU`).
///
/// Driven by one thread (LiveSwitch's learner): `handleEvents()` when `eventFD` is
/// readable, `tick()` periodically. `entries` may be read from any thread.
public final class NextHopResolver {
  public struct Entry: Sendable, Equatable {
    public var vtep: IPAddress
    /// Gateway, or the VTEP itself when on-link; nil without a route.
    public var nextHop: IPAddress?
    public var mac: MACAddress?
    /// Kernel NUD state bits of the next hop (`CP_NUD_*`), 0 if unknown.
    public var state: UInt16
    public var isStatic: Bool
  }

  public struct Options: Sendable {
    /// Seconds between NTF_USE refreshes of resolved next hops.
    public var refreshInterval: Double = 15
    /// Seconds between resolution retries of unresolved next hops.
    public var retryInterval: Double = 1
    /// Lower `site.mtu` to the underlay link MTU when it is smaller.
    public var clampMTU = true
    public init() {}
  }

  public let core: SwitchCore
  public let interface: String
  public let interfaceIndex: Int32
  public let options: Options
  private var handle: OpaquePointer?
  private var known: [IPAddress: Entry] = [:]
  private let published = Mutex<[IPAddress: Entry]>([:])
  private let linkState = Mutex<(mac: MACAddress?, mtu: Int?, up: Bool)>((nil, nil, false))
  private var lastRetry: Double = 0
  private var lastRefresh: Double = 0
  private var lastVTEPCheck: Double = 0
  private var appliedMTU: Int? = nil
  private var configuredMTU: Int
  /// Resolution requests sent (NTF_USE or, where that fails, a UDP probe).
  public private(set) var resolutionRequests = 0

  /// Opens the netlink sockets. Call in the underlay's network namespace.
  public init(core: SwitchCore, interface: String? = nil, options: Options = Options()) throws {
    self.core = core
    let name = interface ?? core.config.site.underlay
    self.interface = name
    self.options = options
    interfaceIndex = try Syscall.interfaceIndex(name)
    configuredMTU = core.config.site.mtu
    var opened: OpaquePointer? = nil
    let result = cp_nl_open(&opened)
    guard result == 0, let opened else { throw AFPacketError.netlink(operation: "open", errno: -result) }
    handle = opened
  }

  deinit { close() }

  public func close() {
    if let handle {
      cp_nl_close(handle)
      self.handle = nil
    }
  }

  /// Poll this for POLLIN, then call `handleEvents()`.
  public var eventFD: Int32 { handle.map { cp_nl_event_fd($0) } ?? -1 }

  public var entries: [Entry] { published.withLock { Array($0.values) }.sorted { $0.vtep < $1.vtep } }
  public func entry(for vtep: IPAddress) -> Entry? { published.withLock { $0[vtep] } }

  public var underlayMAC: MACAddress? { linkState.withLock { $0.mac } }
  public var underlayMTU: Int? { linkState.withLock { $0.mtu } }
  public var underlayIsUp: Bool { linkState.withLock { $0.up } }

  // MARK: Driving

  /// Reads the link and resolves every VTEP now.
  public func refresh() {
    refreshLink()
    resolveAll(trigger: true)
    lastRetry = Self.seconds()
  }

  /// Reads pending notifications and re-resolves what they may have changed.
  public func handleEvents() {
    guard let handle else { return }
    let bits = Int(cp_nl_read_events(handle, interfaceIndex))
    if bits == 0 { return }
    if bits & (CP_NL_EVENT_LINK | CP_NL_EVENT_OVERRUN) != 0 { refreshLink() }
    // A few VTEPs, a few requests each: cheaper than tracking which event touched what.
    resolveAll(trigger: false)
  }

  /// Periodic work: new VTEPs (every 100 ms), retries of unresolved ones, and the
  /// NTF_USE refresh of resolved ones.
  public func tick() {
    let now = Self.seconds()
    if now - lastVTEPCheck >= 0.1 {
      lastVTEPCheck = now
      let vteps = core.remoteVTEPs
      if vteps.count != known.count || vteps.contains(where: { known[$0] == nil }) {
        resolveAll(trigger: true)
      }
    }
    if now - lastRefresh >= options.refreshInterval {
      lastRefresh = now
      lastRetry = now
      for entry in known.values where !entry.isStatic {
        if let hop = entry.nextHop { trigger(hop, vtep: entry.vtep) }
      }
      return
    }
    if now - lastRetry >= options.retryInterval {
      lastRetry = now
      if known.values.contains(where: { !$0.isStatic && $0.mac == nil }) { resolveAll(trigger: true) }
    }
  }

  // MARK: Resolution

  private func refreshLink() {
    guard let handle else { return }
    var mac = (UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0))
    var mtu: UInt32 = 0
    var flags: UInt32 = 0
    let result = withUnsafeMutableBytes(of: &mac) { raw in
      cp_nl_link(handle, interfaceIndex, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), &mtu, &flags)
    }
    guard result == 0 else { return }
    let address = MACAddress(mac)
    let up = flags & UInt32(IFF_UP) != 0 && flags & UInt32(IFF_RUNNING) != 0
    linkState.withLock { $0 = (address, Int(mtu), up) }
    let config = core.config
    if config.site.underlayMAC == nil && address != .zero { core.setUnderlayMAC(address) }
    if options.clampMTU && mtu > 0 {
      // Someone else (a reload) changed site.mtu: that is the new configured value.
      if config.site.mtu != appliedMTU { configuredMTU = config.site.mtu }
      let effective = min(configuredMTU, Int(mtu))
      if effective != config.site.mtu {
        var updated = config
        updated.site.mtu = effective
        core.reload(updated)
      }
      appliedMTU = effective
    }
  }

  private func resolveAll(trigger: Bool) {
    let statics = Dictionary(core.config.neighbors.map { ($0.ip, $0.mac) }, uniquingKeysWith: { a, _ in a })
    var next: [IPAddress: Entry] = [:]
    for vtep in core.remoteVTEPs {
      next[vtep] = resolve(vtep, statics: statics, previous: known[vtep], trigger: trigger)
    }
    known = next
    published.withLock { $0 = next }
  }

  private func resolve(_ vtep: IPAddress, statics: [IPAddress: MACAddress], previous: Entry?, trigger: Bool)
    -> Entry
  {
    if let mac = statics[vtep] {
      // SwitchCore installs [[neighbor]] entries itself; leave them alone.
      return Entry(vtep: vtep, nextHop: vtep, mac: mac, state: UInt16(CP_NUD_PERMANENT), isStatic: true)
    }
    guard let handle else { return Entry(vtep: vtep, nextHop: nil, mac: nil, state: 0, isStatic: false) }
    let family = vtep.isIPv4 ? AF_INET : AF_INET6
    let destination = vtep.bytes
    var gateway = [UInt8](repeating: 0, count: 16)
    var gatewayLength: Int32 = 0
    var outInterface: Int32 = 0
    let routed = cp_nl_route_get(
      handle, family, destination, interfaceIndex, &gateway, &gatewayLength, &outInterface)
    guard routed == 0 else {
      publish(vtep, mac: nil)
      return Entry(vtep: vtep, nextHop: nil, mac: nil, state: 0, isStatic: false)
    }
    let hop: IPAddress =
      gatewayLength > 0
      ? gateway.withUnsafeBytes {
        IPAddress(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<Int(gatewayLength)]))!
      } : vtep
    if let mac = statics[hop] {
      publish(vtep, mac: mac)
      return Entry(vtep: vtep, nextHop: hop, mac: mac, state: UInt16(CP_NUD_PERMANENT), isStatic: true)
    }
    var mac = (UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0))
    var hasMAC: Int32 = 0
    var state: UInt16 = 0
    let hopFamily = hop.isIPv4 ? AF_INET : AF_INET6
    let hopBytes = hop.bytes
    let found = withUnsafeMutableBytes(of: &mac) { raw in
      cp_nl_neigh_get(
        handle, hopFamily, hopBytes, interfaceIndex, raw.baseAddress!.assumingMemoryBound(to: UInt8.self),
        &hasMAC, &state)
    }
    let usable = UInt16(
      CP_NUD_REACHABLE | CP_NUD_STALE | CP_NUD_DELAY | CP_NUD_PROBE | CP_NUD_PERMANENT | CP_NUD_NOARP)
    var resolved: MACAddress? = nil
    if found == 0 && hasMAC != 0 && state & usable != 0 {
      resolved = MACAddress(mac)
    } else if found == 0 && state & UInt16(CP_NUD_FAILED) != 0 {
      resolved = nil  // the kernel gave up: do not send to a MAC that no longer answers
    } else if let previous, previous.nextHop == hop {
      // Deleted (garbage-collected) or still INCOMPLETE: keep the last MAC we had for the
      // same next hop while the kernel resolves it again.
      resolved = previous.mac
    }
    let unresolvedNow = found != 0 || hasMAC == 0 || state & usable == 0
    if unresolvedNow && (trigger || previous?.nextHop != hop || found != 0) {
      if state & UInt16(CP_NUD_INCOMPLETE) == 0 { self.trigger(hop, vtep: vtep) }
    }
    publish(vtep, mac: resolved)
    return Entry(vtep: vtep, nextHop: hop, mac: resolved, state: state, isStatic: false)
  }

  private func publish(_ vtep: IPAddress, mac: MACAddress?) {
    if known[vtep]?.mac != mac || known[vtep] == nil { core.setNextHop(vtep, mac: mac) }
  }

  /// Asks the kernel to resolve (or re-validate) `hop` on the underlay.
  private func trigger(_ hop: IPAddress, vtep: IPAddress) {
    guard let handle else { return }
    resolutionRequests += 1
    let result = cp_nl_neigh_use(handle, hop.isIPv4 ? AF_INET : AF_INET6, hop.bytes, interfaceIndex)
    if result == 0 { return }
    // Fallback for kernels without NTF_USE on RTM_NEWNEIGH: an empty datagram to the
    // VTEP's own address (discard port) makes the kernel resolve the route's next hop.
    Self.probe(vtep)
  }

  static func probe(_ vtep: IPAddress) {
    let family = vtep.isIPv4 ? AF_INET : AF_INET6
    let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return }
    defer { Glibc.close(fd) }
    var storage = sockaddr_storage()
    var length: socklen_t
    let bytes = vtep.bytes
    if vtep.isIPv4 {
      length = socklen_t(MemoryLayout<sockaddr_in>.size)
      withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
          sin.pointee.sin_family = sa_family_t(AF_INET)
          sin.pointee.sin_port = UInt16(9).bigEndian
          withUnsafeMutableBytes(of: &sin.pointee.sin_addr) { for i in 0..<4 { $0[i] = bytes[i] } }
        }
      }
    } else {
      length = socklen_t(MemoryLayout<sockaddr_in6>.size)
      withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
          sin6.pointee.sin6_family = sa_family_t(AF_INET6)
          sin6.pointee.sin6_port = UInt16(9).bigEndian
          withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { for i in 0..<16 { $0[i] = bytes[i] } }
        }
      }
    }
    _ = withUnsafePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
    }
    _ = send(fd, nil, 0, Int32(MSG_DONTWAIT))
  }

  static func seconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
  }
}
