import CPacket
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The switch's clock: whole seconds since the switch started, starting at 1 (0 means
/// "never" in FDB stamps). Monotonic (CLOCK_MONOTONIC_COARSE: a vDSO read, no syscall).
public struct SwitchClock: Sendable {
  public let origin: Int64

  public init() { origin = Self.nanoseconds() }

  @inline(__always)
  public var now: UInt32 { UInt32(truncatingIfNeeded: (Self.nanoseconds() &- origin) / 1_000_000_000 &+ 1) }

  @inline(__always)
  static func nanoseconds() -> Int64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &time)
    return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
  }
}

/// The live data plane of one `SwitchCore`: ports on the real interfaces (AF_PACKET, or
/// AF_XDP where `[[interface]] io` asks for it and the interface takes it), packet worker
/// threads, a learner thread, and the next-hop resolver.
///
/// - Workers: `config.site.workers` threads, each pinned to `config.site.cpus[i]` when
///   given, each with its own `Pipeline` and its own port (sockets and rings) per
///   interface; with more than one worker the AF_PACKET ports of one interface form a
///   PACKET_FANOUT_HASH group, so a flow stays on one worker. AF_XDP: every receive
///   queue of the device gets a socket (the device's RSS keeps a flow on one queue);
///   worker `i` takes queue `i`, and with more queues than workers also queues
///   `i + workers`, ... (receive-only ports: one transmit ring per interface per worker);
///   with more workers than queues (a veth has one) the workers on a queue share its UMEM
///   and the XDP program spreads its flows over them (`XDPSteeringProgram.socketsPerQueue`).
/// - AF_XDP fallback: an interface whose AF_XDP set-up fails (no native XDP, a veth whose
///   peer's MTU is over a page, no privileges, a kernel without AF_XDP) gets AF_PACKET
///   ports instead, with a warning saying why; `portTypes` tells what each interface got.
/// - Worker loop: receive a batch from each readable port, `pipeline.process`, flush
///   every ring with pending frames, release the batch; when idle, `pipeline.idle()` and
///   poll() on the sockets and the stop eventfd.
/// - Learner: `core.drainLearnQueues()` when a worker has queued learn events (a worker
///   that queues into an empty-handed, sleeping learner wakes it through an eventfd;
///   while events keep coming the learner drains every `learnIntervalMilliseconds`),
///   `core.age(now:)` once a second, next-hop resolution (`NextHopResolver`) on netlink
///   notifications plus its 100 ms checks. An idle switch wakes about ten times a
///   second, not a thousand.
///
/// `start()` must run in the network namespace of the interfaces (see
/// `NetworkNamespace.run`): sockets are created there, threads start afterwards.
/// `stop()` joins everything and closes the sockets; it is idempotent. From a signal
/// handler call only `requestStop()` (an atomic store and a write(2) on an eventfd) or
/// write to `stopEventFD` yourself, then call `stop()` from normal context.
// @unchecked: workers own their ports and pipelines; shared state is atomics and mutexes.
public final class LiveSwitch: @unchecked Sendable {
  public struct Options: Sendable {
    /// Ring geometry and transmit version of every AF_PACKET port.
    public var port = AFPacketPort.Options()
    /// UMEM and ring sizes of every AF_XDP port.
    public var xdpPort = AFXDPPort.Options()
    /// Let a worker's AF_XDP ports share one UMEM, so that a frame received on one leaves
    /// through another from where it was received (`SharedUMEM.sendsInPlace`) instead of
    /// being copied into a transmit slot; off only to measure the copy
    /// (`VXSWITCH_XDP_IN_PLACE=off`).
    public var xdpSendsInPlace = true
    /// Turn LRO off on access interfaces (merged frames would lose what the VM sent), and
    /// GSO and TSO too unless TCP is coalesced: with them off the kernel would cut every
    /// coalesced super-frame up again before the veth. GRO stays as it is: what it merges
    /// arrives as a super-frame with its `virtio_net_hdr` and is segmented like a VM's,
    /// and on a veth GRO is what gives the receive work its own NAPI context (without it
    /// the switch's receive work runs on the sender's CPU). The underlay is shared with
    /// the host and left alone.
    public var disableOffloads = true
    /// Coalesce TCP segments toward access ports into super-frames (`TCPCoalescer`),
    /// with transmit slots sized for them.
    public var coalesceTCP = true
    /// Flows a coalescer merges at once (1 to `TCPCoalescer.runCapacity`); fewer only to
    /// measure what several bring (`Bench tcp --system vxswitch-single-flow`).
    public var coalescedFlows = TCPCoalescer.runCapacity
    /// Send runs of VXLAN datagrams to one VTEP as one UDP GSO frame on the underlay
    /// (`UnderlaySegmenter`; `PACKET_VNET_HDR` and 64 KiB transmit slots there).
    public var underlaySegmentation = true
    /// Whether access ports leave the payloads of a super-frame's segments in the
    /// super-frame for the pipeline to copy where they go (`DeferredPayload`: one copy
    /// toward a GSO frame instead of two). Off by default: it cuts the sending daemon's
    /// own CPU time, but `Bench tcp` measured more CPU per Gbit for the whole machine
    /// with it (README, "TCP between VMs").
    public var deferSegmentPayloads = false
    /// Whether the segmenter has datagrams encapsulated in its GSO frame itself
    /// (`TxRing.stagePayload`) rather than copied there; off only to measure it.
    public var underlayJoinsInPlace = true
    /// Ask for UDP GRO on the VXLAN port (`VXLANPortHolder`), so that with GRO on the
    /// underlay device a flow's datagrams reach the underlay port merged (experimental).
    public var underlayReceiveOffload = false
    /// Hand VM super-frames bound for the underlay to the kernel encapsulated but whole,
    /// through a tap with UDP-tunnel GSO redirected to the underlay
    /// (`RedirectingTap`, `TunnelRun`; Linux 6.17 on, an AF_PACKET IPv4 underlay
    /// without UDP checksums), instead of cutting them in the switch. Segment payloads
    /// are then left in the super-frame (`deferSegmentPayloads`). Where the tap cannot be
    /// made, a warning says why and the switch cuts super-frames itself.
    public var underlayTunnelSegmentation = true
    /// Send TCP super-frames coalesced toward a VM through a tap redirected to its port
    /// (`RedirectingTap`, `TCPCoalescer.tap`), their payloads written straight from where
    /// the underlay port received them, instead of through the port's ring. Where the tap
    /// cannot be made, a warning says why and the ring takes them.
    public var vmTaps = true
    /// Hold the VXLAN UDP port (see `VXLANPortHolder`).
    public var holdVXLANPort = true
    /// End the VXLAN datagrams an AF_PACKET underlay receives at tc ingress, after the
    /// switch's copy, instead of letting them climb the host's stack to the holder
    /// (`UnderlayStackBypass`); off only to measure what it saves.
    public var bypassStackForVXLAN = true
    /// Follow underlay next hops through netlink (`NextHopResolver`).
    public var resolveNextHops = true
    public var resolver = NextHopResolver.Options()
    /// Milliseconds between learn-queue drains while learn events keep coming.
    public var learnIntervalMilliseconds: Int32 = 1
    public init() {}
  }

  public let core: SwitchCore
  public let options: Options
  public let clock = SwitchClock()
  /// Seconds since start, starting at 1: the clock vectors and the ager use.
  public var now: UInt32 { clock.now }

  /// Written (8 bytes, any non-zero value) to stop every thread; async-signal-safe.
  public let stopEventFD: Int32
  private let stopping = Atomic<Bool>(false)
  /// The learner is (about to be) asleep with every learn queue found empty; the first
  /// worker to queue an event after that wakes it through `learnerWakeFD`.
  private let learnerSleeping = Atomic<Bool>(false)
  private let learnerWakeFD: Int32
  private let lifecycle = Mutex<Phase>(.idle)
  private enum Phase { case idle, running, stopped }

  /// ports[worker][interface index in core.interfaces]: the port each worker receives on
  /// and transmits through, per interface.
  public private(set) var ports: [[any LivePort]] = []
  /// More ports each worker receives on: the AF_XDP sockets on the queues of a device
  /// with more receive queues than there are workers (worker `i` takes queue `i` in
  /// `ports`, and queues `i + workers`, `i + 2 x workers`, ... here).
  private var receiveOnlyPorts: [[any LivePort]] = []
  /// The port type each interface got, in `core.interfaces` order (after any fallback).
  public private(set) var portTypes: [PortIO] = []
  /// The XDP programs attached for AF_XDP ports, detached on stop.
  private var attachments: [XDPAttachment] = []
  public private(set) var resolver: NextHopResolver? = nil
  private var holder: VXLANPortHolder? = nil
  private var stackBypass: UnderlayStackBypass? = nil
  private var tunnelTap: RedirectingTap? = nil
  /// The taps of VM ports, by interface index in `core.interfaces` (`Options.vmTaps`).
  private var vmTaps: [UInt16: RedirectingTap] = [:]
  /// The tap VM super-frames leave through, when there is one (`Options.underlayTunnelSegmentation`).
  public var tunnelTapName: String? { tunnelTap.map(\.name) }
  /// The tap an interface's super-frames go through (`offload_tap`), by index in
  /// `core.interfaces`: the underlay's tunnel tap, an access port's VM tap; nil where
  /// there is none. Made by `start`, gone after `stop`.
  public func offloadTap(interface index: Int) -> String? {
    if core.interfaces.indices.contains(index) && core.interfaces[index] == core.config.site.underlay {
      return tunnelTap?.name
    }
    return vmTaps[UInt16(truncatingIfNeeded: index)]?.name
  }
  /// Whether the underlay's VXLAN datagrams end at tc ingress (`UnderlayStackBypass`).
  public var bypassesStackForVXLAN: Bool { stackBypass?.isAttached ?? false }
  private var threads: [NativeThread] = []
  private var pipelines: [Pipeline] = []
  private var claims: [String] = []
  /// Non-fatal problems met while starting (an offload that could not be turned off).
  public private(set) var warnings: [String] = []

  private static let claimed = Mutex<Set<String>>([])

  public init(core: SwitchCore, options: Options = Options()) {
    self.core = core
    self.options = options
    stopEventFD = cp_eventfd()
    learnerWakeFD = cp_eventfd()
  }

  deinit {
    stop()
    if stopEventFD >= 0 { Glibc.close(stopEventFD) }
    if learnerWakeFD >= 0 { Glibc.close(learnerWakeFD) }
  }

  public var isRunning: Bool { lifecycle.withLock { $0 == .running } }

  /// Counters of every port, per worker, in `core.interfaces` order.
  public var portStatistics: [[PortStatistics]] {
    ports.indices.map { worker in
      var statistics = ports[worker].map(\.statistics)
      for port in receiveOnlyPorts[worker] { statistics[Int(port.switchInterface)].add(port.statistics) }
      return statistics
    }
  }

  // MARK: Start

  public func start() throws {
    try lifecycle.withLock { phase in
      guard phase == .idle else { throw AFPacketError.invalidConfiguration("a LiveSwitch starts once") }
      do {
        try open()
      } catch {
        closeEverything()
        ports.removeAll()
        receiveOnlyPorts.removeAll()
        resolver = nil
        throw error
      }
      phase = .running
    }
    spawnThreads()
  }

  private func open() throws {
    guard stopEventFD >= 0 else {
      throw AFPacketError.system(operation: "eventfd", interface: "-", errno: -stopEventFD)
    }
    guard learnerWakeFD >= 0 else {
      throw AFPacketError.system(operation: "eventfd", interface: "-", errno: -learnerWakeFD)
    }
    let config = core.config
    let interfaces = core.interfaces
    let workers = config.site.workers
    guard workers >= 1 else { throw AFPacketError.invalidConfiguration("workers must be at least 1") }
    guard interfaces.count <= ForwardingState.maxInterfaces else {
      throw AFPacketError.invalidConfiguration("at most \(ForwardingState.maxInterfaces) interfaces")
    }
    // One role per interface: an access port on the underlay would need two filters.
    var seen = Set<String>()
    for name in interfaces where !seen.insert(name).inserted {
      throw AFPacketError.interfaceClaimedTwice(name)
    }
    for domain in config.bridgeDomains {
      for port in domain.ports where port.interface == config.site.underlay {
        throw AFPacketError.interfaceClaimedTwice(port.interface)
      }
    }
    for name in interfaces { _ = try Syscall.interfaceIndex(name) }
    // Privilege first, with a clear message, before touching anything.
    let probe = cp_packet_socket()
    if probe < 0 {
      throw AFPacketError.from(
        errno: -probe, operation: "socket(AF_PACKET)", interface: interfaces.first ?? "-")
    }
    Syscall.close(probe)

    let namespace = NetworkNamespace.currentIdentifier
    try Self.claimed.withLock { set in
      let keys = interfaces.map { "\(namespace)/\($0)" }
      if let taken = zip(keys, interfaces).first(where: { set.contains($0.0) }) {
        throw AFPacketError.interfaceClaimedTwice(taken.1)
      }
      set.formUnion(keys)
      claims = keys
    }

    let underlay = config.site.underlay
    if options.disableOffloads {
      let control = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      defer { Syscall.close(control) }
      var features = [(CP_FEATURE_LRO, "lro")]
      if !options.coalesceTCP { features += [(CP_FEATURE_GSO, "gso"), (CP_FEATURE_TSO, "tso")] }
      for name in interfaces where name != underlay {
        for (feature, label) in features {
          guard cp_ethtool_get_feature(control, name, Int32(feature)) == 1 else { continue }
          let result = cp_ethtool_set_feature(control, name, Int32(feature), 0)
          if result < 0 {
            warnings.append("\(name): cannot turn \(label) off: \(AFPacketError.text(-result))")
          }
        }
      }
    }
    // The underlay's MAC, unless configured, before the first frame is encapsulated.
    if config.site.underlayMAC == nil {
      let control = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      defer { Syscall.close(control) }
      var mac = (UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0))
      let result = withUnsafeMutableBytes(of: &mac) {
        cp_interface_hwaddr(control, underlay, $0.baseAddress!.assumingMemoryBound(to: UInt8.self))
      }
      if result == 0 { core.setUnderlayMAC(MACAddress(mac)) }
    }
    if options.holdVXLANPort {
      holder = try VXLANPortHolder(
        address: config.site.vtep, port: config.site.udpPort, receiveOffload: options.underlayReceiveOffload)
    }
    var portOptions = options.port
    if !options.coalesceTCP { portOptions.superFrameTransmit = false }
    portOptions.underlaySegmentation = options.underlaySegmentation
    portOptions.deferSegmentPayloads = options.deferSegmentPayloads
    // The tap takes what an AF_PACKET underlay sends (with outer UDP checksums, over
    // IPv6 always, the kernel sums them per datagram); an AF_XDP underlay has the
    // switch cut super-frames, as it always did.
    if options.underlayTunnelSegmentation && portOptions.underlaySegmentation
      && config.io(of: underlay) == .afPacket && config.offloadTap(of: underlay)
    {
      do {
        let index = try Syscall.interfaceIndex(underlay)
        tunnelTap = try RedirectingTap(
          name: "vxstnl\(index)", target: underlay, headerSize: TunnelSegmentationFrame.headerLength,
          offloads: TunnelSegmentationFrame.tapOffloads)
        portOptions.deferSegmentPayloads = true
      } catch {
        warnings.append("\(error); super-frames are cut by the switch")
      }
    }
    // Refused frames would vanish silently from the ring (PACKET_LOSS): ask first.
    if options.underlaySegmentation, let refusal = UDPSegmentationProbe.refusal() {
      warnings.append("\(underlay): no UDP GSO on the underlay, one datagram per frame: \(refusal)")
      core.statistics.add(Counter.underlayGSOFallbacks, 1)
      portOptions.underlaySegmentation = false
    }
    var columns: [[any LivePort]] = []
    var receiveOnly = [[any LivePort]](repeating: [], count: workers)
    let sending = inPlaceMemories(interfaces: interfaces, workers: workers, warnings: &warnings)
    for memory in sending ?? [] { memory.holdWhileOpening() }
    defer { for memory in sending ?? [] { memory.openingDone() } }
    for (index, name) in interfaces.enumerated() {
      let isUnderlay = name == underlay
      var column: [any LivePort] = []
      var io = config.io(of: name)
      if io == .afXDP {
        do {
          let opened = try openXDPPorts(
            interface: name, isUnderlay: isUnderlay, workers: workers, sharing: sending)
          column = opened.map(\.port)
          for (worker, ports) in opened.map(\.receiveOnly).enumerated() {
            for port in ports { port.switchInterface = UInt16(index) }
            receiveOnly[worker] += ports
          }
        } catch {
          warnings.append("\(name): AF_XDP unavailable, using AF_PACKET: \(error)")
          io = .afPacket
        }
      }
      if io == .afPacket {
        let role: AFPacketPort.Role =
          isUnderlay ? .underlay(vtep: config.site.vtep, udpPort: config.site.udpPort) : .access
        var group: UInt16? = nil
        for _ in 0..<workers {
          var fanout: AFPacketPort.Fanout? = nil
          if workers > 1 { fanout = group.map { .join($0) } ?? .create }
          let port = try AFPacketPort(interface: name, role: role, options: portOptions, fanout: fanout)
          if let refusal = port.segmentationRefusal {
            warnings.append("\(name): no UDP GSO on the underlay, one datagram per frame: \(refusal)")
            core.statistics.add(Counter.underlayGSOFallbacks, 1)
          }
          group = group ?? port.fanoutGroup
          column.append(port)
        }
        if !isUnderlay && options.vmTaps && config.offloadTap(of: name) && portOptions.superFrameTransmit {
          do {
            let device = try Syscall.interfaceIndex(name)
            vmTaps[UInt16(index)] = try RedirectingTap(
              name: "vxsvm\(device)", target: name, headerSize: VirtioNetHeader.length,
              offloads: RedirectingTap.segmentationOffloads)
          } catch {
            warnings.append("\(error); super-frames toward \(name) go through its ring")
          }
        }
        if isUnderlay && options.bypassStackForVXLAN {
          do {
            stackBypass = try UnderlayStackBypass(
              interface: name, vtep: config.site.vtep, udpPort: config.site.udpPort)
          } catch {
            warnings.append("\(error); VXLAN datagrams also climb the host's stack to the port holder")
          }
        }
      }
      for worker in column.indices { column[worker].switchInterface = UInt16(index) }
      portTypes.append(io)
      columns.append(column)
    }
    ports = (0..<workers).map { worker in columns.map { $0[worker] } }
    receiveOnlyPorts = receiveOnly
    if options.resolveNextHops {
      let resolver = try NextHopResolver(core: core, interface: underlay, options: options.resolver)
      resolver.refresh()
      self.resolver = resolver
    }
    for _ in 0..<workers {
      let pipeline = core.makePipeline()
      pipeline.coalescesTCP = options.coalesceTCP
      pipeline.coalescedFlows = options.coalescedFlows
      pipeline.segmentsUnderlay = portOptions.underlaySegmentation
      pipeline.joinsUnderlayInPlace = options.underlayJoinsInPlace
      pipelines.append(pipeline)
    }
  }

  /// The AF_XDP ports on `interface`, behind the switch's steering program: per worker,
  /// the port it transmits through and any more it only receives on. Every receive queue
  /// of the device gets a socket (ethtool's channel count; one per worker when the driver
  /// does not say), since a frame can only be redirected to a socket bound to the queue
  /// it arrived on: with fewer queues than workers, worker `i` binds queue
  /// `i % queues`, and the workers of a queue share its UMEM while the program spreads
  /// the queue's flows over their sockets; with more queues than workers, worker `i`
  /// takes queues `i`, `i + workers`, and so on. Everything opened so far is closed again
  /// on failure.
  /// With `sharing` (one UMEM per worker, `inPlaceMemories`), each queue's socket goes
  /// into the UMEM of the worker that takes the queue.
  private func openXDPPorts(interface: String, isUnderlay: Bool, workers: Int, sharing: [SharedUMEM]?) throws
    -> [(port: any LivePort, receiveOnly: [any LivePort])]
  {
    let config = core.config
    let match: XDPSteeringProgram.Match =
      isUnderlay ? .vxlan(vtep: config.site.vtep, udpPort: config.site.udpPort) : .everything
    let queues = Self.receiveQueues(interface, workers: workers)
    let sharingQueues = queues < workers
    let perQueue = sharingQueues ? (workers + queues - 1) / queues : 1
    let attachment = try XDPAttachment(
      interface: interface, program: XDPSteeringProgram(match: match, socketsPerQueue: perQueue),
      queues: queues)
    var byQueue: [[AFXDPPort]] = []
    do {
      for queue in 0..<queues {
        if let memories = sharing, !sharingQueues {
          byQueue.append([
            try AFXDPPort.open(
              interface: interface, queue: UInt32(queue), sharing: memories[queue % workers],
              isUnderlay: isUnderlay, attachment: attachment, options: options.xdpPort)
          ])
          continue
        }
        byQueue.append(
          try AFXDPPort.open(
            interface: interface, queue: UInt32(queue),
            sockets: sharingQueues ? (workers - queue + queues - 1) / queues : 1,
            isUnderlay: isUnderlay, attachment: attachment, options: options.xdpPort))
      }
    } catch {
      for port in byQueue.joined() { port.close() }
      attachment.detach()
      throw error
    }
    attachments.append(attachment)
    return (0..<workers).map { worker in
      if sharingQueues { return (byQueue[worker % queues][worker / queues], []) }
      return (
        byQueue[worker][0], stride(from: worker + workers, to: queues, by: workers).map { byQueue[$0][0] }
      )
    }
  }

  /// The receive queues of `interface` (ethtool's channel count), one per worker when the
  /// driver does not say.
  private static func receiveQueues(_ interface: String, workers: Int) -> Int {
    let queues = Int(cp_interface_rx_queues(interface))
    return queues > 0 ? queues : workers
  }

  /// Per worker, one UMEM for all its AF_XDP sockets (a context per queue it takes on each
  /// AF_XDP interface), so that a frame leaves from where it was received
  /// (`SharedUMEM.sendsInPlace`); nil where that cannot be: fewer than two AF_XDP
  /// interfaces, a device with fewer receive queues than workers (its workers share each
  /// queue's UMEM instead), more queues than a UMEM has contexts, or the option off.
  private func inPlaceMemories(interfaces: [String], workers: Int, warnings: inout [String]) -> [SharedUMEM]?
  {
    guard options.xdpSendsInPlace else { return nil }
    let xdp = interfaces.filter { core.config.io(of: $0) == .afXDP }
    guard xdp.count >= 2 else { return nil }
    var contexts = [Int](repeating: 0, count: workers)
    for name in xdp {
      let queues = Self.receiveQueues(name, workers: workers)
      if queues < workers { return nil }
      for queue in 0..<queues { contexts[queue % workers] += 1 }
    }
    guard contexts.allSatisfy({ $0 <= Int(CP_XSK_MAX_CONTEXTS) }) else { return nil }
    do {
      return try contexts.map { count in
        try SharedUMEM(
          interface: xdp.joined(separator: ","), contexts: count, sockets: count, socketsPerContext: 1,
          frameSize: options.xdpPort.frameSize, ringSize: options.xdpPort.ringSize, sendsInPlace: true)
      }
    } catch {
      warnings.append("AF_XDP: no shared UMEM, frames are copied between ports: \(error)")
      return nil
    }
  }

  private func spawnThreads() {
    let cpus = core.config.site.cpus
    for (worker, row) in ports.enumerated() {
      let pipeline = pipelines[worker]
      let cpu = cpus.isEmpty ? nil : cpus[worker % cpus.count]
      threads.append(
        NativeThread(name: "vxs-worker-\(worker)") { [self] in
          if let cpu { _ = cp_pin_current_thread(Int32(cpu)) }
          workerLoop(pipeline: pipeline, ports: row, receiveOnly: receiveOnlyPorts[worker])
        })
    }
    threads.append(NativeThread(name: "vxs-learner") { [self] in learnerLoop() })
  }

  // MARK: Stop

  /// Asks every thread to stop; returns at once. Async-signal-safe.
  public func requestStop() {
    stopping.store(true, ordering: .releasing)
    var one: UInt64 = 1
    _ = Glibc.write(stopEventFD, &one, 8)
  }

  /// Stops the threads, waits for them, closes every socket. Idempotent.
  public func stop() {
    let wasRunning = lifecycle.withLock { phase -> Bool in
      defer { if phase != .idle { phase = .stopped } }
      return phase == .running
    }
    requestStop()
    guard wasRunning else { return }
    for thread in threads { thread.join() }
    threads.removeAll()
    closeEverything()
  }

  private func closeEverything() {
    for pipeline in pipelines { core.retire(pipeline) }
    pipelines.removeAll()
    for row in ports + receiveOnlyPorts { for port in row { port.close() } }
    for attachment in attachments { attachment.detach() }
    attachments.removeAll()
    resolver?.close()
    stackBypass?.detach()
    stackBypass = nil
    tunnelTap?.close()
    tunnelTap = nil
    for tap in vmTaps.values { tap.close() }
    vmTaps.removeAll()
    holder?.close()
    holder = nil
    let keys = claims
    Self.claimed.withLock { $0.subtract(keys) }
    claims.removeAll()
  }

  // MARK: Loops

  private func workerLoop(pipeline: Pipeline, ports transmitting: [any LivePort], receiveOnly: [any LivePort])
  {
    let row = transmitting + receiveOnly
    let count = row.count
    let descriptors = UnsafeMutablePointer<pollfd>.allocate(capacity: count + 1)
    defer { descriptors.deallocate() }
    for (index, port) in row.enumerated() {
      descriptors[index] = pollfd(fd: port.fd, events: Int16(POLLIN), revents: 0)
    }
    descriptors[count] = pollfd(fd: stopEventFD, events: Int16(POLLIN), revents: 0)
    let rings = UnsafeMutablePointer<UnsafeMutablePointer<TxRing>>.allocate(capacity: count)
    defer { rings.deallocate() }
    for (index, port) in row.enumerated() {
      rings[index] = port.transmitRing
      // One transmit ring per interface: a receive-only port's ring stays empty.
      if index < transmitting.count {
        pipeline.attach(interface: port.switchInterface, ring: port.transmitRing, underlay: port.isUnderlay)
        if port.isUnderlay, let tap = tunnelTap, let packetPort = port as? AFPacketPort {
          pipeline.useTunnelTap(tap.fd, ringSocket: packetPort.transmitFD)
        }
        if !port.isUnderlay, let tap = vmTaps[port.switchInterface], let packetPort = port as? AFPacketPort {
          pipeline.useAccessTap(interface: port.switchInterface, tap.fd, ringSocket: packetPort.transmitFD)
        }
      }
    }
    var vector = FrameVector()
    let clock = self.clock
    while !stopping.load(ordering: .relaxed) {
      var worked = false
      for index in 0..<count {
        let port = row[index]
        // A few batches per port per turn keep one busy interface from starving others.
        for _ in 0..<4 {
          vector.count = 0
          let received = port.receive(into: &vector)
          if received == 0 {
            port.releaseReceived()  // blocks holding only dropped (truncated) frames
            break
          }
          vector.ingress = port.switchInterface
          vector.now = clock.now
          pipeline.process(&vector)
          if !pipeline.learnQueue.isEmpty { wakeLearnerIfSleeping() }
          for ring in 0..<count where rings[ring].pointee.pending > 0 { row[ring].flushTransmit() }
          port.releaseReceived()
          worked = true
          if received < FrameVector.capacity { break }
        }
      }
      if worked { continue }
      // Frames a kick could not send (EAGAIN/ENOBUFS) are retried after a short wait; a
      // ring whose interface is down waits for the next turn (traffic or the 1 s poll),
      // rather than a kick failing with ENETDOWN every millisecond until it is up.
      var backlog = false
      for ring in 0..<count where rings[ring].pointee.pending > 0 {
        row[ring].flushTransmit()
        if rings[ring].pointee.pending > 0 && !row[ring].transmitLinkDown { backlog = true }
      }
      pipeline.idle()
      let ready = poll(descriptors, nfds_t(count + 1), backlog ? 1 : 1000)
      if ready <= 0 { continue }
      if descriptors[count].revents != 0 { break }
      for index in 0..<count where descriptors[index].revents & Int16(POLLERR) != 0 {
        row[index].clearSocketError()
      }
    }
  }

  /// Called by a worker whose learn queue holds events. Store-load ordering against the
  /// learner's "sleeping, queues empty" check (both sides fence), so that either the
  /// learner sees the event or the worker sees the learner asleep and wakes it.
  @inline(__always)
  private func wakeLearnerIfSleeping() {
    atomicMemoryFence(ordering: .sequentiallyConsistent)
    if learnerSleeping.load(ordering: .relaxed)
      && learnerSleeping.exchange(false, ordering: .acquiringAndReleasing)
    {
      var one: UInt64 = 1
      _ = Glibc.write(learnerWakeFD, &one, 8)
    }
  }

  private func learnerLoop() {
    var descriptors = [
      pollfd(fd: stopEventFD, events: Int16(POLLIN), revents: 0),
      pollfd(fd: resolver?.eventFD ?? -1, events: Int16(POLLIN), revents: 0),
      pollfd(fd: learnerWakeFD, events: Int16(POLLIN), revents: 0),
    ]
    // Idle: wake for aging (1 s) and the resolver's VTEP checks (100 ms).
    let idleTimeout: Int32 = resolver == nil ? 1000 : 100
    var lastAged: UInt32 = 0
    var drained = 0
    while !stopping.load(ordering: .relaxed) {
      var timeout = options.learnIntervalMilliseconds
      if drained == 0 {
        learnerSleeping.store(true, ordering: .relaxed)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if core.learnQueuesAreEmpty { timeout = idleTimeout }
      }
      let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
      learnerSleeping.store(false, ordering: .relaxed)
      if ready > 0 && descriptors[0].revents != 0 { break }
      if ready > 0 && descriptors[2].revents != 0 {
        var value: UInt64 = 0
        _ = Glibc.read(learnerWakeFD, &value, 8)
      }
      drained = core.drainLearnQueues()
      let now = clock.now
      if now != lastAged {
        core.age(now: now)
        lastAged = now
      }
      if let resolver {
        if ready > 0 && descriptors[1].revents != 0 { resolver.handleEvents() }
        resolver.tick()
      }
    }
  }
}

/// A joinable pthread running a closure (Foundation's Thread cannot be joined).
final class NativeThread {
  private var thread = pthread_t()
  private var joined = false

  private final class Box {
    let name: String
    let body: () -> Void
    init(name: String, body: @escaping () -> Void) {
      self.name = name
      self.body = body
    }
  }

  init(name: String, _ body: @escaping () -> Void) {
    let box = Unmanaged.passRetained(Box(name: name, body: body)).toOpaque()
    let result = pthread_create(
      &thread, nil,
      { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        cp_set_thread_name(box.name)
        box.body()
        return nil
      }, box)
    precondition(result == 0, "pthread_create failed: \(result)")
  }

  func join() {
    if !joined {
      pthread_join(thread, nil)
      joined = true
    }
  }
}
