/// Why a request to another site did not get a successful answer.
public enum SiteChannelError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The site is not in `[[site_peer]]`.
  case unknownSite(String)
  /// No answer: the connection, the TLS handshake (also when the other side's certificate
  /// does not name the site called) or the request failed or timed out.
  case unreachable(String)
  /// The other site answered 4xx or 5xx; `code` and `message` come from its JSON error body
  /// (`{"error": {"code", "message"}}`), or are `http_STATUS` and the body as text.
  case refused(status: Int, code: String, message: String)
  /// The calling task was cancelled.
  case cancelled

  public var description: String {
    switch self {
    case .unknownSite(let site): return "unknown site \(site): not in [[site_peer]]"
    case .unreachable(let reason): return "unreachable: \(reason)"
    case .refused(let status, let code, let message): return "refused (\(status) \(code)): \(message)"
    case .cancelled: return "cancelled"
    }
  }

  /// Worth another attempt for an idempotent call: no answer, or a 5xx.
  public var isTransient: Bool {
    switch self {
    case .unreachable: return true
    case .refused(let status, _, _): return status >= 500
    case .unknownSite, .cancelled: return false
    }
  }
}

/// A `SiteChannel` cannot be built: no `[peering]`, unreadable or unusable TLS files.
public struct SiteChannelSetupError: Error, Sendable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
