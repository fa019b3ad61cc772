import HTTPTypes
import Hummingbird
import Management
import NIOCore

/// Refuses requests over a client's rate with 429 `rate_limited` and `Retry-After`
/// (whole seconds, at least 1), before anything else runs: on the TCP listener it comes
/// ahead of the bearer-token check, so guessing tokens is rate-limited too. The client is
/// the remote IP address (any port).
struct RateLimitMiddleware<Context: RequestContext & RemoteAddressRequestContext>: RouterMiddleware {
  let limiter: RequestRateLimiter

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
    async throws -> Response
  {
    let client = context.remoteAddress?.ipAddress ?? "unknown"
    if case .refused(let retryAfter) = limiter.admit(client) {
      return try APIError.rateLimited(retryAfter: retryAfter, rate: limiter.rate)
        .response(from: request, context: context)
    }
    return try await next(request, context)
  }
}

extension APIError {
  /// 429 `rate_limited` with `Retry-After` in whole seconds (at least 1).
  public static func rateLimited(retryAfter: Double, rate: Double) -> APIError {
    var error = APIError(
      .tooManyRequests, code: "rate_limited",
      "too many requests: at most \(rate.formatted()) a second from one client; retry later")
    error.retryAfter = max(1, Int(retryAfter.rounded(.up)))
    return error
  }
}

extension Double {
  /// "50" for whole numbers, "0.5" otherwise.
  fileprivate func formatted() -> String {
    self == rounded() ? String(Int(self)) : String(self)
  }
}
