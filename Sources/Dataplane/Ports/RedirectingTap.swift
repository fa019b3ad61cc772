import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A tap device whose ingress is redirected, unchanged, to another interface's egress: a
/// way for the switch to hand the kernel a frame with an offload a packet socket does not
/// take, for the kernel to finish on the way out of that interface.
///
/// Two uses. On the underlay (`TunnelRun`): a VM's TCP super-frame already encapsulated,
/// with UDP-tunnel GSO (Linux 6.17 on: `TUN_F_UDP_TUNNEL_GSO`, the 24-byte header; a
/// packet socket takes no tunnel GSO), which the kernel cuts into VXLAN datagrams there
/// (the device's own tunnel offload, or software GSO), the inner TCP checksum left for
/// the device, as with the Linux vxlan device. Toward a VM (`TCPCoalescer`): the
/// segments of a flow written as one TSO super-frame straight from where the underlay
/// port received them. Either way the kernel copies the bytes once (the write) where
/// the packet socket's ring needed a copy in the switch and another in the kernel (its
/// ring pages are zero-copy fragments that segmentation and a veth must copy).
///
/// The device lives as long as the descriptor; the redirect is a tcx program on a link
/// owned by this object. Both are closed by `close()` (also on deinit), and by the kernel
/// when the process ends, so nothing outlives the daemon. Created by `LiveSwitch` on its
/// control thread; `fd` is written by the workers (a tap's write is thread-safe).
public final class RedirectingTap {
  public let name: String
  public private(set) var fd: Int32 = -1
  private var linkFD: Int32 = -1

  /// TUNSETOFFLOAD bits (linux/if_tun.h): checksums and TSO, what a VM's super-frame needs.
  public static let segmentationOffloads: UInt32 = 0x01 | 0x02 | 0x04

  /// bpf_redirect (linux/bpf.h, `enum bpf_func_id`): the program's one helper.
  static let redirectHelper: UInt32 = 23

  /// The program: every frame to `targetIndex`'s egress (bpf_redirect with no flags
  /// returns TC_ACT_REDIRECT, which tcx takes as its redirect verdict).
  static func assemble(targetIndex: Int32) -> [UInt64] {
    var program = BPFAssembler()
    program.moveImmediate(.r1, UInt32(bitPattern: targetIndex))
    program.moveImmediate(.r2, 0)
    program.call(redirectHelper)
    program.exit()
    return program.resolved()
  }

  /// Creates the tap `name` in the current network namespace with a `virtio_net_hdr` of
  /// `headerSize` bytes and TUNSETOFFLOAD `offloads`, sets it up and attaches the
  /// redirect to `target`. Throws `AFPacketError.redirectingTap` with the reason (no
  /// /dev/net/tun, a kernel without the offloads asked for, no tcx, no privileges).
  public init(name: String, target: String, headerSize: Int, offloads: UInt32) throws {
    self.name = name
    let targetIndex = try Syscall.interfaceIndex(target)
    let tap = cp_tap_open(name, Int32(headerSize), offloads)
    guard tap >= 0 else {
      throw AFPacketError.redirectingTap(
        name: name,
        reason: "cannot create the tap: \(AFPacketError.text(-tap))"
          + (-tap == EINVAL ? " (UDP-tunnel GSO on taps needs Linux 6.17 or later)" : ""))
    }
    fd = tap
    do {
      let control = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      defer { if control >= 0 { Glibc.close(control) } }
      let up = cp_interface_set_up(control, name)
      guard up == 0 else {
        throw AFPacketError.redirectingTap(name: name, reason: "cannot set it up: \(AFPacketError.text(-up))")
      }
      // Nothing of the host's own (IPv6 neighbour and multicast listener discovery) is
      // sent into a device only the switch writes to; best effort.
      let path = "/proc/sys/net/ipv6/conf/\(name)/disable_ipv6"
      if let file = fopen(path, "w") {
        fputs("1", file)
        fclose(file)
      }
      let tapIndex = try Syscall.interfaceIndex(name)
      do {
        linkFD = try TCXIngress.attach(
          Self.assemble(targetIndex: targetIndex), name: "vxs_tap_redir", interfaceIndex: tapIndex)
      } catch {
        throw AFPacketError.redirectingTap(name: name, reason: error.reason)
      }
    } catch {
      close()
      throw error
    }
  }

  deinit { close() }

  /// Detaches the redirect and removes the device (idempotent).
  public func close() {
    if linkFD >= 0 {
      Glibc.close(linkFD)
      linkFD = -1
    }
    if fd >= 0 {
      Glibc.close(fd)
      fd = -1
    }
  }
}
