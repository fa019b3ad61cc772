import CPacket

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// Loads a tc BPF program and attaches it at an interface's ingress on a tcx BPF link
/// (Linux 6.6 on): the one way the switch hangs programs there (`UnderlayStackBypass`,
/// `RedirectingTap`). The link holds the program; closing the link's descriptor (or the
/// process ending) detaches it.
enum TCXIngress {
  /// Why a program could not be attached: the verifier's or the kernel's words.
  struct Failure: Error {
    let reason: String
  }

  /// Loads `instructions` as `name` and attaches them to the ingress of interface
  /// `index` (in the current network namespace); returns the link's descriptor.
  static func attach(_ instructions: [UInt64], name: String, interfaceIndex index: Int32) throws(Failure)
    -> Int32
  {
    var code = instructions
    var log = [CChar](repeating: 0, count: 16384)
    let programFD = code.withUnsafeMutableBufferPointer { buffer in
      cp_tc_program_load(buffer.baseAddress, buffer.count, name, &log, log.count)
    }
    guard programFD >= 0 else {
      throw Failure(reason: BPFAssembler.loadFailure("tc", errno: -programFD, verifierLog: log))
    }
    // The link holds the program; the program's own descriptor is not needed after.
    defer { Glibc.close(programFD) }
    let link = cp_tcx_attach_ingress(index, programFD)
    guard link >= 0 else {
      throw Failure(
        reason: "attaching at tcx ingress failed: \(AFPacketError.text(-link))"
          + (-link == EINVAL || -link == EOPNOTSUPP ? " (tcx needs Linux 6.6 or later)" : ""))
    }
    return link
  }
}
