/// A MAC of a VNI frozen by duplicate-MAC detection (RFC 7432 section 15.1), as `show fdb`
/// prints it ("02:00:00:00:00:01").
public struct DuplicateMAC: Hashable, Sendable {
  public var vni: UInt32
  public var mac: String
  public init(vni: UInt32, mac: String) {
    self.vni = vni
    self.mac = mac
  }
}
