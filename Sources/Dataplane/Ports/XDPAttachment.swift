import CPacket
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The switch's XDP program attached to one interface, with the XSKMAP its AF_XDP sockets
/// are put in (`program.socketsPerQueue` entries per queue). The program hangs on a BPF link owned by this
/// object: `detach()` (also on deinit) closes it, and so does the kernel when the process
/// ends, even by SIGKILL, so no program outlives the daemon and the interface's traffic
/// goes to the kernel as before. Closing a link needs no netlink call, so it works from
/// any thread in any network namespace.
///
/// Thread safety: created, filled and detached by `LiveSwitch` on its control thread,
/// before the workers start and after they have stopped.
public final class XDPAttachment {
  public let interface: String
  public let interfaceIndex: Int32
  public let program: XDPSteeringProgram
  private let programFD: Int32
  private let mapFD: Int32
  private var linkFD: Int32 = -1

  /// Loads `program` and attaches it to `interface` (native mode) with map slots for
  /// `queues` queues. Throws `AFPacketError.afXDP` with the verifier's or the kernel's reason.
  public init(interface: String, program: XDPSteeringProgram, queues: Int) throws {
    self.interface = interface
    self.program = program
    interfaceIndex = try Syscall.interfaceIndex(interface)
    var (instructions, mapSlots) = program.assemble()
    var mapFD: Int32 = -1
    var log = [CChar](repeating: 0, count: 16384)
    let fd = instructions.withUnsafeMutableBufferPointer { code in
      mapSlots.withUnsafeMutableBufferPointer { slots in
        cp_xdp_load(
          code.baseAddress, code.count, slots.baseAddress, slots.count,
          UInt32(max(queues, 1) * program.socketsPerQueue), &mapFD, &log,
          log.count)
      }
    }
    guard fd >= 0 else {
      throw AFPacketError.afXDP(
        interface: interface, reason: BPFAssembler.loadFailure("XDP", errno: -fd, verifierLog: log))
    }
    programFD = fd
    self.mapFD = mapFD
    let result = cp_xdp_attach(interfaceIndex, programFD)
    guard result >= 0 else {
      Glibc.close(programFD)
      Glibc.close(mapFD)
      throw AFPacketError.afXDP(
        interface: interface,
        reason: "attaching XDP in native mode failed: \(AFPacketError.text(-result))"
          + (-result == EOPNOTSUPP ? " (the driver has no native XDP)" : "")
          + (-result == ERANGE
            ? " (a veth takes XDP only while its peer's MTU fits a page, about 3.5 KB)" : ""))
    }
    linkFD = result
  }

  deinit {
    detach()
    Glibc.close(programFD)
    Glibc.close(mapFD)
  }

  /// Steers the frames of `queue` (of its map slot `slot`, when the program spreads each
  /// queue over several) to the AF_XDP socket `socket`.
  func insert(socket: Int32, queue: UInt32, slot: Int = 0) throws {
    precondition(slot < program.socketsPerQueue)
    let key = queue * UInt32(program.socketsPerQueue) + UInt32(slot)
    let result = cp_xdp_map_set(mapFD, key, socket)
    guard result == 0 else {
      throw AFPacketError.afXDP(
        interface: interface,
        reason: "adding the socket of queue \(queue) to the XSKMAP failed: "
          + AFPacketError.text(-result))
    }
  }

  /// Removes the program from the interface (idempotent).
  public func detach() {
    guard linkFD >= 0 else { return }
    Glibc.close(linkFD)
    linkFD = -1
  }

  /// The id of the program attached to `interface` in native mode, 0 for none.
  public static func attachedProgramID(interface: String) -> UInt32 {
    guard let index = try? Syscall.interfaceIndex(interface) else { return 0 }
    var id: UInt32 = 0
    return cp_xdp_attached_id(index, &id) == 0 ? id : 0
  }
}
