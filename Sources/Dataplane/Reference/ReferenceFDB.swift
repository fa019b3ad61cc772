/// An FDB's read side as plain pointers, for a reference implementation of the fast paths
/// (`EncapsulationReferenceInputs`, `DecapsulationReferenceInputs`): its buckets (eight
/// words each: sequence, three keys, three values, overflow), the bucket count, and the
/// VTEPs' and ports' flush generations.
///
/// Valid while the table lives. Readers follow `ForwardingTable`'s seqlock contract.
public struct ReferenceFDB {
  public let words: UnsafeRawPointer
  public let buckets: UInt64
  public let vtepGenerations: UnsafeRawPointer
  public let portGenerations: UnsafeRawPointer

  init(_ table: ForwardingTable.Reader) {
    words = UnsafeRawPointer(table.words)
    buckets = table.bucketScale
    vtepGenerations = UnsafeRawPointer(table.vtepGenerations)
    portGenerations = UnsafeRawPointer(table.portGenerations)
  }
}
