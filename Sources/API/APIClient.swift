import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The client side of the HTTP API, for the CLI and the lab: the daemon's Unix control
/// socket, or a TCP URL with a bearer token. Calls block the calling thread (the CLI is a
/// plain command-line program); never call them on an event loop.
public struct APIClient: Sendable {
  public enum Endpoint: Sendable, Equatable {
    case unixSocket(String)
    case url(String, token: String)
  }

  public let endpoint: Endpoint
  public var timeout: TimeAmount = .seconds(60)

  public init(_ endpoint: Endpoint) { self.endpoint = endpoint }

  /// A reply: status and body; error statuses are thrown as `APIClientError.server`.
  public struct Reply: Sendable {
    public var status: Int
    public var body: Data
  }

  /// `GET path` decoded as `T` (`decoder` defaults to the API's snake-case coding).
  public func get<T: Decodable>(_ path: String, as type: T.Type, decoder: JSONDecoder = APICoding.decoder)
    throws
    -> T
  {
    let reply = try request(.GET, path)
    do {
      return try decoder.decode(type, from: reply.body)
    } catch {
      throw APIClientError.malformedReply("\(path): \(error)")
    }
  }

  @discardableResult
  public func request(_ method: HTTPMethod, _ path: String, body: Data? = nil) throws -> Reply {
    let url: String
    var headers = HTTPHeaders()
    switch endpoint {
    case .unixSocket(let socket):
      guard let socketURL = URL(httpURLWithSocketPath: socket, uri: path) else {
        throw APIClientError.connection("bad control socket path \(socket)")
      }
      url = socketURL.absoluteString
    case .url(let base, let token):
      url = base.hasSuffix("/") ? String(base.dropLast()) + path : base + path
      headers.add(name: "Authorization", value: "Bearer \(token)")
    }
    if body != nil { headers.add(name: "Content-Type", value: "application/json") }
    let request: HTTPClient.Request
    do {
      request = try HTTPClient.Request(
        url: url, method: method, headers: headers, body: body.map { .data($0) })
    } catch {
      throw APIClientError.connection("\(url): \(error)")
    }
    let response: HTTPClient.Response
    do {
      response = try HTTPClient.shared.execute(request: request, deadline: .now() + timeout).wait()
    } catch {
      throw APIClientError.connection("\(describe(endpoint)): \(error)")
    }
    let data = response.body.map { Data(buffer: $0) } ?? Data()
    let status = Int(response.status.code)
    if status >= 400 {
      let decoded = try? APICoding.decoder.decode(APIError.Body.self, from: data)
      throw APIClientError.server(
        status: status, code: decoded?.error.code ?? "http_\(status)",
        message: decoded?.error.message ?? String(decoding: data, as: UTF8.self),
        details: decoded?.error.details ?? [])
    }
    return Reply(status: status, body: data)
  }

  func describe(_ endpoint: Endpoint) -> String {
    switch endpoint {
    case .unixSocket(let path): return "control socket \(path)"
    case .url(let url, _): return url
    }
  }
}

public enum APIClientError: Error, CustomStringConvertible, Sendable {
  case connection(String)
  case server(status: Int, code: String, message: String, details: [String])
  case malformedReply(String)

  public var description: String {
    switch self {
    case .connection(let message): return "cannot reach vxswitch: \(message)"
    case .server(_, _, let message, let details):
      return ([message] + details).joined(separator: "\n")
    case .malformedReply(let message): return "malformed reply: \(message)"
    }
  }
}
