import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Puts an interface of a host (a lab VM's `eth0`) on one VLAN without an 802.1Q device:
/// a tc egress program tags everything the interface sends (`bpf_skb_vlan_push`: the tag
/// goes into the skb's metadata, as a VLAN device's does, so TSO super-frames stay
/// super-frames and the packet socket on the far end of a veth reads the tag from
/// `tp_vlan_tci`), and a tc ingress program takes the tag off what it receives
/// (`bpf_skb_vlan_pop`), so the host's stack sees untagged frames, as above a VLAN
/// device. `vxswitch lab --tagged-vm` uses it where the kernel has no 802.1Q devices.
///
/// The programs are attached through netlink to the interface's clsact qdisc (not on BPF
/// links): they stay with the interface after the process ends and go with it.
public enum VLANTagging {
  /// Attaches both programs to `interface` (in the current network namespace).
  public static func attach(interface: String, vlan: UInt16) throws {
    precondition((1...4094).contains(vlan))
    let index = try Syscall.interfaceIndex(interface)
    let tag = try load(tagProgram(vlan: vlan), name: "vxs_vlan_tag", interface: interface)
    defer { Glibc.close(tag) }
    let untag = try load(untagProgram(), name: "vxs_vlan_untag", interface: interface)
    // The tc filters hold the programs once attached.
    defer { Glibc.close(untag) }
    let result = cp_tc_attach_clsact(index, tag, untag)
    guard result == 0 else {
      throw AFPacketError.system(
        operation: "attaching the VLAN tc programs", interface: interface, errno: -result)
    }
  }

  private static func load(_ instructions: [UInt64], name: String, interface: String) throws -> Int32 {
    var code = instructions
    var log = [CChar](repeating: 0, count: 16384)
    let fd = code.withUnsafeMutableBufferPointer { code in
      cp_tc_program_load(code.baseAddress, code.count, name, &log, log.count)
    }
    guard fd >= 0 else {
      throw AFPacketError.system(
        operation: BPFAssembler.loadFailure(name, errno: -fd, verifierLog: log), interface: interface,
        errno: -fd)
    }
    return fd
  }

  /// `bpf_skb_vlan_push(skb, htons(ETH_P_8021Q), vlan)`, then `TC_ACT_OK`.
  static func tagProgram(vlan: UInt16) -> [UInt64] {
    var program = BPFAssembler()
    program.moveImmediate(.r2, UInt32(EtherType.vlan.bigEndian))
    program.moveImmediate(.r3, UInt32(vlan))
    program.call(Helper.vlanPush)
    program.moveImmediate(.r0, TCAction.ok)
    program.exit()
    return program.resolved()
  }

  /// `bpf_skb_vlan_pop(skb)` (nothing to do on an untagged frame), then `TC_ACT_OK`.
  static func untagProgram() -> [UInt64] {
    var program = BPFAssembler()
    program.call(Helper.vlanPop)
    program.moveImmediate(.r0, TCAction.ok)
    program.exit()
    return program.resolved()
  }

  /// `enum bpf_func_id` (linux/bpf.h).
  enum Helper {
    static let vlanPush: UInt32 = 18
    static let vlanPop: UInt32 = 19
  }

  enum TCAction {
    static let ok: UInt32 = 0
  }
}
