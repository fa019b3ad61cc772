import Foundation
import HTTPTypes
import Hummingbird

/// TCP listeners require `Authorization: Bearer TOKEN`; a missing or wrong token is 401.
/// The comparison takes the same time whatever the token's content (it touches every byte
/// of both), so response times reveal nothing of the token.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
  let token: [UInt8]

  func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
    async throws -> Response
  {
    guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
      Self.constantTimeEqual(Array(header.utf8.dropFirst(7)), token)
    else {
      throw APIError(.unauthorized, code: "unauthorized", "missing or wrong bearer token")
    }
    return try await next(request, context)
  }

  static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
    let length = max(a.count, b.count)
    for index in 0..<length {
      let x = index < a.count ? a[index] : 0
      let y = index < b.count ? b[index] : 0
      difference |= x ^ y
    }
    return difference == 0 && a.count == b.count
  }
}

/// Reads the API token file: it must exist, hold a token of at least 16 characters, and not
/// be readable by others (a world-readable token is refused at start-up, as ssh does).
public enum APITokenFile {
  public static func read(_ path: String) throws(APIStartupError) -> [UInt8] {
    var info = stat()
    guard stat(path, &info) == 0 else {
      throw APIStartupError("cannot read API token file \(path): \(String(cString: strerror(errno)))")
    }
    guard info.st_mode & 0o007 == 0 else {
      throw APIStartupError(
        "API token file \(path) is accessible by others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod o-rwx it"
      )
    }
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw APIStartupError("cannot read API token file \(path)")
    }
    let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard token.count >= 16, !token.contains(where: \.isWhitespace) else {
      throw APIStartupError("API token file \(path) must hold one token of at least 16 characters")
    }
    return Array(token.utf8)
  }
}

public struct APIStartupError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}
