/// Bounds-checked big-endian reader over a byte array. Every read either succeeds or
/// throws `WireReader.Underflow`, so decoders never trap on hostile input; callers map
/// the underflow onto the RFC 7606 error that fits the field being read.
public struct WireReader {
  public struct Underflow: Error {}

  let bytes: [UInt8]
  var position: Int
  let end: Int

  public init(_ bytes: [UInt8]) {
    self.bytes = bytes
    self.position = 0
    self.end = bytes.count
  }

  init(bytes: [UInt8], position: Int, end: Int) {
    self.bytes = bytes
    self.position = position
    self.end = end
  }

  public var remaining: Int { end - position }
  public var isAtEnd: Bool { position >= end }

  public mutating func readUInt8() throws -> UInt8 {
    guard position < end else { throw Underflow() }
    defer { position += 1 }
    return bytes[position]
  }

  public mutating func readUInt16() throws -> UInt16 {
    guard end - position >= 2 else { throw Underflow() }
    defer { position += 2 }
    return UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
  }

  public mutating func readUInt24() throws -> UInt32 {
    guard end - position >= 3 else { throw Underflow() }
    defer { position += 3 }
    return UInt32(bytes[position]) << 16 | UInt32(bytes[position + 1]) << 8 | UInt32(bytes[position + 2])
  }

  public mutating func readUInt32() throws -> UInt32 {
    guard end - position >= 4 else { throw Underflow() }
    defer { position += 4 }
    var value: UInt32 = 0
    for offset in 0..<4 { value = value << 8 | UInt32(bytes[position + offset]) }
    return value
  }

  public mutating func readUInt(octets count: Int) throws -> UInt64 {
    guard count <= 8, end - position >= count else { throw Underflow() }
    defer { position += count }
    var value: UInt64 = 0
    for offset in 0..<count { value = value << 8 | UInt64(bytes[position + offset]) }
    return value
  }

  public mutating func readUInt64() throws -> UInt64 { try readUInt(octets: 8) }

  public mutating func readBytes(_ count: Int) throws -> [UInt8] {
    guard count >= 0, end - position >= count else { throw Underflow() }
    defer { position += count }
    return Array(bytes[position..<position + count])
  }

  public mutating func skip(_ count: Int) throws {
    guard count >= 0, end - position >= count else { throw Underflow() }
    position += count
  }

  /// Splits off the next `count` bytes as their own reader (sharing storage) and
  /// advances past them; used for length-delimited fields so that an inner decoder
  /// cannot read beyond its field.
  public mutating func subReader(_ count: Int) throws -> WireReader {
    guard count >= 0, end - position >= count else { throw Underflow() }
    defer { position += count }
    return WireReader(bytes: bytes, position: position, end: position + count)
  }

  public func remainingBytes() -> [UInt8] { Array(bytes[position..<end]) }
}

/// Big-endian byte writer with helpers for the length-prefixed fields BGP uses.
public struct WireWriter {
  public private(set) var bytes: [UInt8]

  public init(capacity: Int = 64) {
    bytes = []
    bytes.reserveCapacity(capacity)
  }

  public var count: Int { bytes.count }

  public mutating func write(_ value: UInt8) { bytes.append(value) }
  public mutating func write(_ value: UInt16) {
    bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    bytes.append(UInt8(truncatingIfNeeded: value))
  }
  /// The first `count` octets of `value` in network order, in one append.
  mutating func writeLeading(_ value: UInt64, octets count: Int) {
    withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0.prefix(count)) }
  }
  public mutating func writeUInt24(_ value: UInt32) {
    bytes.append(UInt8(truncatingIfNeeded: value >> 16))
    bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    bytes.append(UInt8(truncatingIfNeeded: value))
  }
  public mutating func write(_ value: UInt32) {
    withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
  }
  public mutating func write(_ value: UInt64) {
    withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
  }
  public mutating func write(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }
  mutating func write(_ raw: UnsafeRawBufferPointer) { bytes.append(contentsOf: raw) }

  /// Reserves a length field of `octets` bytes, runs `body`, then fills in the number
  /// of bytes `body` wrote.
  public mutating func withLengthPrefix(octets: Int, _ body: (inout WireWriter) -> Void) {
    let lengthAt = bytes.count
    bytes.append(contentsOf: repeatElement(0, count: octets))
    body(&self)
    let length = bytes.count - lengthAt - octets
    for index in 0..<octets {
      bytes[lengthAt + index] = UInt8(truncatingIfNeeded: length >> (8 * (octets - 1 - index)))
    }
  }

  mutating func patchUInt16(at offset: Int, _ value: UInt16) {
    bytes[offset] = UInt8(truncatingIfNeeded: value >> 8)
    bytes[offset + 1] = UInt8(truncatingIfNeeded: value)
  }
}

extension Array where Element == UInt8 {
  /// Hex dump used in error texts and test failure messages.
  var hexString: String { map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
}
