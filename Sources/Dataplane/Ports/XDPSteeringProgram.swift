import CPacket

/// The XDP program in front of an AF_XDP port: it decides, per received frame, whether the
/// switch takes it (redirect into the port's AF_XDP socket for that queue) or the kernel
/// does (XDP_PASS).
///
/// With `socketsPerQueue` above 1 (more workers than the device has queues, a veth's one
/// queue among them), the frames of one queue are spread over that many map slots by a
/// hash that keeps a flow on one slot: the UDP source port on the underlay (the sending
/// VTEP's hash of the inner flow, RFC 7348 section 5), the Ethernet addresses (both
/// orders hash alike) on an access interface. Slot `s` of queue `q` is map key
/// `q * socketsPerQueue + s`.
///
/// - Access interface: every frame is the switch's.
/// - Underlay: only untagged, unfragmented UDP to the local VTEP address and VXLAN port
///   (IPv4 without options, or IPv6 with UDP as the first next header). Everything else,
///   the host's own traffic and the ARP/ND that resolves the VTEP address included, goes on
///   to the kernel untouched. A frame for the switch on a queue without a socket is passed
///   too (`bpf_redirect_map`'s fallback action), never dropped.
///
/// Written as eBPF instructions here rather than compiled from C: the program is a few
/// dozen instructions, and the daemon then needs neither clang nor an object file at run
/// time. The verifier checks it at load time; `XDPSteeringProgramTests` loads every shape.
public struct XDPSteeringProgram: Sendable, Equatable {
  public enum Match: Sendable, Equatable {
    case everything
    case vxlan(vtep: IPAddress, udpPort: UInt16)
  }

  public let match: Match
  public let socketsPerQueue: Int

  public init(match: Match, socketsPerQueue: Int = 1) {
    precondition(socketsPerQueue >= 1)
    self.match = match
    self.socketsPerQueue = socketsPerQueue
  }

  /// The program's instructions, and the indices of the map loads whose immediate is the
  /// XSKMAP's fd (filled in by the loader).
  public func assemble() -> (instructions: [UInt64], mapSlots: [Int]) {
    var program = BPFAssembler()
    // r6 = ctx; r2 = data; r3 = data_end.
    program.move(.r6, .r1)
    program.loadContext(.r2, from: .r6, offset: XDPContext.data)
    program.loadContext(.r3, from: .r6, offset: XDPContext.dataEnd)
    let spreads = socketsPerQueue > 1
    switch match {
    case .everything:
      if spreads {
        // r5 = the last four bytes of the destination address ^ those of the source.
        program.requireBytes(EthernetLayout.headerLength, pass: .pass)
        program.load(.word, .r5, from: .r2, offset: EthernetLayout.destinationOffset + 2)
        program.load(.word, .r4, from: .r2, offset: EthernetLayout.sourceOffset + 2)
        program.xor(.r5, .r4)
      }
    case .vxlan(let vtep, let udpPort):
      program.requireVXLAN(to: vtep, udpPort: udpPort, otherwise: .pass)
      if spreads {
        let udp =
          EthernetLayout.headerLength
          + (vtep.isIPv4 ? IPv4Layout.minimumHeaderLength : IPv6Layout.headerLength)
        program.load(.half, .r5, from: .r2, offset: udp + UDPLayout.sourcePortOffset)
      }
    }
    // return bpf_redirect_map(&xsks, key, XDP_PASS), key = ctx->rx_queue_index, or with
    // several slots per queue rx_queue_index * socketsPerQueue + hash(r5) % socketsPerQueue.
    program.loadContext(.r2, from: .r6, offset: XDPContext.rxQueueIndex)
    if spreads {
      // Fibonacci hashing: bits 16 to 31 of the product depend on every bit of the
      // 32-bit input, so flows whose fields differ in any byte spread.
      program.multiply(.r5, 0x9E37_79B1)
      program.shiftRight(.r5, 16)
      program.and(.r5, 0xFFFF)
      program.modulo(.r5, UInt32(socketsPerQueue))
      program.multiply(.r2, UInt32(socketsPerQueue))
      program.add(.r2, .r5)
    }
    let mapSlot = program.loadMap(.r1)
    program.moveImmediate(.r3, XDPAction.pass)
    program.call(BPFHelper.redirectMap)
    program.exit()
    if program.hasJumps(to: .pass) {  // the verifier refuses unreachable code
      program.label(.pass)
      program.moveImmediate(.r0, XDPAction.pass)
      program.exit()
    }
    return (program.resolved(), [mapSlot])
  }
}

/// `struct xdp_md` field offsets (linux/bpf.h).
enum XDPContext {
  static let data = 0
  static let dataEnd = 4
  static let rxQueueIndex = 16
}

enum XDPAction {
  static let pass: UInt32 = 2
}

enum BPFHelper {
  static let redirectMap: UInt32 = 51
}
