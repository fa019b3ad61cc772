extension String {
  /// Decodes a NUL-terminated C error buffer (libpcap's `errbuf`), tolerating a missing NUL.
  init(cErrorBuffer buffer: [CChar]) {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    self = String(decoding: bytes, as: UTF8.self)
  }
}
