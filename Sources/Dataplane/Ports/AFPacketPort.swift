import CPacket
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A `PacketPort` on a Linux interface through AF_PACKET rings: a TPACKET_V3 receive
/// ring walked block by block, and a TPACKET_V2 (separate send-only socket) or V3 (same
/// socket) transmit ring that the pipeline fills in place.
///
/// One port per (worker, interface): the rings and the cursor below belong to the worker
/// thread that calls `receive`/`releaseReceived`/`flushTransmit`. `statistics` may be
/// read from any thread.
///
/// Offloads: a VM's stack (behind a veth or a tap) hands over TSO/USO super-frames of up
/// to 64 KiB and frames whose L4 checksum it left for "hardware". Access ports ask for
/// the `virtio_net_hdr` (`PACKET_VNET_HDR`), which says how to finish each: super-frames
/// are cut into wire-sized frames here (`SuperFrame`) before the pipeline sees them, and
/// unfinished checksums are completed. The receive blocks (256 KiB by default) hold a
/// 64 KiB frame whole; anything the kernel truncated (`tp_snaplen < tp_len`) is dropped
/// and counted, never forwarded cut short. On transmit the same socket expects a header
/// in front of every frame: the ring's slots carry a zeroed one (`TxRing.framePrefix`).
/// The underlay asks for the header too (`Options.underlaySegmentation`): runs of VXLAN
/// datagrams to one VTEP leave as one UDP GSO frame (`UnderlaySegmenter`), and a
/// received frame whose unfinished checksum is the outer UDP one is taken as verified.
public final class AFPacketPort: LivePort {
  /// Which transmit ring layout to use. Measured with LiveMeasure on a veth pair, 64-byte
  /// frames, 2-core VM, 8 alternating runs of 3 s: V2 (own send-only socket) 160k-328k,
  /// mean 236k frames/s; V3 (same socket as RX) 220k-369k, mean 273k frames/s. V3 is
  /// the default (and needs one socket per port instead of two).
  public enum TransmitVersion: Sendable, Equatable {
    case v2
    case v3
  }

  /// What the port is for; decides the BPF filter and promiscuous mode.
  public enum Role: Sendable, Equatable {
    /// An access interface: every frame, promiscuous.
    case access
    /// The shared underlay: only UDP to the local VTEP address and VXLAN port (IPv4 or
    /// IPv6, untagged or with one VLAN tag); the host's own traffic is not captured.
    case underlay(vtep: IPAddress, udpPort: UInt16)
  }

  /// Fanout membership for several workers on one interface (PACKET_FANOUT_HASH).
  public enum Fanout: Sendable, Equatable {
    /// First member: the kernel picks a free group id (`fanoutGroup` reads it back).
    case create
    /// Join an existing group.
    case join(UInt16)
  }

  public struct Options: Sendable, Equatable {
    /// Receive block size (a multiple of the page size) and count.
    public var rxBlockSize = 1 << 18
    public var rxBlockCount = 32
    /// A block is handed over when full or after this many milliseconds.
    public var retireTimeoutMilliseconds = 1
    /// Transmit slots (a power of two).
    public var txSlotCount = 1024
    /// Transmit slot size in bytes; nil sizes it from the interface MTU, or for 64 KiB
    /// super-frames (see `superFrameTransmit`).
    public var txSlotSize: Int? = nil
    /// With the `virtio_net_hdr` (and the V3 ring, which carries it), transmit slots of
    /// 64 KiB, `superFrameSlotCount` of them instead of `txSlotCount`, so that a
    /// coalesced TCP super-frame fits one slot (`TCPCoalescer`; the kernel neither
    /// splits a frame over slots nor takes one longer than its slot).
    public var superFrameTransmit = true
    public var superFrameSlotCount = 256
    public var transmitVersion: TransmitVersion = .v3
    /// Promiscuous mode; nil means "on for access ports, off for the underlay".
    public var promiscuous: Bool? = nil
    /// A libpcap filter expression replacing the role's.
    public var filter: String? = nil
    /// `PACKET_VNET_HDR` (super-frames segmented, offloaded checksums finished); nil
    /// means "on for access ports, and on the underlay with `underlaySegmentation`".
    public var virtioNetHeader: Bool? = nil
    /// On the underlay: `PACKET_VNET_HDR` with 64 KiB transmit slots, so that runs of
    /// VXLAN datagrams to one VTEP can leave as one UDP GSO frame (`UnderlaySegmenter`).
    /// Where the kernel refuses the option the port opens without it
    /// (`segmentationRefusal` says why) and sends one datagram per frame as before.
    public var underlaySegmentation = true
    /// Bytes for the segments of super-frames, reused every batch.
    public var segmentArenaBytes = 1 << 20
    /// On access ports: segments of super-frames without their payload, which stays in
    /// the super-frame (`FrameFlags.payloadDeferred`, `DeferredPayload`). Only for a
    /// consumer that handles such frames: the pipeline does (`LiveSwitch` turns it on).
    public var deferSegmentPayloads = false
    public init() {}
  }

  public typealias Statistics = PortStatistics

  public let name: String
  public let interfaceIndex: Int32
  public let role: Role
  public var io: PortIO { .afPacket }
  public var isUnderlay: Bool { role != .access }
  /// Access ports finish unfinished L4 checksums themselves; the underlay leaves them to
  /// the pipeline, which knows where the inner frame starts.
  private let completesChecksums: Bool
  /// Whether frames arrive (and leave) behind a `virtio_net_hdr`.
  public let hasVirtioNetHeader: Bool
  /// Why an underlay port that was to carry UDP GSO frames opened without the
  /// `virtio_net_hdr` (the kernel refused `PACKET_VNET_HDR`), nil otherwise.
  public let segmentationRefusal: String?
  public let options: Options
  /// Index of this interface in `SwitchCore.interfaces` (set by LiveSwitch).
  public var switchInterface: UInt16 = 0

  /// The receive socket (poll it for POLLIN).
  public let fd: Int32
  /// The transmit socket: `fd` for V3, a separate send-only socket for V2.
  public let transmitFD: Int32
  public private(set) var fanoutGroup: UInt16? = nil

  private let rx: PacketRingMapping
  private let tx: PacketRingMapping?
  private let rxBlockSize: Int
  private let rxBlockCount: Int
  private let cursor: UnsafeMutablePointer<RxCursor>
  /// The super-frame being cut up when a batch filled before its last segment, with
  /// its VLAN tag; its block is held back from `releaseReceived` until it is done.
  private let pendingSuperFrame: UnsafeMutablePointer<SuperFrame?>
  private var pendingVLANTag: UInt32 = 0
  private var heldBlock = -1
  /// Segment memory, reused from the start at every `receive`.
  private let segmentArena: UnsafeMutableRawPointer
  private let segmentArenaBytes: Int
  private let defersSegmentPayloads: Bool
  public let transmitRing: UnsafeMutablePointer<TxRing>
  private let counters = PortCounters()
  private let kernelCounters = Mutex<(drops: UInt64, freezes: UInt64)>((0, 0))
  private var closed = false

  /// Where the receive walk is: the block being consumed (or to open next), what is
  /// left of it, and which consumed blocks are still to hand back.
  struct RxCursor {
    var block = 0
    var remaining = 0
    var next: UnsafeMutableRawPointer? = nil
    var releaseFrom = 0
    var consumed = 0
  }

  /// Opens the port on `interface`. Must run in the network namespace of the interface
  /// (sockets keep the namespace they were created in).
  public init(interface: String, role: Role, options: Options = Options(), fanout: Fanout? = nil) throws {
    name = interface
    self.role = role
    if case .access = role { completesChecksums = true } else { completesChecksums = false }
    var virtioNetHeader = options.virtioNetHeader ?? (completesChecksums || options.underlaySegmentation)
    self.options = options
    let ifindex = try Syscall.interfaceIndex(interface)
    interfaceIndex = ifindex
    let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    guard options.rxBlockSize % pageSize == 0, options.rxBlockSize >= pageSize, options.rxBlockCount > 0
    else {
      throw AFPacketError.invalidConfiguration("rx block size must be a multiple of \(pageSize)")
    }
    for count in [options.txSlotCount, options.superFrameSlotCount]
    where count <= 0 || count & (count - 1) != 0 {
      throw AFPacketError.invalidConfiguration("tx slot counts must be powers of two")
    }
    // UDP GSO on the underlay wants the header, not at the cost of a refused geometry.
    if options.virtioNetHeader == nil && !completesChecksums && options.rxBlockSize < 1 << 17 {
      virtioNetHeader = false
    }
    // A super-frame of 64 KiB plus the frame header, the virtio header and alignment.
    guard !virtioNetHeader || options.rxBlockSize >= 1 << 17 else {
      throw AFPacketError.invalidConfiguration(
        "rx block size must be at least 128 KiB to hold 64 KiB super-frames whole")
    }
    rxBlockSize = options.rxBlockSize
    rxBlockCount = options.rxBlockCount
    segmentArenaBytes = max(options.segmentArenaBytes, 1 << 17)
    defersSegmentPayloads = options.deferSegmentPayloads && role == .access

    let socketFD = try Syscall.cp("socket(AF_PACKET)", interface) { cp_packet_socket() }
    var toClose: [Int32] = [socketFD]
    var mappings: [PacketRingMapping] = []
    do {
      // Order matters: version and filter before bind (nothing is received before bind,
      // the socket was made with protocol 0), bind before the ring, so that the ring
      // never holds frames of other interfaces.
      try Self.setOption(socketFD, CP_PACKET_VERSION, CP_TPACKET_V3, "PACKET_VERSION", interface)
      // Before the rings: the kernel refuses it once a ring exists.
      var refusal: String? = nil
      if virtioNetHeader {
        do {
          try Self.setOption(socketFD, CP_PACKET_VNET_HDR, 1, "PACKET_VNET_HDR", interface)
        } catch  where !completesChecksums && options.virtioNetHeader == nil {
          // Only UDP GSO needs it on the underlay: without it, one datagram per frame.
          refusal = "\(error)"
          virtioNetHeader = false
        }
      }
      hasVirtioNetHeader = virtioNetHeader
      segmentationRefusal = refusal
      if let expression = options.filter ?? Self.filterExpression(for: role) {
        try Self.attachFilter(socketFD, expression, interface)
      }
      try Self.setOption(socketFD, CP_PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING", interface)
      let superFrameSlots =
        virtioNetHeader && options.superFrameTransmit && options.transmitVersion == .v3
        && options.txSlotSize == nil
      let slotSize =
        try superFrameSlots
        ? Self.superFrameSlotSize : options.txSlotSize ?? Self.defaultSlotSize(interface: interface)
      let slotCount = superFrameSlots ? options.superFrameSlotCount : options.txSlotCount
      if options.transmitVersion == .v3 {
        // Not for UDP GSO frames on the underlay: the bypass (`__dev_direct_xmit`) drops
        // any frame the device cannot segment itself (a veth or NIC without USO), where
        // `dev_queue_xmit` cuts it up in software.
        if !(virtioNetHeader && !completesChecksums) {
          try Self.setOption(socketFD, CP_PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS", interface)
        }
        try Self.setOption(socketFD, CP_PACKET_LOSS, 1, "PACKET_LOSS", interface)
      }
      _ = try Syscall.cp("bind", interface) { cp_packet_bind(socketFD, ifindex, UInt16(CP_ETH_P_ALL)) }

      let frameHint = 2048
      _ = try Syscall.cp("PACKET_RX_RING", interface) {
        cp_packet_set_ring(
          socketFD, Int32(CP_PACKET_RX_RING), Int32(CP_TPACKET_V3), UInt32(options.rxBlockSize),
          UInt32(options.rxBlockCount),
          UInt32(frameHint), UInt32(options.rxBlockSize / frameHint * options.rxBlockCount),
          UInt32(options.retireTimeoutMilliseconds))
      }
      let rxBytes = options.rxBlockSize * options.rxBlockCount
      let txGeometry = Self.txGeometry(slotSize: slotSize, slotCount: slotCount, pageSize: pageSize)
      var txSocket = socketFD
      var txBase: UnsafeMutableRawPointer
      var txMapping: PacketRingMapping
      let rxMapping: PacketRingMapping
      if options.transmitVersion == .v3 {
        _ = try Syscall.cp("PACKET_TX_RING", interface) {
          cp_packet_set_ring(
            socketFD, Int32(CP_PACKET_TX_RING), Int32(CP_TPACKET_V3), UInt32(txGeometry.blockSize),
            UInt32(txGeometry.blockCount),
            UInt32(slotSize), UInt32(slotCount), 0)
        }
        // One mapping: the RX ring first, the TX ring right after it.
        rxMapping = try PacketRingMapping(
          fd: socketFD, length: rxBytes + txGeometry.bytes, interface: interface)
        mappings.append(rxMapping)
        txBase = rxMapping.base + rxBytes
        txMapping = rxMapping
      } else {
        rxMapping = try PacketRingMapping(fd: socketFD, length: rxBytes, interface: interface)
        mappings.append(rxMapping)
        // V2 TX needs a V2 socket; it is bound with protocol 0, so it never receives.
        txSocket = try Syscall.cp("socket(AF_PACKET)", interface) { cp_packet_socket() }
        toClose.append(txSocket)
        try Self.setOption(txSocket, CP_PACKET_VERSION, CP_TPACKET_V2, "PACKET_VERSION", interface)
        try Self.setOption(txSocket, CP_PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS", interface)
        // PACKET_LOSS: a malformed slot is skipped instead of stopping the ring there.
        try Self.setOption(txSocket, CP_PACKET_LOSS, 1, "PACKET_LOSS", interface)
        let tfd = txSocket
        _ = try Syscall.cp("bind", interface) { cp_packet_bind(tfd, ifindex, 0) }
        _ = try Syscall.cp("PACKET_TX_RING", interface) {
          cp_packet_set_ring(
            tfd, Int32(CP_PACKET_TX_RING), Int32(CP_TPACKET_V2), UInt32(txGeometry.blockSize),
            UInt32(txGeometry.blockCount),
            UInt32(slotSize), UInt32(slotCount), 0)
        }
        txMapping = try PacketRingMapping(fd: txSocket, length: txGeometry.bytes, interface: interface)
        mappings.append(txMapping)
        txBase = txMapping.base
      }
      // Frames queued between bind() and the ring sit in the plain socket queue; poll()
      // would report them forever, so drop them now.
      Self.drainSocketQueue(socketFD)

      if options.promiscuous ?? (role == .access) {
        _ = try Syscall.cp("PACKET_ADD_MEMBERSHIP(PROMISC)", interface) {
          cp_packet_add_promisc(socketFD, ifindex)
        }
      }
      var joinedGroup: UInt16? = nil
      switch fanout {
      case .create?:
        let flags = UInt16(CP_PACKET_FANOUT_HASH) | UInt16(CP_PACKET_FANOUT_FLAG_UNIQUEID)
        _ = try Syscall.cp("PACKET_FANOUT", interface) { cp_packet_fanout(socketFD, 0, flags) }
        joinedGroup = UInt16(
          try Syscall.cp("getsockopt(PACKET_FANOUT)", interface) { cp_packet_fanout_id(socketFD) })
      case .join(let group)?:
        _ = try Syscall.cp("PACKET_FANOUT", interface) {
          cp_packet_fanout(socketFD, group, UInt16(CP_PACKET_FANOUT_HASH))
        }
        joinedGroup = group
      case nil:
        break
      }

      fanoutGroup = joinedGroup
      fd = socketFD
      transmitFD = txSocket
      rx = rxMapping
      tx = txMapping === rxMapping ? nil : txMapping
      let v3 = options.transmitVersion == .v3
      transmitRing = .allocate(capacity: 1)
      transmitRing.initialize(
        to: TxRing(
          base: txBase, slotSize: slotSize, slotCount: slotCount,
          statusOffset: v3 ? cp_tpacket3_status_offset() : cp_tpacket2_status_offset(),
          lengthOffset: v3 ? cp_tpacket3_len_offset() : cp_tpacket2_len_offset(),
          dataOffset: v3 ? cp_tpacket3_tx_data_offset() : cp_tpacket2_tx_data_offset(),
          framePrefix: v3 && virtioNetHeader ? VirtioNetHeader.length : 0))
      cursor = .allocate(capacity: 1)
      cursor.initialize(to: RxCursor())
      pendingSuperFrame = .allocate(capacity: 1)
      pendingSuperFrame.initialize(to: nil)
      segmentArena = .allocate(byteCount: segmentArenaBytes, alignment: 64)
    } catch {
      mappings.removeAll()
      for descriptor in toClose { Syscall.close(descriptor) }
      throw error
    }
  }

  deinit {
    close()
    transmitRing.deinitialize(count: 1)
    transmitRing.deallocate()
    cursor.deallocate()
    pendingSuperFrame.deinitialize(count: 1)
    pendingSuperFrame.deallocate()
    segmentArena.deallocate()
  }

  /// Closes the sockets (the mappings go with the object). Idempotent; the worker must
  /// have stopped using the port.
  public func close() {
    if closed { return }
    closed = true
    rx.unmap()
    tx?.unmap()
    Syscall.close(fd)
    if transmitFD != fd { Syscall.close(transmitFD) }
  }

  // MARK: Receive

  public func receive(into vector: inout FrameVector) -> Int {
    var arenaUsed = 0
    var added = 0
    // A super-frame left half cut by the last batch comes first: its block is still ours.
    if pendingSuperFrame.pointee != nil {
      let before = vector.count
      let finished = emitSegments(into: &vector, arenaUsed: &arenaUsed, vlanTag: pendingVLANTag)
      added = vector.count &- before
      if !finished {
        PortCounters.bump(counters.receivedFrames, added)
        return added
      }
      heldBlock = -1
    }
    var c = cursor.pointee
    let base = rx.base
    var truncated = 0
    var completed = 0
    var blocks = 0
    var refused = 0
    while !vector.isFull {
      if c.remaining == 0 {
        // Every block is waiting for releaseReceived(): nothing more to open.
        if c.consumed == rxBlockCount { break }
        let block = base + c.block &* rxBlockSize
        let status = (block + 8).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(
          ordering: .acquiring)
        if status & UInt32(CP_TP_STATUS_USER) == 0 { break }
        let descriptor = UnsafeRawPointer(block).assumingMemoryBound(to: cp_tpacket_block_desc.self)
        blocks &+= 1
        let frames = Int(descriptor.pointee.num_pkts)
        if frames == 0 {
          c.consumed &+= 1
          c.block = c.block &+ 1 == rxBlockCount ? 0 : c.block &+ 1
          continue
        }
        c.remaining = frames
        c.next = block + Int(descriptor.pointee.offset_to_first_pkt)
      }
      let header = c.next.unsafelyUnwrapped
      let h = UnsafeRawPointer(header).assumingMemoryBound(to: cp_tpacket3_hdr.self)
      let status = h.pointee.tp_status
      let snapLength = Int(h.pointee.tp_snaplen)
      let wireLength = Int(h.pointee.tp_len)
      let frame = header + Int(h.pointee.tp_mac)
      let frameBlock = c.block
      c.remaining &-= 1
      if c.remaining == 0 {
        c.consumed &+= 1
        c.block = c.block &+ 1 == rxBlockCount ? 0 : c.block &+ 1
        c.next = nil
      } else {
        c.next = header + Int(h.pointee.tp_next_offset)
      }
      if snapLength < wireLength {
        truncated &+= 1
        continue
      }
      var tag: UInt32 = 0
      if status & UInt32(CP_TP_STATUS_VLAN_VALID) != 0 {
        tag = FrameVector.vlanTagPresent | (h.pointee.tp_vlan_tci & 0xFFFF)
      }
      if hasVirtioNetHeader {
        // Only the gso type is read per frame; the whole header only for a super-frame.
        let header = UnsafeRawPointer(frame - VirtioNetHeader.length)
        if _slowPath(header.load(fromByteOffset: VirtioNetHeader.gsoTypeOffset, as: UInt8.self) != 0) {
          do {
            pendingSuperFrame.pointee = try SuperFrame(
              frame: frame, length: snapLength, header: VirtioNetHeader(at: header))
          } catch {
            refused &+= 1
            continue
          }
          let before = vector.count
          let finished = emitSegments(into: &vector, arenaUsed: &arenaUsed, vlanTag: tag)
          added &+= vector.count &- before
          if !finished {
            // The rest of it goes into the next batch; its block stays ours until then.
            pendingVLANTag = tag
            heldBlock = frameBlock
            break
          }
          continue
        }
      }
      var flags: UInt8 = 0
      if status & UInt32(CP_TP_STATUS_CSUMNOTREADY) != 0 {
        // On the underlay the unfinished checksum is the inner frame's (a local kernel
        // vxlan device left it for "hardware"); the pipeline completes it after decap.
        // Unless the `virtio_net_hdr` says it is the outer UDP checksum (a VXLAN sender
        // on this host using UDP GSO, a vxswitch peer): the inner frame is complete, and
        // the datagram never left the host, so there is nothing to verify. Over IPv4 the
        // field is cleared: a checksum nobody computed is no checksum (0, RFC 768), the
        // outer header the decap fast path takes.
        if completesChecksums {
          if ChecksumCompletion.complete(frame: frame, length: snapLength) { completed &+= 1 }
        } else if hasVirtioNetHeader {
          switch Self.unfinishedChecksum(
            frame: frame, length: snapLength, header: UnsafeRawPointer(frame - VirtioNetHeader.length))
          {
          case .outerUDP(let udp):
            if UnsafeRawPointer(frame).be16(EthernetLayout.etherTypeOffset) == EtherType.ipv4 {
              frame.setBE16(udp &+ UDPLayout.checksumOffset, 0)
            }
            flags = FrameFlags.checksumValid | FrameFlags.builtOnThisHost
          case .inner:
            // A sender that left segmentation to the kernel: trusted, and left
            // unfinished where the output allows.
            flags = FrameFlags.checksumValid | FrameFlags.builtOnThisHost | FrameFlags.innerChecksumPartial
          case .unknown:
            flags = FrameFlags.checksumNotReady
          }
        } else {
          flags = FrameFlags.checksumNotReady
        }
      } else if status & UInt32(CP_TP_STATUS_CSUM_VALID) != 0 {
        flags = FrameFlags.checksumValid
      }
      vector.append(frame, length: snapLength, vlanTag: tag, flags: flags)
      added &+= 1
    }
    cursor.pointee = c
    if added != 0 { PortCounters.bump(counters.receivedFrames, added) }
    if blocks != 0 { PortCounters.bump(counters.receivedBlocks, blocks) }
    if truncated != 0 { PortCounters.bump(counters.truncatedDrops, truncated) }
    if completed != 0 { PortCounters.bump(counters.checksumsCompleted, completed) }
    if refused != 0 { PortCounters.bump(counters.offloadDrops, refused) }
    return added
  }

  /// Which checksum of an underlay frame the kernel left unfinished, as its
  /// `virtio_net_hdr` says (`NEEDS_CSUM`, the checksum start and offset; offsets as the
  /// ring holds the frame: a VLAN tag the kernel stripped into the metadata is not
  /// counted).
  enum UnfinishedChecksum: Equatable {
    /// The outer UDP checksum, its header at this offset (after an outer IPv4 or IPv6
    /// header).
    case outerUDP(Int)
    /// The L4 checksum of the frame inside a VXLAN datagram: the checksum start past the
    /// outer UDP header, the VXLAN header, an inner Ethernet header and a minimal inner
    /// IP header, the field within the frame.
    case inner
    /// Neither, or no `NEEDS_CSUM`.
    case unknown
  }

  static func unfinishedChecksum(frame: UnsafeRawPointer, length: Int, header: UnsafeRawPointer)
    -> UnfinishedChecksum
  {
    let virtio = VirtioNetHeader(at: header)
    let start = Int(virtio.checksumStart)
    guard virtio.flags & VirtioNetHeader.needsChecksum != 0, let udp = outerUDP(frame: frame, length: length)
    else { return .unknown }
    if start == udp {
      let isUDPField = Int(virtio.checksumOffset) == UDPLayout.checksumOffset
      return isUDPField && udp &+ UDPLayout.headerLength <= length ? .outerUDP(udp) : .unknown
    }
    let innerIP = udp &+ UDPLayout.headerLength &+ VXLANLayout.headerLength &+ EthernetLayout.headerLength
    return start >= innerIP &+ IPv4Layout.minimumHeaderLength
      && start &+ Int(virtio.checksumOffset) &+ 2 <= length
      ? .inner : .unknown
  }

  /// Where the UDP header of an underlay frame is: after an untagged outer IPv4 (any
  /// header length) or IPv6 header carrying UDP; nil for anything else.
  static func outerUDP(frame: UnsafeRawPointer, length: Int) -> Int? {
    guard length >= EthernetLayout.headerLength else { return nil }
    let ip = EthernetLayout.headerLength
    switch frame.be16(EthernetLayout.etherTypeOffset) {
    case EtherType.ipv4:
      guard length >= ip &+ IPv4Layout.minimumHeaderLength,
        frame.u8(ip &+ IPv4Layout.protocolOffset) == IPProtocol.udp
      else { return nil }
      return ip &+ Int(frame.u8(ip) & 0x0F) &<< 2
    case EtherType.ipv6:
      guard length >= ip &+ IPv6Layout.headerLength,
        frame.u8(ip &+ IPv6Layout.nextHeaderOffset) == IPProtocol.udp
      else { return nil }
      return ip &+ IPv6Layout.headerLength
    default:
      return nil
    }
  }

  /// Cuts the pending super-frame into the segment arena and appends the segments to
  /// `vector`, as many as both hold. Returns whether the super-frame is done (and no
  /// longer pending).
  private func emitSegments(into vector: inout FrameVector, arenaUsed: inout Int, vlanTag: UInt32) -> Bool {
    let written = DeferredPayload.cut(
      &pendingSuperFrame.pointee!, arena: segmentArena, capacity: segmentArenaBytes, used: &arenaUsed,
      into: &vector, vlanTag: vlanTag, deferring: defersSegmentPayloads)
    let finished = pendingSuperFrame.pointee.unsafelyUnwrapped.isFinished
    if written != 0 { PortCounters.bump(counters.segments, written) }
    if finished {
      pendingSuperFrame.pointee = nil
      PortCounters.bump(counters.superFrames)
    }
    return finished
  }

  /// Hands every fully consumed block back to the kernel. A block still being read (the
  /// vector filled up inside it) stays ours until a later call.
  public func releaseReceived() {
    var c = cursor.pointee
    if c.consumed == 0 { return }
    let base = rx.base
    // In order, up to the block of a super-frame still being cut up (if any).
    while c.consumed > 0 && c.releaseFrom != heldBlock {
      let block = base + c.releaseFrom &* rxBlockSize
      (block + 8).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.store(
        UInt32(CP_TP_STATUS_KERNEL), ordering: .releasing)
      c.releaseFrom = c.releaseFrom &+ 1 == rxBlockCount ? 0 : c.releaseFrom &+ 1
      c.consumed &-= 1
    }
    cursor.pointee = c
  }

  // MARK: Transmit

  /// Set when the last kick failed because the interface is down (ENETDOWN, or ENXIO:
  /// no device): the kernel takes nothing from the ring until it is up again, so the
  /// worker must not retry every millisecond (`LiveSwitch` retries such a ring on its
  /// ordinary turns, at least once a second). Cleared by a kick that succeeds.
  public private(set) var transmitLinkDown = false

  /// Kicks the kernel to send every slot marked SEND_REQUEST. Never blocks: EAGAIN and
  /// ENOBUFS (peer backlog or device queue full) are counted and `pending` stays
  /// non-zero, so the worker retries on its next turn (the kernel resumes at the first
  /// unsent slot).
  public func flushTransmit() {
    while true {
      let result = cp_packet_tx_kick(transmitFD)
      if result >= 0 {
        transmitRing.pointee.pending = 0
        transmitLinkDown = false
        PortCounters.bump(counters.transmitKicks)
        return
      }
      let e = Int32(-result)
      if e == EINTR { continue }
      if e == EAGAIN || e == ENOBUFS {
        // Busy is not down: the link is back, retry at the usual pace.
        transmitLinkDown = false
        PortCounters.bump(counters.transmitBusy)
      } else {
        transmitLinkDown = e == ENETDOWN || e == ENXIO
        PortCounters.bump(counters.transmitErrors)
      }
      return
    }
  }

  /// Clears a pending socket error (poll() reported POLLERR), so that poll() stops
  /// reporting it. Returns the errno.
  @discardableResult
  public func clearSocketError() -> Int32 {
    var value: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length)
    if transmitFD != fd { _ = getsockopt(transmitFD, SOL_SOCKET, SO_ERROR, &value, &length) }
    PortCounters.bump(counters.socketErrors)
    return value
  }

  // MARK: Statistics

  /// The port's counters; reads (and accumulates) the kernel's PACKET_STATISTICS.
  public var statistics: Statistics {
    var packets: UInt32 = 0
    var drops: UInt32 = 0
    var freezes: UInt32 = 0
    let kernel = kernelCounters.withLock { total in
      if !closed, cp_packet_statistics(fd, &packets, &drops, &freezes) == 0 {
        total.drops &+= UInt64(drops)
        total.freezes &+= UInt64(freezes)
      }
      return total
    }
    return Statistics(
      receivedFrames: counters.receivedFrames.load(ordering: .relaxed),
      receivedBlocks: counters.receivedBlocks.load(ordering: .relaxed),
      truncatedDrops: counters.truncatedDrops.load(ordering: .relaxed),
      checksumsCompleted: counters.checksumsCompleted.load(ordering: .relaxed),
      transmitKicks: counters.transmitKicks.load(ordering: .relaxed),
      transmitBusy: counters.transmitBusy.load(ordering: .relaxed),
      transmitErrors: counters.transmitErrors.load(ordering: .relaxed),
      kernelDrops: kernel.drops, kernelFreezes: kernel.freezes,
      socketErrors: counters.socketErrors.load(ordering: .relaxed),
      superFrames: counters.superFrames.load(ordering: .relaxed),
      segments: counters.segments.load(ordering: .relaxed),
      offloadDrops: counters.offloadDrops.load(ordering: .relaxed))
  }

  // MARK: Setup helpers

  /// The libpcap expression for a role: nil (everything) for access ports; for the
  /// underlay, UDP to the VTEP address and port, untagged or behind one VLAN tag. A tag
  /// the kernel stripped into the metadata is invisible to the filter, so the first
  /// alternative also matches those frames.
  public static func filterExpression(for role: Role) -> String? {
    switch role {
    case .access:
      return nil
    case .underlay(let vtep, let port):
      let host = vtep.isIPv4 ? "ip dst host \(vtep)" : "ip6 dst host \(vtep)"
      let match = "(\(host) and udp dst port \(port))"
      return "\(match) or (vlan and \(match))"
    }
  }

  static func attachFilter(_ fd: Int32, _ expression: String, _ interface: String) throws {
    var message = [CChar](repeating: 0, count: 512)
    let result = message.withUnsafeMutableBufferPointer { buffer in
      cp_attach_pcap_filter(fd, expression, buffer.baseAddress, buffer.count)
    }
    if result == -EINVAL, message[0] != 0 {
      let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
      throw AFPacketError.filter(interface: interface, expression: expression, message: text)
    }
    if result < 0 {
      throw AFPacketError.from(errno: -result, operation: "SO_ATTACH_FILTER", interface: interface)
    }
  }

  static func setOption(_ fd: Int32, _ option: Int, _ value: Int, _ label: String, _ interface: String) throws
  {
    _ = try Syscall.cp("setsockopt(\(label))", interface) {
      cp_setsockopt_int(fd, Int32(CP_SOL_PACKET), Int32(option), Int32(value))
    }
  }

  /// A slot holds the largest frame the pipeline can emit on this interface: MTU plus
  /// Ethernet header, a VLAN tag and room for the outer headers, rounded to a power of two.
  static func defaultSlotSize(interface: String) throws -> Int {
    let probe = try Syscall.libc("socket(AF_INET)", interface) {
      socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }
    defer { Syscall.close(probe) }
    let mtu = Int(try Syscall.cp("SIOCGIFMTU", interface) { cp_interface_mtu(probe, interface) })
    var size = 2048
    while size < 64 + mtu + 14 + 4 + 70 { size <<= 1 }
    return size
  }

  /// A transmit slot for a super-frame: 64 KiB, so that a slot is a whole number of
  /// pages (blocks of one slot waste no kernel memory) and holds the TPACKET_V3 header,
  /// the `virtio_net_hdr` and a frame of up to 65478 bytes.
  static let superFrameSlotSize = 1 << 16

  static func txGeometry(slotSize: Int, slotCount: Int, pageSize: Int) -> (
    blockSize: Int, blockCount: Int, bytes: Int
  ) {
    // Blocks of at least 16 KiB holding a whole number of slots; slots never straddle
    // blocks, so the ring is linear and TxRing can index it as base + i * slotSize.
    var blockSize = max(slotSize, 16384, pageSize)
    while blockSize % pageSize != 0 || blockSize % slotSize != 0 { blockSize += slotSize }
    var slotsPerBlock = blockSize / slotSize
    if slotsPerBlock > slotCount {
      slotsPerBlock = slotCount
      blockSize = slotCount * slotSize
      while blockSize % pageSize != 0 { blockSize *= 2 }
      slotsPerBlock = blockSize / slotSize
    }
    let blockCount = max(1, slotCount / slotsPerBlock)
    return (blockSize, blockCount, blockSize * blockCount)
  }

  static func drainSocketQueue(_ fd: Int32) {
    var byte: UInt8 = 0
    for _ in 0..<100_000 {
      if recv(fd, &byte, 1, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC)) < 0 && Glibc.errno != EINTR { break }
    }
  }
}

/// An mmap'd packet ring; unmapped on deinit (or `unmap()`).
final class PacketRingMapping {
  let base: UnsafeMutableRawPointer
  let length: Int
  private var mapped = true

  init(fd: Int32, length: Int, interface: String) throws {
    let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0)
    guard let address, address != MAP_FAILED else {
      throw AFPacketError.from(errno: Glibc.errno, operation: "mmap(ring)", interface: interface)
    }
    base = address
    self.length = length
  }

  func unmap() {
    if mapped {
      munmap(base, length)
      mapped = false
    }
  }

  deinit { unmap() }
}
