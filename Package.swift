// swift-tools-version:6.1
import Foundation
import PackageDescription

// `VXSWITCH_UNCHECKED=1 swift build -c release` drops overflow and bounds checks for
// measurements. Unsafe flags stay out of the default manifest so that other packages
// can depend on this one.
let uncheckedFlags: [SwiftSetting] =
  ProcessInfo.processInfo.environment["VXSWITCH_UNCHECKED"] == "1"
  ? [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))] : []

// `VXSWITCH_FUZZ=1 swift build --product vxswitch-fuzz` (scripts/fuzz.sh) instruments this
// package's modules for libFuzzer and AddressSanitizer and adds the fuzz targets. Without it
// neither the flags nor the target exist, so the default build is unchanged. With
// `VXSWITCH_ASAN=1` as well (scripts/test.sh), one build makes both the fuzz binary and the
// suite under AddressSanitizer: the other products link the sanitizer without libFuzzer,
// whose coverage hooks the sanitizer's runtime then answers with empty functions.
let fuzzing = ProcessInfo.processInfo.environment["VXSWITCH_FUZZ"] == "1"
/// The modules the fuzz targets reach, instrumented for libFuzzer's coverage (set below, as
/// one `-sanitize=` option per target: given `-sanitize=fuzzer,address` and then
/// `-sanitize=address`, the compiler left the coverage out).
let fuzzInstrumentedModules: Set = [
  "Dataplane", "ControlShim", "Management", "API", "Peering", "vxswitch-fuzz",
]
let fuzzTargets: [Target] =
  fuzzing
  ? [
    .executableTarget(
      name: "vxswitch-fuzz",
      dependencies: [
        "Dataplane", "ControlShim", "Management", "API", "Peering",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
      ],
      path: "Sources/Fuzz",
      swiftSettings: [.unsafeFlags(["-parse-as-library"])],
      linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])]
    )
  ] : []

// `VXSWITCH_ASAN=1 swift build` instruments this package's modules (Swift and C, tests
// included) for AddressSanitizer: what scripts/test.sh runs the whole suite under. Only
// this package's modules, so that its dependencies stay those of a plain release build;
// the sanitizer's allocator and interceptors still cover them.
let addressSanitized = ProcessInfo.processInfo.environment["VXSWITCH_ASAN"] == "1"

// `VXSWITCH_DATAPLANE_ONLY=1` leaves only the dataplane, its C bindings and its tests, with
// no package dependency: what scripts/test.sh builds under ThreadSanitizer (a debug build
// of its own) for the concurrency tests, which are all in DataplaneTests.
let dataplaneOnly = ProcessInfo.processInfo.environment["VXSWITCH_DATAPLANE_ONLY"] == "1"

let package = Package(
  name: "vxswitch",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "Dataplane", targets: ["Dataplane"]),
    .library(name: "ControlShim", targets: ["ControlShim"]),
    .executable(name: "vxswitch", targets: ["vxswitch"]),
    .executable(name: "Bench", targets: ["Bench"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    // HTTP API (server on the Unix control socket and TCP), its client in the CLI,
    // metrics, logs and the daemon's service lifecycle.
    .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
    .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    // The site-to-site channel: mutual TLS (NIOSSL, HummingbirdTLS), certificates (X509, Crypto).
    .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
    .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
  ],
  targets: [
    // libnl through pkg-config: its headers live in /usr/include/libnl3.
    .systemLibrary(
      name: "CNetlink",
      pkgConfig: "libnl-route-3.0",
      providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
    ),
    // The C yardstick `Bench reference` counts instructions against (not part of the switch).
    .target(name: "CReference"),
    .target(
      name: "CPacket",
      dependencies: ["CNetlink"],
      linkerSettings: [
        .linkedLibrary("pcap"), .linkedLibrary("nl-route-3"), .linkedLibrary("nl-3"),
        // AF_XDP ports: libxdp (UMEM and sockets) and libbpf (program, map, attach).
        .linkedLibrary("xdp"), .linkedLibrary("bpf"),
      ]
    ),
    .target(
      name: "Dataplane",
      dependencies: ["CPacket"],
      swiftSettings: uncheckedFlags
    ),
    .target(
      name: "ControlShim",
      dependencies: [
        "Dataplane",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // One typed service over a running site: queries and changes, no transport, no JSON.
    .target(
      name: "Management",
      dependencies: [
        "Dataplane", "ControlShim",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // The HTTP API over Management (Unix socket and TCP with a bearer token), /metrics,
    // and the client the CLI uses.
    .target(
      name: "API",
      dependencies: [
        "Management", "Dataplane", "ControlShim",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // The site-to-site channel: HTTPS with mutual TLS between sites, identity from the
    // certificate's subject alternative name; SiteCA for the lab and tests.
    .target(
      name: "Peering",
      dependencies: [
        "Management", "API", "Dataplane",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HummingbirdTLS", package: "hummingbird"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "NIOTLS", package: "swift-nio"),
        .product(name: "X509", package: "swift-certificates"),
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // Runs external programs for the lab, Bench and the tests.
    .target(name: "SystemCommand", swiftSettings: [.swiftLanguageMode(.v6)]),
    .executableTarget(
      name: "vxswitch",
      dependencies: [
        "Dataplane", "ControlShim", "Management", "API", "Peering", "SystemCommand",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    .executableTarget(
      name: "Bench",
      dependencies: [
        "Dataplane", "ControlShim", "Management", "API", "SystemCommand", "CReference",
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: uncheckedFlags
    ),
    // Test-only malloc interposer (counts allocations for the zero-allocation test).
    .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
    .testTarget(
      name: "DataplaneTests", dependencies: ["Dataplane", "CPacket", "AllocationCounter", "SystemCommand"],
      exclude: ["../Fixtures"]),
    .testTarget(name: "BenchTests", dependencies: ["Bench", "Dataplane"]),
    .testTarget(
      name: "SystemCommandTests", dependencies: ["SystemCommand"], swiftSettings: [.swiftLanguageMode(.v6)]),
    .testTarget(
      name: "APITests",
      dependencies: [
        "API", "Management", "Dataplane", "ControlShim", "SystemCommand",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    .testTarget(
      name: "PeeringTests",
      dependencies: [
        "Peering", "Dataplane",
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "X509", package: "swift-certificates"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // Runs the built `vxswitch` binary (lab, interop with the kernel, BGP peers).
    .testTarget(name: "IntegrationTests"),
    .testTarget(
      name: "ControlShimTests",
      dependencies: [
        "ControlShim", "Dataplane", "Management", "API",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ]),
  ] + fuzzTargets,
  swiftLanguageModes: [.v5]
)

if dataplaneOnly {
  let kept: Set = [
    "CNetlink", "CPacket", "Dataplane", "SystemCommand", "AllocationCounter", "DataplaneTests",
  ]
  package.targets.removeAll { !kept.contains($0.name) }
  package.products = [.library(name: "Dataplane", targets: ["Dataplane"])]
  package.dependencies = []
}

// `VXSWITCH_TESTABLE=1` compiles this package's modules for `@testable import` in any
// configuration: what scripts/test.sh's release build needs, without
// `-Xswiftc -enable-testing`, which would compile every dependency for testing too: more
// code kept and compiled for nothing.
let testable = ProcessInfo.processInfo.environment["VXSWITCH_TESTABLE"] == "1"

for target in package.targets where target.type != .system {
  if testable {
    target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-enable-testing"])]
  }
  let coverage = fuzzing && fuzzInstrumentedModules.contains(target.name)
  if coverage {
    target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-sanitize=fuzzer,address"])]
  } else if addressSanitized {
    target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-sanitize=address"])]
  }
  if addressSanitized {
    target.cSettings = (target.cSettings ?? []) + [.unsafeFlags(["-fsanitize=address"])]
    if target.name != "vxswitch-fuzz" {  // it links with libFuzzer and the sanitizer already
      target.linkerSettings = (target.linkerSettings ?? []) + [.unsafeFlags(["-sanitize=address"])]
    }
  }
}
