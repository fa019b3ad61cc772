import NIOSSL
import Synchronization
import X509

enum PeerIdentity {
  /// The DNS names among a certificate's subject alternative names (none when it cannot be
  /// parsed or has no such extension).
  static func dnsNames(of certificate: NIOSSLCertificate) -> [String] {
    guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der),
      let names = try? parsed.extensions.subjectAlternativeNames
    else { return [] }
    return names.compactMap { name in
      if case .dnsName(let dns) = name { return dns }
      return nil
    }
  }
}

/// What one TLS connection's client certificate says, filled in on the event loop when the
/// handshake completes (before any request is read) and read by the requests' contexts,
/// which find it as a task-local of the connection's task.
final class PeerConnection: Sendable {
  private let state = Mutex<[String]>([])

  var names: [String] { state.withLock { $0 } }
  func set(_ names: [String]) { state.withLock { $0 = names } }

  @TaskLocal static var current: PeerConnection?
}
