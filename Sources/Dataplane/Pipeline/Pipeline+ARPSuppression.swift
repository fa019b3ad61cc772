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
    if restLength < 30 || rest.be16(0) != 0x0806 { return }
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
    if learnQueue.push(event) {
      count(Counter.learnEventsQueued)
    } else {
      count(Counter.learnQueueOverflow)
    }
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

    let interface = Int(state.memberInterface[Int(member)])
    let vlan = state.memberVLAN[Int(member)]
    guard let ring = rings[interface], let output = ring.pointee.reserve() else {
      drop(.txRingFull)
      return true
    }
    let tagLength = vlan == 0 ? 0 : 4
    let length = 42 &+ tagLength
    // Ethernet: to the requester's hardware address, from the bound MAC.
    output.setBE16(0, UInt16(truncatingIfNeeded: senderMAC &>> 32))
    output.setBE32(2, UInt32(truncatingIfNeeded: senderMAC))
    output.setBE16(6, UInt16(truncatingIfNeeded: boundMAC &>> 32))
    output.setBE32(8, UInt32(truncatingIfNeeded: boundMAC))
    if vlan != 0 {
      output.setBE16(12, 0x8100)
      output.setBE16(14, vlan)
    }
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
}
