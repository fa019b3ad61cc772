/// One interface as the packet loop sees it: a source of frame batches and a transmit
/// ring. Called once per batch, never per frame, so a protocol costs nothing measurable;
/// the per-frame work touches only `FrameVector` and `TxRing` memory.
///
/// Each worker owns its own port objects (own sockets and rings); a port is not shared
/// between threads.
public protocol PacketPort: AnyObject {
  /// Interface name, as in the configuration.
  var name: String { get }
  /// Appends received frames to `vector` (up to its capacity) without blocking; the
  /// memory stays valid until `releaseReceived()`. Returns how many were added.
  func receive(into vector: inout FrameVector) -> Int
  /// Gives the memory of the frames returned by `receive` back to the port.
  func releaseReceived()
  /// The transmit ring the pipeline writes into for this interface.
  var transmitRing: UnsafeMutablePointer<TxRing> { get }
  /// Pushes frames committed to the ring out (a syscall kick for AF_PACKET).
  func flushTransmit()
}
