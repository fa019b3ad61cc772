import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A tc ingress program on an AF_PACKET underlay that ends, after the switch's packet
/// socket has taken its copy, the VXLAN datagrams the switch owns, so that they no longer
/// also climb the host's stack (IP receive, a route lookup, the UDP socket lookup) only to
/// be discarded by the `VXLANPortHolder`'s filter.
///
/// Why it is safe: a packet socket bound to `ETH_P_ALL` is a tap that the kernel serves
/// before the ingress hook (`__netif_receive_skb_core` delivers to `ptype_all` first, then
/// runs tcx), so the switch sees every frame it saw before; and what the program drops is
/// exactly what the holder would have discarded: untagged, unfragmented UDP to the local
/// VTEP address and VXLAN port (`BPFAssembler.requireVXLAN`, the match the AF_XDP steering
/// program uses). Everything else (ARP and neighbour discovery for the VTEP address, the
/// host's own traffic, fragments, frames whose tag the device stripped into the metadata)
/// goes on as before (`TCX_NEXT`: other tc programs still run). The holder stays: it keeps
/// the port, and takes over when the program cannot be attached.
///
/// The program hangs on a tcx BPF link (Linux 6.6 on) owned by this object: `detach()`
/// (also on deinit) closes it, and so does the kernel when the process ends, so nothing
/// outlives the daemon. Created and detached by `LiveSwitch` on its control thread.
public final class UnderlayStackBypass {
  public let interface: String
  private var linkFD: Int32 = -1

  /// `struct __sk_buff` field offsets (linux/bpf.h).
  enum SocketBufferContext {
    static let vlanPresent = 20
    static let data = 76
    static let dataEnd = 80
  }

  /// tcx verdicts (linux/bpf.h, `enum tcx_action_base`).
  enum Verdict {
    /// Not this program's business: the next program, then the stack.
    static let next: UInt32 = 0xFFFF_FFFF  // -1
    static let drop: UInt32 = 2
  }

  /// The program: drop what `requireVXLAN` matches, `next` for anything else.
  static func assemble(vtep: IPAddress, udpPort: UInt16) -> [UInt64] {
    var program = BPFAssembler()
    program.move(.r6, .r1)
    // A tag the device stripped into the metadata: not an untagged frame.
    program.loadContext(.r5, from: .r6, offset: SocketBufferContext.vlanPresent)
    program.jumpIfNotEqual(.r5, 0, to: .pass)
    program.loadContext(.r2, from: .r6, offset: SocketBufferContext.data)
    program.loadContext(.r3, from: .r6, offset: SocketBufferContext.dataEnd)
    program.requireVXLAN(to: vtep, udpPort: udpPort, otherwise: .pass)
    program.moveImmediate(.r0, Verdict.drop)
    program.exit()
    program.label(.pass)
    program.moveImmediate(.r0, Verdict.next)
    program.exit()
    return program.resolved()
  }

  /// Loads the program and attaches it to `interface`'s ingress (in the current network
  /// namespace). Throws `AFPacketError.underlayBypass` with the verifier's or the kernel's
  /// reason (no tcx before Linux 6.6, no privileges).
  public init(interface: String, vtep: IPAddress, udpPort: UInt16) throws {
    self.interface = interface
    let index = try Syscall.interfaceIndex(interface)
    do {
      linkFD = try TCXIngress.attach(
        Self.assemble(vtep: vtep, udpPort: udpPort), name: "vxs_ul_ingress", interfaceIndex: index)
    } catch {
      throw AFPacketError.underlayBypass(interface: interface, reason: error.reason)
    }
  }

  deinit { detach() }

  /// Removes the program from the interface (idempotent).
  public func detach() {
    guard linkFD >= 0 else { return }
    Glibc.close(linkFD)
    linkFD = -1
  }

  public var isAttached: Bool { linkFD >= 0 }
}
