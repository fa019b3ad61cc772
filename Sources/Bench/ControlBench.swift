import API
import ControlShim
import Dataplane
import Dispatch
import Foundation
import Logging
import Management
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// `Bench control`: see `ControlCommand`.
struct ControlBench {
  let routes: Int
  let whileForwarding: Bool
  /// Tell the receiver's tables how many routes to expect (`EVPNControlPlane.Options.expectedRoutes`).
  var sizeHint = true
  /// Entries put in the receiver's FDB before the session comes up: control-plane entries
  /// of VNI `prefillVNI` behind VTEP `prefillVTEP` (a large fabric's remote MACs).
  var prefill = 0
  /// A client listing the FDB on another thread while the routes are installed.
  var reader: FDBReaderMode = .none

  static let vni: UInt32 = 100
  static let localVTEP = IPAddress("10.0.0.1")!
  static let senderVTEP = IPAddress("10.0.0.2")!
  static let macBase: UInt64 = 0x0200_0000_0000
  static let prefillVNI: UInt32 = 200
  static let prefillVTEP = IPAddress("10.0.0.9")!
  static let prefillMACBase: UInt64 = 0x0600_0000_0000

  struct Report: Codable {
    var routes: Int
    var whileForwarding: Bool
    /// Established (sender side) until the last route is an FDB entry.
    var secondsToFDB: Double
    var routesPerSecond: Double
    /// Established until the first route is an FDB entry.
    var secondsToFirstRoute: Double
    var rssBytesPerRoute: Double
    /// Receiver: the speaker's type-2 table and the sink's peer/sequence table.
    var ribBytesPerRoute: Double
    var sinkBytesPerRoute: Double
    /// The FDB is sized at start (capacity), so routes add nothing to it.
    var fdbCapacity: Int
    var fdbEntries: Int
    var framesPerSecondBefore: Double?
    var framesPerSecondDuring: Double?
    var framesPerSecondAfter: Double?
    /// FDB entries present before the import (`--fdb-entries`).
    var prefilled: Int = 0
    /// The FDB client during the import (`FDBReaderMode`), and how much it read.
    var reader: String? = nil
    var readerPages: Int? = nil
    var readerRows: Int? = nil
    var readerListings: Int? = nil

    var text: String {
      var lines = [
        String(
          format: "Bench control: %d type-2 routes over one iBGP session (127.0.0.1)%@", routes,
          whileForwarding ? ", while forwarding" : "")
          + (prefilled > 0 ? ", \(prefilled) FDB entries before" : "")
          + (reader.map { ", FDB reader: \($0)" } ?? ""),
        String(
          format: "  Established -> all in FDB: %.3f s (%.0f routes/s); first route after %.3f s",
          secondsToFDB,
          routesPerSecond, secondsToFirstRoute),
        String(
          format:
            "  memory per route: RSS delta %.0f B (whole process, sender included); receiver RIB %.0f B + sink %.0f B; FDB preallocated (%d slots)",
          rssBytesPerRoute, ribBytesPerRoute, sinkBytesPerRoute, fdbCapacity),
      ]
      if let before = framesPerSecondBefore, let during = framesPerSecondDuring,
        let after = framesPerSecondAfter
      {
        lines.append(
          String(
            format:
              "  forwarding (another thread, same SwitchCore): %.2f Mfps before (flooding), %.2f Mfps during import, %.2f Mfps after (encap)",
            before / 1e6, during / 1e6, after / 1e6))
      }
      if let reader, let pages = readerPages, let rows = readerRows, let listings = readerListings {
        lines.append(
          "  FDB reader (\(reader)) during import: \(pages) pages of <= 1000 rows JSON-encoded, \(rows) rows, \(listings) complete listings"
        )
      }
      return lines.joined(separator: "\n")
    }
  }

  func run() throws -> Report {
    // The receiving vxswitch: an in-memory switch with [bgp], one passive peer.
    let port = try Self.freePort()
    var site = SiteConfig.Site(name: "bench", vtep: Self.localVTEP, underlay: "eth1")
    site.underlayMAC = MACAddress("02:00:00:00:00:01")!
    var capacity = 1 << 12
    while capacity < routes * 2 + prefill { capacity <<= 1 }
    site.fdbCapacity = capacity
    site.learnLimit = capacity
    var config = SiteConfig(site: site)
    config.neighbors = [.init(ip: Self.senderVTEP, mac: MACAddress("02:00:00:00:00:02")!)]
    var domain = SiteConfig.BridgeDomain(vni: Self.vni)
    domain.ports = [.init(interface: "vm1"), .init(interface: "vm2")]
    config.bridgeDomains = [domain]
    if prefill > 0 {
      var other = SiteConfig.BridgeDomain(vni: Self.prefillVNI)
      other.ports = [.init(interface: "vm3")]
      config.bridgeDomains.append(other)
    }
    var bgp = SiteConfig.BGP(asn: 65000, routerID: IPAddress("1.1.1.1")!)
    bgp.listenPort = port
    var peer = SiteConfig.BGP.Peer(address: IPAddress("127.0.0.1")!, asn: 65000)
    peer.passive = true
    peer.maxRoutes = routes * 2
    bgp.peers = [peer]
    config.bgp = bgp
    let offline = OfflineSwitch(config: config, output: { _ in .discard })
    let core = offline.core
    var options = EVPNControlPlane.Options()
    options.listenAddress = "127.0.0.1"
    options.expectedRoutes = sizeHint ? routes : 0
    guard let controlPlane = EVPNControlPlane(core: core, options: options) else {
      throw BenchError.failed("no control plane")
    }
    try blocking { try await controlPlane.start() }
    defer { blocking { await controlPlane.shutdown() } }
    try Self.prefill(core, entries: prefill)

    // The sender: its whole table is in its RIB before the session comes up.
    var senderConfiguration = SpeakerConfiguration(
      asn: 65000, routerID: 0x0202_0202, vtep: Self.senderVTEP, vnis: [VNIConfiguration(vni: Self.vni)],
      peers: [PeerConfiguration(name: "vxswitch", address: "127.0.0.1", port: port, remoteAS: 65000)])
    senderConfiguration.expectedMACRoutes = routes
    senderConfiguration.connectRetryTime = 0.1
    let sender = EVPNSpeaker(configuration: senderConfiguration, sink: nil)
    defer { blocking { await sender.shutdown() } }
    for index in 0..<routes {
      sender.advertiseMAC(vni: Self.vni, mac: MACAddress(rawValue: Self.macBase | UInt64(index)))
    }
    sender.advertiseInclusiveMulticast(vni: Self.vni)
    blocking { await sender.sync() }
    let established = Atomic<UInt64>(0)
    sender.addObserver { event in
      if case .established = event {
        _ = established.compareExchange(expected: 0, desired: monotonicNanos(), ordering: .relaxed)
      }
    }

    // Optional forwarding thread on the same core.
    let forwarder = whileForwarding ? Forwarder(offline: offline, destinations: min(routes, 4096)) : nil
    forwarder?.start()
    var before: Double?
    if let forwarder {
      Thread.sleep(forTimeInterval: 0.2)
      let mark = forwarder.mark()
      Thread.sleep(forTimeInterval: 1)
      before = forwarder.rate(since: mark)
    }

    let rssBefore = Self.residentBytes()
    let baseline = core.fdb.count
    let duringMark = forwarder?.mark()
    let fdbReader = reader == .none ? nil : FDBReader(core: core, controlPlane: controlPlane, mode: reader)
    try fdbReader?.start()
    try blocking { try await sender.start() }
    var first: UInt64 = 0
    let deadline = monotonicNanos() + 300_000_000_000
    while core.fdb.count - baseline < routes {
      if first == 0 && core.fdb.count > baseline { first = monotonicNanos() }
      if monotonicNanos() > deadline {
        throw BenchError.failed("only \(core.fdb.count - baseline) of \(routes) routes arrived in 300 s")
      }
      usleep(200)
    }
    let done = monotonicNanos()
    let readerWork = fdbReader?.stop()
    let during = duringMark.map { forwarder!.rate(since: $0) }
    let rssAfter = Self.residentBytes()
    var after: Double?
    if let forwarder {
      let mark = forwarder.mark()
      Thread.sleep(forTimeInterval: 1)
      after = forwarder.rate(since: mark)
      forwarder.stop()
    }
    let start = established.load(ordering: .relaxed)
    let seconds = Double(done - start) / 1e9
    if first == 0 { first = done }
    return Report(
      routes: routes, whileForwarding: whileForwarding, secondsToFDB: seconds,
      routesPerSecond: Double(routes) / seconds,
      secondsToFirstRoute: Double(Int64(first) - Int64(start)) / 1e9,
      rssBytesPerRoute: Double(rssAfter - rssBefore) / Double(routes),
      ribBytesPerRoute: Double(controlPlane.speaker.macTableBytesBlocking()) / Double(routes),
      sinkBytesPerRoute: Double(controlPlane.sink.tableBytes) / Double(routes),
      fdbCapacity: core.fdb.capacity,
      fdbEntries: core.fdb.count, framesPerSecondBefore: before, framesPerSecondDuring: during,
      framesPerSecondAfter: after, prefilled: prefill, reader: fdbReader.map { _ in reader.rawValue },
      readerPages: readerWork?.pages, readerRows: readerWork?.rows, readerListings: readerWork?.listings)
  }

  /// Installs `entries` control-plane MACs in `prefillVNI`, in chunks as an import would.
  static func prefill(_ core: SwitchCore, entries: Int) throws {
    guard entries > 0 else { return }
    let before = core.fdb.count
    var start = 0
    while start < entries {
      let end = min(entries, start + 65_536)
      core.applyRemoteMACs(
        (start..<end).map {
          .install(vni: prefillVNI, mac: MACAddress(rawValue: prefillMACBase | UInt64($0)), vtep: prefillVTEP)
        })
      start = end
    }
    guard core.fdb.count - before == entries else {
      throw BenchError.failed("prefilled \(core.fdb.count - before) of \(entries) FDB entries")
    }
  }

  static func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
  }

  /// A free TCP port on 127.0.0.1 (bound to port 0, read back, released).
  static func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let result = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
        guard bind(fd, pointer, length) == 0 else { return -1 }
        return getsockname(fd, pointer, &length)
      }
    }
    guard result == 0 else { throw BenchError.failed("cannot find a free TCP port") }
    return UInt16(bigEndian: address.sin_port)
  }
}

/// Forwards frames from vm1 to the benchmark's MACs on its own thread, flat out.
// @unchecked: its switch and frames are used by its own thread only; `stop` is atomic.
final class Forwarder: @unchecked Sendable {
  private let offline: OfflineSwitch
  private let set: FrameSet
  private let frames = Atomic<UInt64>(0)
  private let running = Atomic<Bool>(true)
  private let finished = DispatchSemaphore(value: 0)

  init(offline: OfflineSwitch, destinations: Int) {
    self.offline = offline
    let source = MACAddress("02:aa:00:00:00:01")!
    set = FrameSet(
      frames: (0..<destinations).map { index in
        FrameBuilder.udpFrame(
          link: .init(
            destination: MACAddress(rawValue: ControlBench.macBase | UInt64(index)), source: source),
          source: IPAddress("192.168.1.1")!, destination: IPAddress("192.168.1.2")!, sourcePort: 1000,
          destinationPort: 2000, payload: Array(repeating: 0, count: 18))
      })
  }

  func start() {
    let thread = Thread { [self] in
      var vector = FrameVector()
      let ingress = UInt16(offline.interfaceIndex("vm1")!)
      while running.load(ordering: .relaxed) {
        var start = 0
        while start < set.count {
          let end = min(set.count, start + FrameVector.capacity)
          vector.count = 0
          vector.ingress = ingress
          vector.now = 1
          for index in start..<end { vector.append(set.frames[index], length: Int(set.lengths[index])) }
          offline.process(&vector)
          offline.flush()
          start = end
        }
        offline.core.drainLearnQueues()
        frames.add(UInt64(set.count), ordering: .relaxed)
      }
      finished.signal()
    }
    thread.start()
  }

  /// (frames, time) now, to compute a rate later.
  func mark() -> (UInt64, UInt64) { (frames.load(ordering: .relaxed), monotonicNanos()) }

  func rate(since mark: (UInt64, UInt64)) -> Double {
    let now = self.mark()
    return Double(now.0 - mark.0) / (Double(now.1 - mark.1) / 1e9)
  }

  func stop() {
    running.store(false, ordering: .relaxed)
    finished.wait()
  }
}

/// Runs async work to completion from synchronous code (not on a NIO loop).
func blocking<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
  let result = Mutex<Result<T, Error>?>(nil)
  let done = DispatchSemaphore(value: 0)
  Task {
    do {
      let value = try await body()
      result.withLock { $0 = .success(value) }
    } catch {
      result.withLock { $0 = .failure(error) }
    }
    done.signal()
  }
  done.wait()
  return try result.withLock { $0 }!.get()
}

func blocking(_ body: @escaping @Sendable () async -> Void) {
  let done = DispatchSemaphore(value: 0)
  Task {
    await body()
    done.signal()
  }
  done.wait()
}

/// What `FDBReader` does, over and over, while routes are installed.
enum FDBReaderMode: String, Codable {
  case none
  /// A client of the daemon's HTTP API on a Unix socket: `GET /v1/fdb?limit=1000&cursor=N`
  /// page after page (what `vxswitch show fdb` does), served by the same `SiteService`.
  case http
  /// Pages through the FDB as the control API does now: `SwitchCore.fdbPage` with a
  /// limit of 1000 (lock-free scan, rows built outside any lock), each page JSON-encoded.
  case paged
  /// The listing as it was before `fdbPage`: rows built inside `ForwardingTable.forEach`,
  /// which holds the FDB writer lock for the whole walk, then sorted and JSON-encoded in
  /// pages of 1000 (the same encoding work as `paged`).
  case locked
  /// No FDB reading: JSON-encodes the same 1000-row page over and over, to tell the CPU
  /// the client takes from the import (two cores) from what waiting for a lock costs.
  case encodeOnly = "encode-only"
}

/// A control-API client listing the FDB on its own thread, flat out, until stopped.
final class FDBReader: @unchecked Sendable {
  private let core: SwitchCore
  private let annotator: FDBAnnotator?
  private let mode: FDBReaderMode
  private let running = Atomic<Bool>(true)
  private let pages = Atomic<Int>(0)
  private let rows = Atomic<Int>(0)
  private let listings = Atomic<Int>(0)
  private let finished = DispatchSemaphore(value: 0)
  private let midListing = DispatchSemaphore(value: 0)
  private let announced = Atomic<Bool>(false)
  /// `encodeOnly`'s page: rows as `fdbPage` builds them, read once.
  private var fixedPage: [FDBRow] = []
  static let pageSize = 1000

  private let controlPlane: EVPNControlPlane?
  private var server: (group: ServiceGroup, task: Task<Void, Error>, socket: String)?

  init(core: SwitchCore, controlPlane: EVPNControlPlane?, mode: FDBReaderMode) {
    self.core = core
    self.annotator = controlPlane?.sink
    self.controlPlane = controlPlane
    self.mode = mode
  }

  /// Serves the API on a temporary Unix socket (`http` mode).
  private func startServer() throws {
    let service = SiteService(core: core, controlPlane: controlPlane, clock: { 1 })
    let router = APIRouter(service: service, metrics: MetricsExporter(service: service))
    var logger = Logger(label: "bench-api")
    logger.logLevel = .warning
    let socket = NSTemporaryDirectory() + "vxswitch-bench-\(getpid()).sock"
    let running = DispatchSemaphore(value: 0)
    let listener = try APIServer.unixSocket(
      path: socket, router: router, logger: logger, onRunning: { running.signal() })
    let group = ServiceGroup(services: [listener], logger: logger)
    let task = Task { try await group.run() }
    running.wait()
    server = (group, task, socket)
  }

  private func httpListing(_ client: APIClient) {
    var cursor: String? = "0"
    while let next = cursor, running.load(ordering: .relaxed) {
      guard let page = try? client.get("/v1/fdb?limit=\(Self.pageSize)&cursor=\(next)", as: FDBList.self)
      else {
        return
      }
      countPage(rows: page.entries.count)
      cursor = page.nextCursor
    }
    if cursor == nil { listings.add(1, ordering: .relaxed) }
  }

  /// Starts the client and returns once it is in the middle of its first listing: after
  /// its first page (`paged`, `encodeOnly`), or inside its first walk of the table with the
  /// writer lock held (`locked`). The import then starts while a listing is under way.
  func start() throws {
    if mode == .http { try startServer() }
    let client = server.map { APIClient(.unixSocket($0.socket)) }
    if mode == .encodeOnly {
      fixedPage =
        core.fdbPage(
          vni: nil, mac: nil, origin: nil, cursor: 0, limit: Self.pageSize, now: 1, annotator: annotator
        ).rows
    }
    let thread = Thread { [self] in
      while running.load(ordering: .relaxed) {
        switch mode {
        case .none: break
        case .http: httpListing(client!)
        case .paged: pagedListing()
        case .locked: lockedListing()
        case .encodeOnly:
          _ = try? APICoding.encoder.encode(["entries": fixedPage])
          countPage(rows: fixedPage.count)
        }
      }
      finished.signal()
    }
    thread.start()
    midListing.wait()
  }

  private func announce() {
    if !announced.exchange(true, ordering: .relaxed) { midListing.signal() }
  }

  private func countPage(rows count: Int) {
    pages.add(1, ordering: .relaxed)
    rows.add(count, ordering: .relaxed)
    announce()
  }

  /// Stops after the listing in progress; what was read.
  func stop() -> (pages: Int, rows: Int, listings: Int) {
    running.store(false, ordering: .relaxed)
    finished.wait()
    if let server {
      let done = DispatchSemaphore(value: 0)
      Task {
        await server.group.triggerGracefulShutdown()
        _ = try? await server.task.value
        done.signal()
      }
      done.wait()
    }
    return (
      pages.load(ordering: .relaxed), rows.load(ordering: .relaxed), listings.load(ordering: .relaxed)
    )
  }

  private func pagedListing() {
    var cursor: Int? = 0
    while let from = cursor, running.load(ordering: .relaxed) {
      let page = core.fdbPage(
        vni: nil, mac: nil, origin: nil, cursor: from, limit: Self.pageSize, now: 1, annotator: annotator)
      _ = try? APICoding.encoder.encode(["entries": page.rows])
      countPage(rows: page.rows.count)
      cursor = page.next
    }
    if cursor == nil { listings.add(1, ordering: .relaxed) }
  }

  /// `SwitchCore.fdbRows` as it was: the rows are built inside `forEach` (writer lock held),
  /// with the same filter and row code as `fdbPage`.
  private func lockedListing() {
    let fdb = core.fdb
    let state = core.state
    var listing: [FDBRow] = []
    fdb.forEach { key, entry in
      announce()
      guard let vni = core.listedVNI(key, entry, state: state, domain: nil, origin: nil) else { return }
      listing.append(core.fdbRow(key, entry, vni: vni, state: state, now: 1, annotator: annotator))
    }
    listing.sort { ($0.vni, $0.mac) < ($1.vni, $1.mac) }
    if listing.isEmpty { countPage(rows: 0) }
    var start = 0
    while start < listing.count {
      let end = min(listing.count, start + Self.pageSize)
      _ = try? APICoding.encoder.encode(["entries": Array(listing[start..<end])])
      countPage(rows: end - start)
      start = end
    }
    listings.add(1, ordering: .relaxed)
  }
}
