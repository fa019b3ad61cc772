extension Pipeline {
  /// The inner IP packets that fit the underlay: its IP MTU less the 50 (IPv4) or 70
  /// (IPv6) bytes of outer IP, UDP, VXLAN and inner Ethernet header.
  @inline(__always)
  static func innerIPMTU(_ out: UnderlayOutput) -> Int {
    out.ipMTU &- (out.isIPv6 ? OuterHeaderTemplate.ipv6Length : OuterHeaderTemplate.ipv4Length)
  }

  /// Answers a frame too big for the underlay the way the Linux vxlan device answers a
  /// bridged one (`iptunnel_pmtud_build_icmp`): an ICMP Fragmentation Needed (IPv4 with
  /// DF) or ICMPv6 Packet Too Big carrying the usable MTU, sent back out of the ingress
  /// member as if from the destination, so that the sender's path MTU discovery lowers
  /// its segment size instead of retransmitting into a black hole. Nothing is sent for
  /// IPv4 without DF or fragments, multicast destinations, ICMP errors, or an MTU under
  /// the protocol's minimum (576 / 1280). At most `pathMTUReplyBudget` per second per
  /// worker; the frame itself is still dropped as `mtuExceeded` by the caller.
  @inline(never)
  func answerTooBig(
    _ state: ForwardingState, member: UInt16, macs: UnsafeRawPointer, rest: UnsafeRawPointer, restLength: Int,
    innerMTU: Int, now: UInt32
  ) {
    if macs.u8(0) & 1 != 0 || restLength < 2 { return }
    let etherType = rest.be16(0)
    let ip = rest + 2
    let ipLength = restLength &- 2
    let reply = pathMTUScratch
    let headerLength: Int
    let quoted: Int
    if etherType == EtherType.ipv4 {
      guard ipLength >= IPv4Layout.minimumHeaderLength, ip.u8(0) &>> 4 == 4, innerMTU >= 576,
        ip.be16(IPv4Layout.fragmentOffset) == IPv4Layout.dontFragment
      else { return }
      if ip.u8(IPv4Layout.protocolOffset) == IPProtocol.icmp {
        let ipHeader = Int(ip.u8(0) & 0x0F) &<< 2
        // ICMP errors (3, 4, 5, 11, 12) are never answered with one.
        if ipLength <= ipHeader { return }
        let type = ip.u8(ipHeader)
        if type == 3 || type == 4 || type == 5 || type == 11 || type == 12 { return }
      }
      let destination = ip.be32(IPv4Layout.destinationOffset)
      if destination >= 0xE000_0000 { return }
      headerLength = EthernetLayout.headerLength &+ 20 &+ 8
      quoted = min(ipLength, 576 &- 28)
    } else if etherType == EtherType.ipv6 {
      guard ipLength >= IPv6Layout.headerLength, ip.u8(0) &>> 4 == 6, innerMTU >= 1280 else { return }
      if ip.u8(IPv6Layout.destinationOffset) == 0xFF { return }
      if ip.u8(IPv6Layout.nextHeaderOffset) == IPProtocol.icmpv6 {
        // ICMPv6 errors are types 0-127.
        if ipLength <= IPv6Layout.headerLength || ip.u8(IPv6Layout.headerLength) < 128 { return }
      }
      headerLength = EthernetLayout.headerLength &+ 40 &+ 8
      quoted = min(ipLength, 1280 &- 48)
    } else {
      return
    }
    if now != pathMTUSecond {
      pathMTUSecond = now
      pathMTURepliesThisSecond = 0
    }
    if pathMTURepliesThisSecond >= Self.pathMTUReplyBudget {
      count(Counter.pathMTURateLimited)
      return
    }
    pathMTURepliesThisSecond &+= 1

    // Ethernet: back to the sender, from the MAC it sent to.
    reply.setRaw32(0, macs.raw32(6))
    reply.setRaw16(4, macs.raw16(10))
    reply.setRaw32(6, macs.raw32(0))
    reply.setRaw16(10, macs.raw16(4))
    reply.setBE16(EthernetLayout.etherTypeOffset, etherType)
    let out = reply + EthernetLayout.headerLength
    let length: Int
    if etherType == EtherType.ipv4 {
      let icmpLength = 8 &+ quoted
      out.setBE16(0, 0x4500)
      out.setBE16(IPv4Layout.totalLengthOffset, UInt16(truncatingIfNeeded: 20 &+ icmpLength))
      out.setBE16(IPv4Layout.identificationOffset, 0)
      out.setBE16(IPv4Layout.fragmentOffset, IPv4Layout.dontFragment)
      out.setU8(IPv4Layout.ttlOffset, ip.u8(IPv4Layout.ttlOffset))
      out.setU8(IPv4Layout.protocolOffset, IPProtocol.icmp)
      out.setBE16(IPv4Layout.checksumOffset, 0)
      out.setRaw32(IPv4Layout.sourceOffset, ip.raw32(IPv4Layout.destinationOffset))
      out.setRaw32(IPv4Layout.destinationOffset, ip.raw32(IPv4Layout.sourceOffset))
      out.setBE16(IPv4Layout.checksumOffset, OnesComplement.finish(OnesComplement.sum(out, count: 20)))
      let icmp = out + 20
      // Type 3 (destination unreachable), code 4 (fragmentation needed), next-hop MTU.
      icmp.setBE16(0, 0x0304)
      icmp.setBE16(2, 0)
      icmp.setBE16(4, 0)
      icmp.setBE16(6, UInt16(truncatingIfNeeded: innerMTU))
      (icmp + 8).copyMemory(from: ip, byteCount: quoted)
      icmp.setBE16(2, OnesComplement.finish(OnesComplement.sum(icmp, count: icmpLength)))
      length = headerLength &+ quoted
    } else {
      let icmpLength = 8 &+ quoted
      out.setBE32(0, 0x6000_0000)
      out.setBE16(IPv6Layout.payloadLengthOffset, UInt16(truncatingIfNeeded: icmpLength))
      out.setU8(IPv6Layout.nextHeaderOffset, IPProtocol.icmpv6)
      out.setU8(IPv6Layout.hopLimitOffset, ip.u8(IPv6Layout.hopLimitOffset))
      (out + IPv6Layout.sourceOffset).copyMemory(from: ip + IPv6Layout.destinationOffset, byteCount: 16)
      (out + IPv6Layout.destinationOffset).copyMemory(from: ip + IPv6Layout.sourceOffset, byteCount: 16)
      let icmp = out + 40
      // Type 2 (packet too big), code 0, MTU.
      icmp.setBE16(0, 0x0200)
      icmp.setBE16(2, 0)
      icmp.setBE32(4, UInt32(truncatingIfNeeded: innerMTU))
      (icmp + 8).copyMemory(from: ip, byteCount: quoted)
      let pseudo =
        OnesComplement.sum(out + IPv6Layout.sourceOffset, count: 32) &+ UInt64(icmpLength)
        &+ UInt64(IPProtocol.icmpv6)
      icmp.setBE16(2, OnesComplement.finish(OnesComplement.sum(icmp, count: icmpLength, initial: pseudo)))
      length = headerLength &+ quoted
    }
    count(Counter.pathMTUReplies)
    emitLocal(
      state, member: member, macs: reply, rest: reply + 12, restLength: length &- 12)
  }

  /// Path MTU replies per worker per second (the kernel's default ICMP rate is 1000/s
  /// per host, bursts of 50).
  static let pathMTUReplyBudget = 100
  /// A reply is at most an Ethernet header and 576 (IPv4) or 1280 (IPv6) bytes.
  static let pathMTUScratchBytes = 14 + 1280
}
