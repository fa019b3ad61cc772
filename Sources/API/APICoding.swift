import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// JSON as the API speaks it: snake-case keys, sorted (stable output for diffs and golden
/// tests), ISO 8601 nowhere (times are seconds).
public enum APICoding {
  public static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }()

  public static let decoder: JSONDecoder = {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return decoder
  }()

  public static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response
  {
    let data = try encoder.encode(value)
    return Response(
      status: status, headers: [.contentType: "application/json"],
      body: .init(byteBuffer: ByteBuffer(bytes: data)))
  }
}

/// The request context of every route: the API's JSON coding and a small upload limit
/// (requests are a few hundred bytes; anything larger is refused before it is read).
public struct APIRequestContext: RequestContext, RemoteAddressRequestContext {
  public var coreContext: CoreRequestContextStorage
  /// The client's address (TCP listeners: what the rate limit counts by).
  public let remoteAddress: SocketAddress?
  public init(source: ApplicationRequestContextSource) {
    coreContext = .init(source: source)
    remoteAddress = source.channel.remoteAddress
  }
  public var requestDecoder: JSONDecoder { APICoding.decoder }
  public var responseEncoder: JSONEncoder { APICoding.encoder }
  public var maxUploadSize: Int { 64 * 1024 }
}
