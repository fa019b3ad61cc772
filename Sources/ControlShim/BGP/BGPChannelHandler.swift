import NIOCore

/// Cuts the TCP byte stream into BGP messages and hands each frame to its
/// `BGPConnection`; the connection decodes it so that errors map to the session.
// @unchecked: a channel handler runs on its channel's event loop, the speaker's.
final class BGPChannelHandler: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = ByteBuffer

  private let connection: BGPConnection
  /// Unconsumed input; `consumed` bytes at the front are already handled.
  private var pending: [UInt8] = []
  private var consumed = 0

  init(connection: BGPConnection) { self.connection = connection }

  func channelActive(context: ChannelHandlerContext) {
    connection.channelBecameActive()
    context.fireChannelActive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var buffer = unwrapInboundIn(data)
    if let bytes = buffer.readBytes(length: buffer.readableBytes) { pending.append(contentsOf: bytes) }
    do {
      while let length = try BGPMessageCodec.frameLength(pending, offset: consumed),
        pending.count - consumed >= length
      {
        let frame = Array(pending[consumed..<consumed + length])
        consumed += length
        guard connection.receive(frame: frame) else { return }
      }
    } catch let error as BGPWireError {
      connection.fail(with: error)
      return
    } catch {
      connection.close(reason: "framing: \(error)")
      return
    }
    // Compact once the handled prefix dominates, keeping appends amortised O(1).
    if consumed > 0 && consumed * 2 >= pending.count {
      pending.removeFirst(consumed)
      consumed = 0
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    connection.channelClosed()
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    connection.close(reason: "socket error: \(error)")
  }
}
