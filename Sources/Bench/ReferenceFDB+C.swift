import CReference
import Dataplane

/// The C yardstick's view of the switch's FDB.
extension vxr_fdb {
  init(_ fdb: ReferenceFDB) {
    self.init(
      words: fdb.words.assumingMemoryBound(to: UInt64.self), buckets: fdb.buckets,
      vtep_generations: fdb.vtepGenerations.assumingMemoryBound(to: UInt8.self),
      port_generations: fdb.portGenerations.assumingMemoryBound(to: UInt8.self))
  }
}
