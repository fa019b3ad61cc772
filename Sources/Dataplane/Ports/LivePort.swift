import CPacket
import Synchronization

/// Which kernel interface a live port uses; chosen per interface in the configuration
/// (`[[interface]] io`).
public enum PortIO: String, Sendable, Equatable, CaseIterable {
  /// AF_PACKET with TPACKET_V3 rings: takes every offload a VM's stack uses (TSO/GSO
  /// super-frames, unfinished checksums) and suits TCP throughput.
  case afPacket = "af_packet"
  /// AF_XDP through an XDP program of the switch's own: skips the kernel's skb work on
  /// receive and suits small-frame rates; on a veth it turns the peer's TSO/GSO off and caps
  /// the peer's MTU (see README "Port types").
  case afXDP = "af_xdp"
}

/// A `PacketPort` on a real interface, as `LiveSwitch`'s worker loop drives it: a file
/// descriptor to poll for received frames, a transmit kick that may find the link down,
/// counters, and a close. One per (worker, interface), owned by that worker's thread;
/// `statistics` may be read from any thread.
public protocol LivePort: PacketPort {
  /// The port type, as `show ports` reports it.
  var io: PortIO { get }
  /// Poll this for POLLIN (frames to receive) and POLLERR.
  var fd: Int32 { get }
  /// Index of the interface in `SwitchCore.interfaces` (set by LiveSwitch).
  var switchInterface: UInt16 { get set }
  /// Whether this is the underlay port (VXLAN to and from other sites).
  var isUnderlay: Bool { get }
  /// The last transmit kick failed because the link was down: retry at the next turn, not
  /// every millisecond.
  var transmitLinkDown: Bool { get }
  /// Clears a socket error poll() reported (POLLERR); returns the errno.
  @discardableResult func clearSocketError() -> Int32
  var statistics: PortStatistics { get }
  /// Releases the sockets and rings (idempotent).
  func close()
}

/// Counters of one live port, cumulative since it opened. Fields a port type has no
/// source for stay 0 (an AF_XDP port has no blocks, no truncation, no super-frames).
public struct PortStatistics: Sendable, Equatable {
  public var receivedFrames: UInt64 = 0
  public var receivedBlocks: UInt64 = 0
  /// Frames the kernel copied only partly into the ring (dropped here).
  public var truncatedDrops: UInt64 = 0
  /// Frames whose L4 checksum was finished in software (TP_STATUS_CSUMNOTREADY).
  public var checksumsCompleted: UInt64 = 0
  /// TX kicks that returned (some frames handed to the driver).
  public var transmitKicks: UInt64 = 0
  /// Kicks answered EAGAIN/ENOBUFS (device queue or peer backlog full; retried).
  public var transmitBusy: UInt64 = 0
  /// Kicks that failed otherwise (e.g. ENETDOWN).
  public var transmitErrors: UInt64 = 0
  /// Frames the kernel dropped before the switch saw them: the receive ring was full
  /// (PACKET_STATISTICS; for AF_XDP, XDP_STATISTICS' drops, an empty fill ring among them,
  /// and full RX ring), and how often the V3 queue froze.
  public var kernelDrops: UInt64 = 0
  public var kernelFreezes: UInt64 = 0
  /// Socket errors cleared from poll() POLLERR (e.g. ENETDOWN when the link went down).
  public var socketErrors: UInt64 = 0
  /// TSO/USO super-frames cut into wire-sized frames, and the frames they made.
  public var superFrames: UInt64 = 0
  public var segments: UInt64 = 0
  /// Super-frames refused (a malformed or unsupported `virtio_net_hdr`).
  public var offloadDrops: UInt64 = 0
  /// Frames sent from where another port of the worker received them (AF_XDP ports
  /// sharing a UMEM, `InPlaceTransmit`), not copied into a transmit slot.
  public var sentInPlace: UInt64 = 0

  /// Adds another port's counters (several ports on one interface: a worker's, or the
  /// workers').
  public mutating func add(_ other: PortStatistics) {
    receivedFrames &+= other.receivedFrames
    receivedBlocks &+= other.receivedBlocks
    truncatedDrops &+= other.truncatedDrops
    checksumsCompleted &+= other.checksumsCompleted
    transmitKicks &+= other.transmitKicks
    transmitBusy &+= other.transmitBusy
    transmitErrors &+= other.transmitErrors
    kernelDrops &+= other.kernelDrops
    kernelFreezes &+= other.kernelFreezes
    socketErrors &+= other.socketErrors
    superFrames &+= other.superFrames
    segments &+= other.segments
    offloadDrops &+= other.offloadDrops
    sentInPlace &+= other.sentInPlace
  }
}

/// A live port's single-writer counters (its worker writes); readers load them relaxed.
final class PortCounters: Sendable {
  let receivedFrames = Atomic<UInt64>(0)
  let receivedBlocks = Atomic<UInt64>(0)
  let truncatedDrops = Atomic<UInt64>(0)
  let checksumsCompleted = Atomic<UInt64>(0)
  let transmitKicks = Atomic<UInt64>(0)
  let transmitBusy = Atomic<UInt64>(0)
  let transmitErrors = Atomic<UInt64>(0)
  let socketErrors = Atomic<UInt64>(0)
  let superFrames = Atomic<UInt64>(0)
  let segments = Atomic<UInt64>(0)
  let offloadDrops = Atomic<UInt64>(0)
  let sentInPlace = Atomic<UInt64>(0)

  /// A plain load and store: one writer, so no locked read-modify-write is needed.
  @inline(__always) static func bump(_ counter: borrowing Atomic<UInt64>, _ amount: Int = 1) {
    counter.store(
      counter.load(ordering: .relaxed) &+ UInt64(truncatingIfNeeded: amount), ordering: .relaxed)
  }
}
