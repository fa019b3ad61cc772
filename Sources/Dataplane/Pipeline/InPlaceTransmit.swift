/// What a transmit ring knows of the UMEM its AF_XDP port shares with the ports frames are
/// received on (`SharedUMEM.sendsInPlace`), so that a received frame leaves from where it
/// is instead of being copied into a transmit slot: encapsulated with its outer header
/// written in the chunk's headroom (the kernel leaves XDP_PACKET_HEADROOM, 256 bytes,
/// before every received frame), or decapsulated by sending from its inner frame on.
///
/// The ring still takes a slot for such a frame, so that frames keep their order, but the
/// slot holds only the frame's UMEM address (at `markerOffset`, after the status and
/// length words); the port posts that address and frees the slot at once. A chunk goes out
/// in place at most once per reception (`keep`, one byte per receive chunk): it is kept
/// back from the fill ring when its batch is released, and given back when the kernel has
/// sent it.
///
/// Thread safety: used only by the worker that owns every socket of the UMEM (the pipeline
/// sets `keep`, the receiving port clears it), read-only otherwise.
public struct InPlaceTransmit {
  /// Where a slot that stands for a frame sent in place holds the frame's UMEM address
  /// (never 0: a received frame starts past its chunk's headroom).
  public static let markerOffset = 8

  let area: UnsafeMutableRawPointer
  /// Bytes of the UMEM's receive chunks, at its start.
  let receiveBytes: Int
  let chunkShift: Int
  let keep: UnsafeMutablePointer<UInt8>

  /// Claims the chunk of `frame` for sending in place with `headroom` bytes written before
  /// it: returns the UMEM offset the sent frame starts at, or nil (then copy it) when
  /// `frame` is not in this UMEM's receive area, has less headroom in its chunk, or its
  /// chunk is already going out in place.
  @inline(__always)
  public func claim(_ frame: UnsafeRawPointer, headroom: Int) -> Int? {
    let offset = frame - UnsafeRawPointer(area)
    guard UInt(bitPattern: offset) < UInt(bitPattern: receiveBytes),
      offset & (1 &<< chunkShift &- 1) >= headroom
    else { return nil }
    let chunk = offset &>> chunkShift
    if keep[chunk] != 0 { return nil }
    keep[chunk] = 1
    return offset &- headroom
  }
}
