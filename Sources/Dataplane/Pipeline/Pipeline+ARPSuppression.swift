extension Pipeline {
  /// Queues the (sender IP, sender MAC) binding of a local ARP request or reply for the
  /// learner when the ARP table does not already hold it. Only when the sender hardware
  /// address is the frame's source MAC; the binding lives as long as the MAC's local FDB
  /// entry (the ager removes both). A control-plane binding of another MAC is not
  /// replaced, but the claim is still queued once (the control plane reports the
  /// address conflict and marks the entry, after which nothing more is queued).
  @inline(never)
  func learnARP(
    domain: UInt16, member: UInt16, source: UInt64, rest: UnsafeRawPointer, restLength: Int, now: UInt32
  ) {
    if restLength < 30 { return }
    let etherType = rest.be16(0)
    if etherType == 0x86DD {
      return learnND(
        domain: domain, member: member, source: source, rest: rest, restLength: restLength, now: now)
    }
    if etherType != 0x0806 { return }
    let arp = rest + 2
    let header = arp.be64(0)
    if header != 0x0001_0800_0604_0001 && header != 0x0001_0800_0604_0002 { return }
    let senderIP = arp.be32(14)
    // 0.0.0.0 (probes), multicast, class E and broadcast are not host addresses.
    if senderIP == 0 || senderIP >= 0xE000_0000 { return }
    if arp.be64(8) &>> 16 != source { return }
    let value = self.arp.lookup(domain: domain, ipv4: senderIP)
    if value & ARPTable.presentBit != 0
      && (value & ARPTable.conflictBit != 0 || value & ARPTable.macMask == source)
    {
      return
    }
    var event = LearnEvent()
    event.key = ARPTable.key(domain: domain, ipv4: senderIP)
    event.kind = LearnEvent.arpBinding
    event.member = member
    event.stamp = now
    event.vtepLow = source
    queueBinding(event)
  }

  /// If the frame (from `rest`, its EtherType) is an Ethernet/IPv4 ARP request for an IP
  /// bound in the domain's ARP table, writes the ARP reply a host owning the IP would
  /// send, out of the ingress member (tagged as the member is), and returns true: the
  /// request is consumed, not flooded. Gratuitous ARP (sender IP = target IP), probes
  /// (sender IP 0.0.0.0, RFC 5227), replies, requests for the requester's own MAC and
  /// for an IP in an address conflict (`ARPTable.conflictBit`: several MACs claim it)
  /// return false and are forwarded as before.
  @inline(never)
  func answerARP(
    _ state: ForwardingState, domain: UInt16, member: UInt16, rest: UnsafeRawPointer, restLength: Int
  ) -> Bool {
    if restLength >= 2 && rest.be16(0) == 0x86DD {
      return answerND(state, domain: domain, member: member, rest: rest, restLength: restLength)
    }
    // EtherType, then htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (request).
    if restLength < 30 || rest.be16(0) != 0x0806 { return false }
    let arp = rest + 2
    if arp.be64(0) != 0x0001_0800_0604_0001 { return false }
    let senderIP = arp.be32(14)
    let targetIP = arp.be32(24)
    if senderIP == 0 || senderIP == targetIP { return false }
    let value = self.arp.lookup(domain: domain, ipv4: targetIP)
    if value & (ARPTable.presentBit | ARPTable.conflictBit) != ARPTable.presentBit { return false }
    let boundMAC = value & ARPTable.macMask
    let senderMAC = arp.be64(8) &>> 16
    if boundMAC == senderMAC { return false }

    // Ethernet: to the requester's hardware address, from the bound MAC.
    guard
      case let (ring, interface, output, tagLength)? = startReply(
        state, member: member, to: senderMAC, from: boundMAC)
    else { return true }
    let length = 42 &+ tagLength
    let reply = output + (12 &+ tagLength)
    reply.setBE16(0, 0x0806)
    // htype, ptype, hlen, plen, op 2 (reply).
    reply.setBE32(2, 0x0001_0800)
    reply.setBE32(6, 0x0604_0002)
    // Sender: the bound MAC and the asked-for IP; target: the requester.
    reply.setBE16(10, UInt16(truncatingIfNeeded: boundMAC &>> 32))
    reply.setBE32(12, UInt32(truncatingIfNeeded: boundMAC))
    reply.setBE32(16, targetIP)
    reply.setBE16(20, UInt16(truncatingIfNeeded: senderMAC &>> 32))
    reply.setBE32(22, UInt32(truncatingIfNeeded: senderMAC))
    reply.setBE32(26, senderIP)
    ring.pointee.commit(length: length)
    count(Counter.txFrames(interface))
    count(Counter.txBytes(interface), length)
    count(Counter.arpSuppressed)
    return true
  }

  // MARK: IPv6 neighbour discovery (RFC 4861)

  /// Queues the binding a local neighbour solicitation (its source address and source
  /// link-layer address option) or advertisement (its target and target link-layer
  /// address option) shows, as `learnARP` does for ARP: only when the option's address is
  /// the frame's source MAC, for unicast addresses that are neither link-local nor
  /// unspecified (duplicate address detection is not learnt), never over a conflicted
  /// entry, and once over a control-plane binding of another MAC.
  @inline(never)
  func learnND(
    domain: UInt16, member: UInt16, source: UInt64, rest: UnsafeRawPointer, restLength: Int, now: UInt32
  ) {
    guard let message = NDMessage(rest: rest, restLength: restLength) else { return }
    let high: UInt64
    let low: UInt64
    if message.type == NDMessage.solicitation {
      (high, low) = (message.ip.be64(8), message.ip.be64(16))
      guard message.linkLayerAddress(option: 1) == source else { return }
    } else {
      (high, low) = (message.ip.be64(48), message.ip.be64(56))
      guard message.linkLayerAddress(option: 2) == source else { return }
    }
    guard NDMessage.isHostAddress(high, low) else { return }
    let value = arp.lookup(domain: domain, ipv6High: high, ipv6Low: low)
    if value & ARPTable.presentBit != 0
      && (value & ARPTable.conflictBit != 0 || value & ARPTable.macMask == source)
    {
      return
    }
    var event = LearnEvent()
    event.key = UInt64(truncatingIfNeeded: domain) &<< 48 | source
    event.kind = LearnEvent.ndBinding
    event.member = member
    event.stamp = now
    event.vtepHigh = high
    event.vtepLow = low
    queueBinding(event)
  }

  /// If the frame is a neighbour solicitation (hop limit 255, with a source address and
  /// a source link-layer address option) for an address bound in the domain's table and
  /// not in conflict, writes the solicited neighbour advertisement the owner would send
  /// (flags S and O, the target link-layer address option, ICMPv6 checksum) out of the
  /// ingress member and returns true. Duplicate address detection (unspecified source),
  /// advertisements, solicitations without the option or for the solicitor's own MAC
  /// return false and are forwarded as before. Counted as `arp_suppressed`.
  @inline(never)
  func answerND(
    _ state: ForwardingState, domain: UInt16, member: UInt16, rest: UnsafeRawPointer, restLength: Int
  ) -> Bool {
    guard let message = NDMessage(rest: rest, restLength: restLength), message.type == NDMessage.solicitation
    else { return false }
    let ip = message.ip
    let (sourceHigh, sourceLow) = (ip.be64(8), ip.be64(16))
    if sourceHigh == 0 && sourceLow == 0 { return false }
    guard let senderMAC = message.linkLayerAddress(option: 1) else { return false }
    let (targetHigh, targetLow) = (ip.be64(48), ip.be64(56))
    if targetHigh &>> 56 == 0xFF { return false }
    let value = arp.lookup(domain: domain, ipv6High: targetHigh, ipv6Low: targetLow)
    if value & (ARPTable.presentBit | ARPTable.conflictBit) != ARPTable.presentBit { return false }
    let boundMAC = value & ARPTable.macMask
    if boundMAC == senderMAC { return false }

    guard
      case let (ring, interface, output, tagLength)? = startReply(
        state, member: member, to: senderMAC, from: boundMAC)
    else { return true }
    // Ethernet (14), IPv6 (40), advertisement (24) and the target link-layer option (8).
    let length = 86 &+ tagLength
    output.setBE16(12 &+ tagLength, 0x86DD)
    let reply = output + (14 &+ tagLength)
    // Version 6, payload 32 bytes, ICMPv6, hop limit 255; from the target to the solicitor.
    reply.setBE32(0, 0x6000_0000)
    reply.setBE16(4, 32)
    reply.setU8(6, 58)
    reply.setU8(7, 255)
    reply.setRaw64(8, targetHigh.bigEndian)
    reply.setRaw64(16, targetLow.bigEndian)
    reply.setRaw64(24, sourceHigh.bigEndian)
    reply.setRaw64(32, sourceLow.bigEndian)
    let icmp = reply + 40
    // Type 136 (neighbour advertisement), code 0, checksum below; flags S and O.
    icmp.setBE16(0, 0x8800)
    icmp.setBE16(2, 0)
    icmp.setBE32(4, 0x6000_0000)
    icmp.setRaw64(8, targetHigh.bigEndian)
    icmp.setRaw64(16, targetLow.bigEndian)
    // Target link-layer address option (type 2, 8 bytes): the bound MAC.
    icmp.setBE16(24, 0x0201)
    icmp.setBE16(26, UInt16(truncatingIfNeeded: boundMAC &>> 32))
    icmp.setBE32(28, UInt32(truncatingIfNeeded: boundMAC))
    let pseudo = OnesComplement.sum(reply + 8, count: 32) &+ 32 &+ 58
    icmp.setBE16(2, OnesComplement.finish(OnesComplement.sum(icmp, count: 32, initial: pseudo)))
    ring.pointee.commit(length: length)
    count(Counter.txFrames(interface))
    count(Counter.txBytes(interface), length)
    count(Counter.arpSuppressed)
    return true
  }

  /// Reserves a transmit slot on the member's interface and writes the Ethernet
  /// addresses of a locally answered request (to the requester, from the bound MAC) and
  /// the member's VLAN tag, if any. Nil (counted as `txRingFull`) when the ring is full:
  /// the request is consumed either way.
  @inline(__always)
  func startReply(_ state: ForwardingState, member: UInt16, to requester: UInt64, from bound: UInt64) -> (
    ring: UnsafeMutablePointer<TxRing>, interface: Int, output: UnsafeMutableRawPointer, tagLength: Int
  )? {
    let interface = Int(state.memberInterface[Int(member)])
    let vlan = state.memberVLAN[Int(member)]
    guard let ring = rings[interface], let output = ring.pointee.reserve() else {
      drop(.txRingFull)
      return nil
    }
    output.setBE16(0, UInt16(truncatingIfNeeded: requester &>> 32))
    output.setBE32(2, UInt32(truncatingIfNeeded: requester))
    output.setBE16(6, UInt16(truncatingIfNeeded: bound &>> 32))
    output.setBE32(8, UInt32(truncatingIfNeeded: bound))
    if vlan != 0 {
      output.setBE16(12, 0x8100)
      output.setBE16(14, vlan)
    }
    return (ring, interface, output, vlan == 0 ? 0 : 4)
  }

  /// Hands a learnt ARP or ND binding to the learner, counting it or the overflow.
  @inline(__always)
  func queueBinding(_ event: LearnEvent) {
    var event = event
    event.snapshotGeneration = snapshotGeneration
    if learnQueue.push(event) {
      count(Counter.learnEventsQueued)
    } else {
      count(Counter.learnQueueOverflow)
    }
  }
}

/// A neighbour solicitation or advertisement after an Ethernet header: an IPv6 header
/// without extension headers, next header ICMPv6, hop limit 255 (RFC 4861 section 7.1.1),
/// type 135 or 136, code 0, all within the frame.
struct NDMessage {
  static let solicitation: UInt8 = 135
  static let advertisement: UInt8 = 136
  /// The IPv6 header; the ICMPv6 message starts 40 bytes in.
  let ip: UnsafeRawPointer
  let type: UInt8
  /// The ICMPv6 message's length (the IPv6 payload length).
  let length: Int

  @inline(__always)
  init?(rest: UnsafeRawPointer, restLength: Int) {
    // EtherType, IPv6 header, the 24 bytes of a solicitation or advertisement.
    guard restLength >= 66 else { return nil }
    let ip = rest + 2
    guard ip.u8(0) &>> 4 == 6, ip.u8(6) == 58, ip.u8(7) == 255 else { return nil }
    let length = Int(ip.be16(4))
    guard length >= 24, 42 &+ length <= restLength else { return nil }
    let type = ip.u8(40)
    guard type == Self.solicitation || type == Self.advertisement, ip.u8(41) == 0 else { return nil }
    self.ip = ip
    self.type = type
    self.length = length
  }

  /// The MAC of the first link-layer address option of `option` type (1 source, 2
  /// target), nil when there is none (or the options are malformed).
  @inline(__always)
  func linkLayerAddress(option: UInt8) -> UInt64? {
    var offset = 64
    let end = 40 &+ length
    while offset &+ 8 <= end {
      let size = Int(ip.u8(offset &+ 1)) &* 8
      if size == 0 { return nil }
      if ip.u8(offset) == option && size == 8 { return ip.be64(offset) & ARPTable.macMask }
      offset &+= size
    }
    return nil
  }

  /// Unicast addresses of hosts: not multicast (ff00::/8), link-local (fe80::/10),
  /// unspecified or loopback.
  @inline(__always)
  static func isHostAddress(_ high: UInt64, _ low: UInt64) -> Bool {
    high &>> 56 != 0xFF && high &>> 54 != 0x3FA && !(high == 0 && low <= 1)
  }
}
