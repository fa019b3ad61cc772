import Dataplane
import NIOCore

@testable import ControlShim

/// The BGP message decoder and the speaker's UPDATE handling: the input is a byte stream
/// as a peer would send it, cut into messages by their length field as the session's
/// framer does. Every message is decoded; an UPDATE goes through the speaker's import
/// (RIB, then the real `SwitchCoreRouteSink` into a switch's FDB) as if received on an
/// Established session. The first byte picks the peer (iBGP or eBGP) and 4-octet ASNs.
///
/// Invariants: decoding fails only with a typed `BGPWireError` carrying an RFC 4271
/// error code; a peer never has more routes accepted than it sent.
final class BGPFuzzTarget: FuzzTarget {
  let speaker: EVPNSpeaker

  init() {
    let core = SwitchCore(config: PipelineFuzzTarget.config())
    let sink = SwitchCoreRouteSink(core: core)
    let configuration = SpeakerConfiguration(
      asn: 65000, routerID: 0x0A00_0001, vtep: IPAddress("10.0.0.1")!,
      vnis: [VNIConfiguration(vni: 100), VNIConfiguration(vni: 200)],
      peers: [
        PeerConfiguration(name: "internal", address: "10.0.0.2", remoteAS: 65000, maxRoutes: 5000),
        PeerConfiguration(name: "external", address: "10.0.0.3", remoteAS: 65001),
      ])
    speaker = EVPNSpeaker(configuration: configuration, sink: sink)
  }

  func run(_ input: UnsafeRawBufferPointer) {
    guard let control = input.first else { return }
    let context = DecodingContext(fourOctetAS: control & 1 != 0)
    var messages: [[UInt8]] = []
    var offset = 1
    while offset < input.count {
      // The framer's cut: 19-byte header, length at offset 16; a bad length is the
      // decoder's to report, on the rest of the stream.
      var end = input.count
      if input.count - offset >= 19 {
        let length = Int(input[offset + 16]) << 8 | Int(input[offset + 17])
        if length >= 19 && offset + length <= input.count { end = offset + length }
      }
      messages.append(Array(input[offset..<end]))
      offset = end
    }
    let speaker = self.speaker
    let peerIndex = Int(control >> 1 & 1)
    try! speaker.eventLoop.submit {
      let peer = speaker.peers[peerIndex]
      for bytes in messages {
        let decoded: DecodedMessage
        do {
          decoded = try BGPMessageCodec.decode(bytes, context: context)
        } catch let error as BGPWireError {
          fuzzCheck((1...6).contains(error.notificationCode.code), "NOTIFICATION code of \(error)")
          // The session resets: what follows would arrive on a new session.
          return
        } catch {
          fuzzCheck(false, "untyped decoding error \(error)")
          return
        }
        speaker.processUpdate(decoded, from: peer)
        let status = peer.status(rib: speaker.rib)
        fuzzCheck(
          status.routesAccepted <= status.routesReceived,
          "\(status.routesAccepted) routes accepted of \(status.routesReceived) received")
      }
    }.wait()
  }
}
