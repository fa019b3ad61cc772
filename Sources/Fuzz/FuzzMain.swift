import Foundation

/// One fuzz target: set up once, then fed every input libFuzzer generates. Each checks
/// invariants of its own and traps (a crash libFuzzer keeps) when one fails.
protocol FuzzTarget: AnyObject {
  func run(_ input: UnsafeRawBufferPointer)
}

/// The targets by the name `scripts/fuzz.sh` passes in `VXSWITCH_FUZZ_TARGET`: one binary
/// for all of them, so that the instrumented build is compiled and linked once.
enum FuzzTargets {
  static let names = ["pipeline", "bgp", "config", "api", "peering"]

  static func make(_ name: String) -> FuzzTarget? {
    switch name {
    case "pipeline": return PipelineFuzzTarget()
    case "bgp": return BGPFuzzTarget()
    case "config": return ConfigFuzzTarget()
    case "api": return APIRequestFuzzTarget()
    case "peering": return PeeringFuzzTarget()
    default: return nil
    }
  }

  nonisolated(unsafe) static var selected: FuzzTarget?
}

/// Fails the run with `message` when an invariant does not hold (also in release builds).
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
  if !condition() {
    FileHandle.standardError.write(Data("fuzz invariant violated: \(message())\n".utf8))
    abort()
  }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>
) -> CInt {
  let name = ProcessInfo.processInfo.environment["VXSWITCH_FUZZ_TARGET"] ?? ""
  guard let target = FuzzTargets.make(name) else {
    FileHandle.standardError.write(
      Data("set VXSWITCH_FUZZ_TARGET to one of \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
    exit(2)
  }
  FuzzTargets.selected = target
  return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  FuzzTargets.selected?.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
  return 0
}

/// libFuzzer's driver, called from the entry point below.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
  _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// The entry point: SwiftPM links executables with `main` renamed to `<module>_main` (so
/// that tests can link them), which hides libFuzzer's own `main`; this one hands over to
/// libFuzzer's driver instead.
@_cdecl("vxswitch_fuzz_main")
public func fuzzMain(
  _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
  var count = argc
  var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
  return runFuzzerDriver(&count, &arguments) { data, size in fuzzerTestOneInput(data, size) }
}
