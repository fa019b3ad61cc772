/// What the channel counted since it was built (the API serves it as JSON, snake case).
public struct SiteChannelStatistics: Codable, Sendable, Equatable {
  public struct Peer: Codable, Sendable, Equatable {
    /// The site, as `[[site_peer]] name` spells it.
    public var site: String
    /// Requests sent to the site (each attempt of `sendWithRetry` counts).
    public var requestsSent: UInt64 = 0
    /// Requests the site sent here that passed the identity check.
    public var requestsReceived: UInt64 = 0
    /// Requests sent to the site that failed: unreachable, or refused with 4xx/5xx.
    public var errors: UInt64 = 0
    /// Requests from the site refused with 429 over `[peering] rate_limit`.
    public var rateLimited: UInt64 = 0
    public init(site: String, requestsSent: UInt64 = 0, requestsReceived: UInt64 = 0, errors: UInt64 = 0) {
      self.site = site
      self.requestsSent = requestsSent
      self.requestsReceived = requestsReceived
      self.errors = errors
    }
  }

  /// One entry per `[[site_peer]]`, in the file's order.
  public var peers: [Peer]
  /// Incoming TLS handshakes that failed: no client certificate, one not signed by
  /// `tls_ca`, expired, a client that refused ours, or a connection closed mid-handshake.
  public var handshakeFailures: UInt64 = 0
  /// Incoming requests refused with 403 `unknown_site`: a valid certificate that names no
  /// site of `[[site_peer]]` (or not exactly one DNS name).
  public var identityRefusals: UInt64 = 0

  public init(peers: [Peer]) { self.peers = peers }
}
