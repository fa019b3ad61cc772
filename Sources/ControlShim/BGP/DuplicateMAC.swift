import Dataplane

/// A MAC of a VNI frozen by duplicate-MAC detection (RFC 7432 section 15.1).
public struct DuplicateMAC: Hashable, Sendable {
  public var vni: UInt32
  public var mac: MACAddress
  public init(vni: UInt32, mac: MACAddress) {
    self.vni = vni
    self.mac = mac
  }
}
