import Foundation
import HTTPTypes
import Hummingbird
import Management

/// An API error: `{"error": {"code": "...", "message": "...", "details": [...]}}` with the
/// status that says what went wrong. Handlers throw it; nothing was changed when it is thrown.
public struct APIError: Error, HTTPResponseError, Sendable {
  public var status: HTTPResponse.Status
  public var code: String
  public var message: String
  /// One line per problem, e.g. every `FILE:LINE: message` of a configuration.
  public var details: [String]?
  /// Seconds after which the request may succeed (429 and 503): the `Retry-After` header.
  public var retryAfter: Int?

  public init(_ status: HTTPResponse.Status, code: String, _ message: String, details: [String]? = nil) {
    self.status = status
    self.code = code
    self.message = message
    self.details = details
  }

  public init(_ error: ManagementError) {
    switch error {
    case .invalidRequest(let message): self.init(.badRequest, code: "invalid_request", message)
    case .notFound(let message): self.init(.notFound, code: "not_found", message)
    case .conflict(let message): self.init(.conflict, code: "conflict", message)
    case .restartRequired(let message): self.init(.conflict, code: "restart_required", message)
    case .unavailable(let message): self.init(.serviceUnavailable, code: "unavailable", message)
    case .forbidden(let message): self.init(.forbidden, code: "forbidden", message)
    case .invalidConfiguration(let errors):
      self.init(
        .unprocessableContent, code: "invalid_configuration",
        "configuration not reloaded: \(errors.count) error(s)",
        details: errors)
    }
  }

  public static func badRequest(_ message: String) -> APIError {
    APIError(.badRequest, code: "invalid_request", message)
  }

  struct Body: Codable, Sendable {
    struct Inner: Codable, Sendable {
      var code: String
      var message: String
      var details: [String]?
    }
    var error: Inner
  }

  public func response(from request: Request, context: some RequestContext) throws -> Response {
    let body = Body(error: .init(code: code, message: message, details: details))
    var response = try APICoding.response(body, status: status)
    if status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer realm=\"vxswitch\"" }
    if let retryAfter { response.headers[.retryAfter] = "\(retryAfter)" }
    return response
  }
}
