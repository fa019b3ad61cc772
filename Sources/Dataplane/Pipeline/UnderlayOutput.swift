/// What every encapsulation of one batch shares, read once per batch rather than once
/// per frame: the underlay transmit ring, the per-VTEP header templates and checksum
/// bases, the header length of the local address family, the site's encapsulation
/// parameters, and the largest inner frame that fits both the underlay IP MTU and a
/// ring slot. Also the batch's underlay transmit counts, flushed to the pipeline's
/// counters at its end.
///
/// The ring is worked on as a copy (`tx`), so that its fields stay in registers while
/// frame bytes are written through raw pointers; `finish()` writes its position back to
/// the shared ring and `resume()` takes it up again (around a frame that another
/// `UnderlayOutput` handles). Nothing else may use the underlay ring meanwhile.
///
/// A batch-local value; not shared.
struct UnderlayOutput {
  let ring: UnsafeMutablePointer<TxRing>?
  var tx: TxRing
  let interface: Int
  let isIPv6: Bool
  /// 50 over IPv4, 70 over IPv6.
  let headerLength: Int
  /// Largest `restLength` (inner frame bytes after its two MACs) that may be
  /// encapsulated; anything longer is an MTU or slot-size drop.
  let maxRestLength: Int
  let ipMTU: Int
  /// `ForwardingState.headerSlot` bytes per VTEP: its outer header template.
  let headers: UnsafeMutableRawPointer
  let checksumBase: UnsafeMutablePointer<UInt32>
  let resolved: UnsafeMutablePointer<Bool>
  let vtepCount: Int
  let domainVNI: UnsafeMutablePointer<UInt32>
  let sourcePortBase: UInt32
  let sourcePortSpan: UInt64
  let inheritDSCP: Bool
  let ipv4UDPChecksum: Bool
  var frames = 0
  /// Inner frame bytes encapsulated (each frame adds `headerLength` more on the wire).
  var innerBytes = 0

  /// Bytes sent: the inner frames and an outer header each.
  var bytes: Int { innerBytes &+ frames &* headerLength }

  @inline(__always)
  init(state: ForwardingState, ring: UnsafeMutablePointer<TxRing>?) {
    self.ring = ring
    tx = ring?.pointee ?? .unattached
    interface = Int(state.underlayInterface)
    isIPv6 = state.localIsIPv6
    headerLength = isIPv6 ? OuterHeaderTemplate.ipv6Length : OuterHeaderTemplate.ipv4Length
    // Outer IP length = inner frame + UDP + VXLAN (+ IPv4 or IPv6 header).
    let ipOverhead = isIPv6 ? 56 : 36
    var limit = state.ipMTU &- ipOverhead &- 12
    if let ring {
      limit = min(limit, ring.pointee.maxFrameLength &- headerLength &- 12)
    }
    maxRestLength = limit
    ipMTU = state.ipMTU
    headers = state.vtepHeaders
    checksumBase = state.vtepChecksumBase
    resolved = state.vtepResolved
    vtepCount = state.vtepCount
    domainVNI = state.domainVNI
    sourcePortBase = state.sourcePortBase
    sourcePortSpan = UInt64(state.sourcePortSpan)
    inheritDSCP = state.inheritDSCP
    ipv4UDPChecksum = state.ipv4UDPChecksum
  }

  /// Whether `vtep` has a header to send with (in this snapshot, with a next hop).
  @inline(__always)
  func canReach(_ vtep: Int) -> Bool { vtep < vtepCount && resolved[vtep] }

  /// Hands the ring position back to the shared ring.
  @inline(__always)
  func finish() {
    guard let ring else { return }
    ring.pointee.next = tx.next
    ring.pointee.pending = tx.pending
  }

  /// Takes the ring position up again from the shared ring after `finish()`.
  @inline(__always)
  mutating func resume() {
    guard let ring else { return }
    tx.next = ring.pointee.next
    tx.pending = ring.pointee.pending
  }

  /// Why a frame over `maxRestLength` cannot leave: the MTU unless only the slot is short.
  @inline(__always)
  func overLimitReason(restLength: Int) -> DropReason {
    let ipLength = 12 &+ restLength &+ (isIPv6 ? 56 : 36)
    return ipLength > ipMTU ? .mtuExceeded : .oversize
  }
}
