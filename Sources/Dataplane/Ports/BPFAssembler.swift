/// A minimal eBPF assembler: the instructions `XDPSteeringProgram` and
/// `UnderlayStackBypass` need, with forward jumps to labels resolved at the end. Each
/// instruction is the kernel's 8-byte `struct bpf_insn` (opcode, dst/src registers, 16-bit
/// offset, 32-bit immediate), built as a little-endian `UInt64`.
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
  private static let add64: UInt8 = 0x0F  // BPF_ALU64 | BPF_ADD | BPF_X
  private static let xor64: UInt8 = 0xAF  // BPF_ALU64 | BPF_XOR | BPF_X
  private static let multiplyImmediate64: UInt8 = 0x27  // BPF_ALU64 | BPF_MUL | BPF_K
  private static let moduloImmediate64: UInt8 = 0x97  // BPF_ALU64 | BPF_MOD | BPF_K (unsigned)
  private static let shiftRightImmediate64: UInt8 = 0x77  // BPF_ALU64 | BPF_RSH | BPF_K
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
  mutating func add(_ dst: Register, _ src: Register) { emit(Self.add64, dst: dst, src: src) }
  mutating func xor(_ dst: Register, _ src: Register) { emit(Self.xor64, dst: dst, src: src) }
  mutating func multiply(_ dst: Register, _ value: UInt32) {
    emit(Self.multiplyImmediate64, dst: dst, immediate: value)
  }
  mutating func modulo(_ dst: Register, _ value: UInt32) {
    precondition(value != 0)
    emit(Self.moduloImmediate64, dst: dst, immediate: value)
  }
  mutating func shiftRight(_ dst: Register, _ bits: UInt32) {
    emit(Self.shiftRightImmediate64, dst: dst, immediate: bits)
  }

  /// A 32-bit field of the program's context (`struct xdp_md`, `struct __sk_buff`).
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

extension BPFAssembler {
  /// Why loading a `kind` program failed: the kernel's error and the end of the
  /// verifier's log (`verifierLog`, NUL-terminated), where it wrote one.
  static func loadFailure(_ kind: String, errno: Int32, verifierLog: [CChar]) -> String {
    let verifier = String(
      decoding: verifierLog.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return "loading the \(kind) program failed: \(AFPacketError.text(errno))"
      + (verifier.isEmpty ? "" : " [verifier: \(verifier.suffix(400))]")
  }

  /// Jumps to `label` unless the frame (r2 = data, r3 = data_end) is a datagram the
  /// switch owns on the underlay: untagged, unfragmented UDP to `vtep` and `udpPort`
  /// (IPv4 without options, or IPv6 with UDP as the first next header). Uses r4 and r5.
  mutating func requireVXLAN(to vtep: IPAddress, udpPort: UInt16, otherwise label: Label) {
    let port = UInt32(udpPort.bigEndian)
    requireBytes(EthernetLayout.headerLength, pass: label)
    load(.half, .r5, from: .r2, offset: EthernetLayout.etherTypeOffset)
    let ip = EthernetLayout.headerLength
    if vtep.isIPv4 {
      jumpIfNotEqual(.r5, UInt32(EtherType.ipv4.bigEndian), to: label)
      requireBytes(ip + IPv4Layout.minimumHeaderLength + UDPLayout.headerLength, pass: label)
      load(.byte, .r5, from: .r2, offset: ip)
      jumpIfNotEqual(.r5, UInt32(IPv4Layout.versionWithoutOptions), to: label)
      load(.byte, .r5, from: .r2, offset: ip + IPv4Layout.protocolOffset)
      jumpIfNotEqual(.r5, UInt32(IPProtocol.udp), to: label)
      // More-fragments flag and fragment offset: a fragment is the kernel's to reassemble.
      load(.half, .r5, from: .r2, offset: ip + IPv4Layout.fragmentOffset)
      and(.r5, UInt32(IPv4Layout.fragmentMask.bigEndian))
      jumpIfNotEqual(.r5, 0, to: label)
      load(.word, .r5, from: .r2, offset: ip + IPv4Layout.destinationOffset)
      jumpIfNotEqual(.r5, vtep.ipv4Word, to: label)
      load(
        .half, .r5, from: .r2, offset: ip + IPv4Layout.minimumHeaderLength + UDPLayout.destinationPortOffset)
      jumpIfNotEqual(.r5, port, to: label)
    } else {
      jumpIfNotEqual(.r5, UInt32(EtherType.ipv6.bigEndian), to: label)
      requireBytes(ip + IPv6Layout.headerLength + UDPLayout.headerLength, pass: label)
      load(.byte, .r5, from: .r2, offset: ip + IPv6Layout.nextHeaderOffset)
      jumpIfNotEqual(.r5, UInt32(IPProtocol.udp), to: label)
      for (index, word) in vtep.ipv6Words.enumerated() {
        load(.word, .r5, from: .r2, offset: ip + IPv6Layout.destinationOffset + 4 * index)
        jumpIfNotEqual(.r5, word, to: label)
      }
      load(.half, .r5, from: .r2, offset: ip + IPv6Layout.headerLength + UDPLayout.destinationPortOffset)
      jumpIfNotEqual(.r5, port, to: label)
    }
  }
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
