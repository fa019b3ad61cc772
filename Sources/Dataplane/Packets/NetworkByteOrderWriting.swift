/// Appending header fields to a frame under construction, always in network byte order,
/// so that builders never spell out shifts and cannot forget a byte swap.
extension Array where Element == UInt8 {
  mutating func appendBigEndian(_ value: UInt16) {
    append(UInt8(truncatingIfNeeded: value >> 8))
    append(UInt8(truncatingIfNeeded: value))
  }

  mutating func appendBigEndian(_ value: UInt32) {
    appendBigEndian(UInt16(truncatingIfNeeded: value >> 16))
    appendBigEndian(UInt16(truncatingIfNeeded: value))
  }

  mutating func append(_ address: MACAddress) { append(contentsOf: address.octets) }

  mutating func append(_ address: IPAddress) { append(contentsOf: address.bytes) }

  /// Overwrites two bytes at `offset` (a checksum slot filled after the header is laid out).
  mutating func storeBigEndian(_ value: UInt16, at offset: Int) {
    self[offset] = UInt8(truncatingIfNeeded: value >> 8)
    self[offset + 1] = UInt8(truncatingIfNeeded: value)
  }
}
