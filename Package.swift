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
    .target(
      name: "CPacket",
      linkerSettings: [.linkedLibrary("pcap")]
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
    .testTarget(name: "DataplaneTests", dependencies: ["Dataplane", "CPacket"]),
    .testTarget(name: "BenchTests", dependencies: ["Bench", "Dataplane"]),
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
