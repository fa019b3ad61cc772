import CPacket

/// The XDP program in front of an AF_XDP port: it decides, per received frame, whether the
/// switch takes it (redirect into the port's AF_XDP socket for that queue) or the kernel
/// does (XDP_PASS).
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

  public init(match: Match) { self.match = match }

  /// The program's instructions, and the indices of the map loads whose immediate is the
  /// XSKMAP's fd (filled in by the loader).
  public func assemble() -> (instructions: [UInt64], mapSlots: [Int]) {
    var program = BPFAssembler()
    // r6 = ctx; r2 = data; r3 = data_end.
    program.move(.r6, .r1)
    program.loadContext(.r2, from: .r6, offset: XDPContext.data)
    program.loadContext(.r3, from: .r6, offset: XDPContext.dataEnd)
    switch match {
    case .everything:
      break
    case .vxlan(let vtep, let udpPort):
      program.requireVXLAN(to: vtep, udpPort: udpPort, otherwise: .pass)
    }
    // return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)
    program.loadContext(.r2, from: .r6, offset: XDPContext.rxQueueIndex)
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
