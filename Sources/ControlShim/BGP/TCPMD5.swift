import Dataplane
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// RFC 2385 TCP MD5 signatures via Linux's TCP_MD5SIG socket option. The key is bound
/// to the peer address: on a client socket before connect(), on a listening socket for
/// every peer that may connect (accepted sockets inherit it). A key of length 0 removes
/// the address's key (`remove`), as when a peer leaves a running speaker.
enum TCPMD5 {
  enum Failure: Error, CustomStringConvertible {
    case unsupportedPlatform
    case keyTooLong
    case badAddress(String)
    var description: String {
      switch self {
      case .unsupportedPlatform: return "TCP MD5 signatures need Linux TCP_MD5SIG"
      case .keyTooLong: return "TCP MD5 key longer than 80 octets"
      case .badAddress(let text): return "TCP MD5: bad peer address \(text)"
      }
    }
  }

  static func configure(_ channel: Channel, peerAddress: String, password: String) -> EventLoopFuture<Void> {
    setKey(channel, peerAddress: peerAddress, key: Array(password.utf8))
  }

  /// Removes the key for `peerAddress` (the kernel fails with ENOENT when there is none).
  static func remove(_ channel: Channel, peerAddress: String) -> EventLoopFuture<Void> {
    setKey(channel, peerAddress: peerAddress, key: [])
  }

  private static func setKey(_ channel: Channel, peerAddress: String, key: [UInt8]) -> EventLoopFuture<Void> {
    #if os(Linux)
      guard let provider = channel as? SocketOptionProvider else {
        return channel.eventLoop.makeFailedFuture(Failure.unsupportedPlatform)
      }
      guard key.count <= Int(TCP_MD5SIG_MAXKEYLEN) else {
        return channel.eventLoop.makeFailedFuture(Failure.keyTooLong)
      }
      guard let address = IPAddress(peerAddress) else {
        return channel.eventLoop.makeFailedFuture(Failure.badAddress(peerAddress))
      }
      var option = tcp_md5sig()
      withUnsafeMutableBytes(of: &option.tcpm_addr) { storage in
        switch address {
        case .v4(let value):
          var socketAddress = sockaddr_in()
          socketAddress.sin_family = sa_family_t(AF_INET)
          socketAddress.sin_addr.s_addr = value.bigEndian
          withUnsafeBytes(of: socketAddress) { storage.copyMemory(from: $0) }
        case .v6:
          var socketAddress = sockaddr_in6()
          socketAddress.sin6_family = sa_family_t(AF_INET6)
          let bytes = address.bytes
          withUnsafeMutableBytes(of: &socketAddress.sin6_addr) { $0.copyBytes(from: bytes) }
          withUnsafeBytes(of: socketAddress) { storage.copyMemory(from: $0) }
        }
      }
      option.tcpm_keylen = UInt16(key.count)
      withUnsafeMutableBytes(of: &option.tcpm_key) { $0.copyBytes(from: key) }
      return provider.unsafeSetSocketOption(level: .init(IPPROTO_TCP), name: .init(TCP_MD5SIG), value: option)
    #else
      return channel.eventLoop.makeFailedFuture(Failure.unsupportedPlatform)
    #endif
  }
}
