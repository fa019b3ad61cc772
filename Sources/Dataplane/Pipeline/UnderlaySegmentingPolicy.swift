/// Whether the next access batch joins datagrams into UDP GSO frames (`UnderlaySegmenter`)
/// or sends each behind a plain header, chosen batch by batch like `FlowCachePolicy`:
/// trying to join costs about 200 instructions per frame that no run takes (mixed flows
/// of small frames), and saves a trip through the kernel's transmit path per datagram
/// that one does (the segments of a TSO super-frame). A batch of 32 or more datagrams
/// that joined under a quarter of them turns joining off; after 64 batches without it,
/// the next tries again.
struct UnderlaySegmentingPolicy {
  private var segmenting = true
  private var plainBatches = 0
  /// Tests pin the choice.
  var forced: Bool? = nil

  var segmentsNextBatch: Bool { forced ?? segmenting }

  /// A batch's outcome: whether it tried to join, the datagrams it committed and those
  /// that went out inside GSO frames.
  mutating func record(tried: Bool, committed: Int, joined: Int) {
    if committed == 0 { return }
    if tried {
      // A few frames say little (a VM's lone ACK between its super-frames): only a batch
      // of 32 or more that joined under a quarter of them turns joining off.
      if committed >= 32 && joined &* 4 < committed { segmenting = false }
      plainBatches = 0
    } else {
      plainBatches &+= 1
      if plainBatches >= 64 { segmenting = true }
    }
  }
}
