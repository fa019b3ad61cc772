// swift-tools-version:6.0
import Foundation
import PackageDescription

// `VXSWITCH_UNCHECKED=1 swift build -c release` drops overflow and bounds checks for
// measurements. Unsafe flags stay out of the default manifest so that other packages
// can depend on this one.
let uncheckedFlags: [SwiftSetting] =
  ProcessInfo.processInfo.environment["VXSWITCH_UNCHECKED"] == "1"
  ? [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))] : []

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
  ],
  targets: [
    // libnl through pkg-config: its headers live in /usr/include/libnl3.
    .systemLibrary(
      name: "CNetlink",
      pkgConfig: "libnl-route-3.0",
      providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
    ),
    .target(
      name: "CPacket",
      dependencies: ["CNetlink"],
      linkerSettings: [.linkedLibrary("pcap"), .linkedLibrary("nl-route-3"), .linkedLibrary("nl-3")]
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
      ]
    ),
    .executableTarget(
      name: "vxswitch",
      dependencies: [
        "Dataplane", "ControlShim",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .executableTarget(
      name: "Bench",
      dependencies: [
        "Dataplane", "ControlShim",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: uncheckedFlags
    ),
    // Test-only malloc interposer (counts allocations for the zero-allocation test).
    .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
    .testTarget(
      name: "DataplaneTests", dependencies: ["Dataplane", "CPacket", "AllocationCounter"],
      exclude: ["../Fixtures"]),
    .testTarget(name: "BenchTests", dependencies: ["Bench", "Dataplane"]),
    // Runs the built `vxswitch` binary (lab, interop with the kernel, BGP peers).
    .testTarget(name: "IntegrationTests"),
    .testTarget(
      name: "ControlShimTests",
      dependencies: [
        "ControlShim", "Dataplane",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ]),
  ],
  swiftLanguageModes: [.v5]
)
