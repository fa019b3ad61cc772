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
      let port = UInt32(udpPort.bigEndian)
      program.requireBytes(EthernetLayout.headerLength, pass: .pass)
      program.load(.half, .r5, from: .r2, offset: EthernetLayout.etherTypeOffset)
      if vtep.isIPv4 {
        program.jumpIfNotEqual(.r5, UInt32(EtherType.ipv4.bigEndian), to: .pass)
        let ip = EthernetLayout.headerLength
        program.requireBytes(ip + IPv4Layout.minimumHeaderLength + UDPLayout.headerLength, pass: .pass)
        program.load(.byte, .r5, from: .r2, offset: ip)
        program.jumpIfNotEqual(.r5, UInt32(IPv4Layout.versionWithoutOptions), to: .pass)
        program.load(.byte, .r5, from: .r2, offset: ip + IPv4Layout.protocolOffset)
        program.jumpIfNotEqual(.r5, UInt32(IPProtocol.udp), to: .pass)
        // More-fragments flag and fragment offset: a fragment is the kernel's to reassemble.
        program.load(.half, .r5, from: .r2, offset: ip + IPv4Layout.fragmentOffset)
        program.and(.r5, UInt32(IPv4Layout.fragmentMask.bigEndian))
        program.jumpIfNotEqual(.r5, 0, to: .pass)
        program.load(.word, .r5, from: .r2, offset: ip + IPv4Layout.destinationOffset)
        program.jumpIfNotEqual(.r5, vtep.ipv4Word, to: .pass)
        program.load(
          .half, .r5, from: .r2, offset: ip + IPv4Layout.minimumHeaderLength + UDPLayout.destinationPortOffset
        )
        program.jumpIfNotEqual(.r5, port, to: .pass)
      } else {
        program.jumpIfNotEqual(.r5, UInt32(EtherType.ipv6.bigEndian), to: .pass)
        let ip = EthernetLayout.headerLength
        program.requireBytes(ip + IPv6Layout.headerLength + UDPLayout.headerLength, pass: .pass)
        program.load(.byte, .r5, from: .r2, offset: ip + IPv6Layout.nextHeaderOffset)
        program.jumpIfNotEqual(.r5, UInt32(IPProtocol.udp), to: .pass)
        for (index, word) in vtep.ipv6Words.enumerated() {
          program.load(.word, .r5, from: .r2, offset: ip + IPv6Layout.destinationOffset + 4 * index)
          program.jumpIfNotEqual(.r5, word, to: .pass)
        }
        program.load(
          .half, .r5, from: .r2, offset: ip + IPv6Layout.headerLength + UDPLayout.destinationPortOffset)
        program.jumpIfNotEqual(.r5, port, to: .pass)
      }
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

extension IPAddress {
  /// The IPv4 address as the 32-bit word a little-endian load from the packet gives.
  fileprivate var ipv4Word: UInt32 {
    let bytes = self.bytes
    return UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
  }

  /// The IPv6 address as four 32-bit words, as little-endian loads from the packet give.
  fileprivate var ipv6Words: [UInt32] {
    let bytes = self.bytes
    return (0..<4).map { word in
      (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[word * 4 + $1]) << (8 * $1) }
    }
  }
}

/// A minimal eBPF assembler: the instructions `XDPSteeringProgram` needs, with forward
/// jumps to labels resolved at the end. Each instruction is the kernel's 8-byte
/// `struct bpf_insn` (opcode, dst/src registers, 16-bit offset, 32-bit immediate), built as
/// a little-endian `UInt64`.
struct BPFAssembler {
  enum Register: UInt8 { case r0, r1, r2, r3, r4, r5, r6 }
  enum Size: UInt8 {
    case word = 0x00
    case half = 0x08
    case byte = 0x10
  }
  enum Label: Hashable { case pass }

  private var instructions: [UInt64] = []
  private var labels: [Label: Int] = [:]
  private var fixups: [(index: Int, label: Label)] = []

  // Opcodes (linux/bpf_common.h, linux/bpf.h).
  private static let loadMemory: UInt8 = 0x61  // BPF_LDX | BPF_MEM, plus the size
  private static let move64: UInt8 = 0xBF  // BPF_ALU64 | BPF_MOV | BPF_X
  private static let moveImmediate64: UInt8 = 0xB7  // BPF_ALU64 | BPF_MOV | BPF_K
  private static let addImmediate64: UInt8 = 0x07  // BPF_ALU64 | BPF_ADD | BPF_K
  private static let andImmediate64: UInt8 = 0x57  // BPF_ALU64 | BPF_AND | BPF_K
  private static let jumpGreater: UInt8 = 0x2D  // BPF_JMP | BPF_JGT | BPF_X
  private static let jumpNotEqual32: UInt8 = 0x56  // BPF_JMP32 | BPF_JNE | BPF_K
  private static let loadImmediate64: UInt8 = 0x18  // BPF_LD | BPF_IMM | BPF_DW (two slots)
  private static let call: UInt8 = 0x85
  private static let exit: UInt8 = 0x95

  private mutating func emit(
    _ code: UInt8, dst: Register = .r0, src: Register = .r0, offset: Int16 = 0, immediate: UInt32 = 0
  ) {
    let registers = UInt64(dst.rawValue) | UInt64(src.rawValue) << 4
    instructions.append(
      UInt64(code) | registers << 8 | UInt64(UInt16(bitPattern: offset)) << 16 | UInt64(immediate) << 32)
  }

  mutating func move(_ dst: Register, _ src: Register) { emit(Self.move64, dst: dst, src: src) }
  mutating func moveImmediate(_ dst: Register, _ value: UInt32) {
    emit(Self.moveImmediate64, dst: dst, immediate: value)
  }
  mutating func and(_ dst: Register, _ value: UInt32) {
    emit(Self.andImmediate64, dst: dst, immediate: value)
  }

  /// A 32-bit field of the program's context (`struct xdp_md`).
  mutating func loadContext(_ dst: Register, from src: Register, offset: Int) {
    load(.word, dst, from: src, offset: offset)
  }

  mutating func load(_ size: Size, _ dst: Register, from src: Register, offset: Int) {
    emit(Self.loadMemory | size.rawValue, dst: dst, src: src, offset: Int16(offset))
  }

  /// Jumps to `label` unless `data + count <= data_end` (r2 and r3): the bounds check the
  /// verifier needs before any read of the first `count` bytes. Uses r4.
  mutating func requireBytes(_ count: Int, pass label: Label) {
    move(.r4, .r2)
    emit(Self.addImmediate64, dst: .r4, immediate: UInt32(count))
    jump(Self.jumpGreater, dst: .r4, src: .r3, to: label)
  }

  /// Compares the low 32 bits of `register` with `value`.
  mutating func jumpIfNotEqual(_ register: Register, _ value: UInt32, to label: Label) {
    jump(Self.jumpNotEqual32, dst: register, immediate: value, to: label)
  }

  private mutating func jump(
    _ code: UInt8, dst: Register, src: Register = .r0, immediate: UInt32 = 0, to label: Label
  ) {
    fixups.append((instructions.count, label))
    emit(code, dst: dst, src: src, immediate: immediate)
  }

  /// Loads a map reference into `dst`; returns the instruction's index for the loader.
  mutating func loadMap(_ dst: Register) -> Int {
    let index = instructions.count
    emit(Self.loadImmediate64, dst: dst)
    instructions.append(0)
    return index
  }

  mutating func call(_ helper: UInt32) { emit(Self.call, immediate: helper) }
  mutating func exit() { emit(Self.exit) }
  mutating func label(_ label: Label) { labels[label] = instructions.count }
  func hasJumps(to label: Label) -> Bool { fixups.contains { $0.label == label } }

  /// The instructions with every jump's offset set (relative to the next instruction).
  func resolved() -> [UInt64] {
    var result = instructions
    for fixup in fixups {
      guard let target = labels[fixup.label] else {
        preconditionFailure("BPF label \(fixup.label) not placed")
      }
      let offset = UInt64(UInt16(bitPattern: Int16(target - fixup.index - 1)))
      result[fixup.index] = result[fixup.index] & ~(0xFFFF << 16) | offset << 16
    }
    return result
  }
}
