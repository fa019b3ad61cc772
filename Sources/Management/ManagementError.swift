/// Why a management request was refused. Every refusal leaves the running state as it was.
///
/// Transports map the kinds to their own status codes (the HTTP API: 400, 404, 409, 422, 503).
public enum ManagementError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The request itself is malformed (a bad MAC, an unknown origin, a VNI out of range).
  case invalidRequest(String)
  /// The thing named does not exist (a VNI with no bridge domain, a static MAC never added).
  case notFound(String)
  /// The request contradicts the running state (a MAC already static, a port outside the VNI).
  case conflict(String)
  /// The configuration file has errors, one `FILE:LINE: message` each; nothing was applied.
  case invalidConfiguration([String])
  /// The change needs a restart (new interfaces, another VTEP or UDP port); nothing was applied.
  case restartRequired(String)
  /// A subsystem the request needs is not running (no `[bgp]`, the speaker stopped).
  case unavailable(String)
  /// Only another site may make this change (an extension's owner).
  case forbidden(String)

  public var description: String {
    switch self {
    case .invalidRequest(let message), .notFound(let message), .conflict(let message),
      .restartRequired(let message), .unavailable(let message), .forbidden(let message):
      return message
    case .invalidConfiguration(let errors):
      return "configuration not reloaded:\n" + errors.joined(separator: "\n")
    }
  }
}
