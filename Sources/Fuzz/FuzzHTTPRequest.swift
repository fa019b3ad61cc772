import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded

/// A request as the fuzz input spells it: `METHOD PATH` on the first line, the body after
/// it. Only what an HTTP/1.1 parser would hand on: a known method and a path of visible
/// ASCII characters.
struct FuzzHTTPRequest {
  var method: HTTPRequest.Method
  var path: String
  var body: [UInt8]

  init?(_ input: UnsafeRawBufferPointer) {
    let newline = input.firstIndex(of: UInt8(ascii: "\n")) ?? input.count
    let line = input[..<newline]
    guard let space = line.firstIndex(of: UInt8(ascii: " ")) else { return nil }
    guard let method = HTTPRequest.Method(String(decoding: line[..<space], as: UTF8.self)) else { return nil }
    let pathBytes = line[(space + 1)...]
    guard pathBytes.first == UInt8(ascii: "/"), pathBytes.allSatisfy({ (0x21...0x7E).contains($0) }) else {
      return nil
    }
    self.method = method
    path = String(decoding: pathBytes, as: UTF8.self)
    body = newline < input.count ? Array(input[(newline + 1)...]) : []
  }

  func makeRequest() -> Request {
    var head = HTTPRequest(method: method, scheme: "http", authority: "localhost", path: path)
    if !body.isEmpty { head.headerFields[.contentType] = "application/json" }
    return Request(head: head, body: RequestBody(buffer: ByteBuffer(bytes: body)))
  }
}

/// Runs `responder` on one request to completion from the fuzzer's synchronous callback,
/// and checks what any request must get: a response, or an error that the server turns
/// into a response of its own (`HTTPResponseError`), never an internal error.
enum FuzzHTTPDriver {
  static let channel = EmbeddedChannel()
  static let logger: Logger = {
    var logger = Logger(label: "vxswitch-fuzz")
    logger.logLevel = .critical
    return logger
  }()

  static func respond<Context: RequestContext>(
    _ request: Request, context: @escaping @Sendable () -> Context,
    responder: @escaping @Sendable (Request, Context) async throws -> Response
  ) {
    let done = DispatchSemaphore(value: 0)
    let outcome = FuzzOutcome()
    Task {
      defer { done.signal() }
      do {
        let response = try await responder(request, context())
        outcome.status = response.status.code
      } catch let error as any HTTPResponseError {
        outcome.status = error.status.code
      } catch {
        outcome.failure = "\(type(of: error)): \(error)"
      }
    }
    done.wait()
    fuzzCheck(
      outcome.failure == nil, "\(request.method) \(request.uri): untyped error \(outcome.failure ?? "")")
    fuzzCheck(outcome.status != 500, "\(request.method) \(request.uri): internal server error")
  }
}

extension FuzzHTTPDriver {
  /// Runs `body` in a task and waits for it on the fuzzer's thread.
  static func wait<Value: Sendable>(_ body: @escaping @Sendable () async -> Value) -> Value {
    let done = DispatchSemaphore(value: 0)
    let result = FuzzResult<Value>()
    Task {
      result.value = await body()
      done.signal()
    }
    done.wait()
    return result.value!
  }
}

/// A task's value handed to the fuzzer's thread (written before the semaphore is
/// signalled, read after it is waited for).
final class FuzzResult<Value>: @unchecked Sendable {
  var value: Value?
}

/// What the request task reports back to the fuzzer's thread (read after the semaphore).
final class FuzzOutcome: @unchecked Sendable {
  var status = 0
  var failure: String?
}
