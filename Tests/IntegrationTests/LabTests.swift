import Foundation
import XCTest

/// The user's path, end to end: `vxswitch lab --check` builds sites in network
/// namespaces, starts real `vxswitch run` daemons on AF_PACKET rings and checks that
/// VMs ping each other, that a TCP transfer arrives intact, and that FDBs hold every VM
/// behind the right port or VTEP. With `--kernel-peer` one site is a Linux bridge + the
/// kernel's vxlan device, so vxswitch interoperates with it in both directions (and the
/// kernel's `bridge fdb show` lists vxswitch sites' VTEPs).
final class LabTests: XCTestCase {
  static var binary: URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
      "vxswitch")
  }

  override func setUpWithError() throws {
    guard getuid() == 0 else { throw XCTSkip("needs root: network namespaces and AF_PACKET") }
    guard
      FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
        || FileManager.default.isExecutableFile(atPath: "/sbin/ip")
    else { throw XCTSkip("iproute2 (ip) is not installed") }
    guard FileManager.default.isExecutableFile(atPath: Self.binary.path) else {
      throw XCTSkip("vxswitch binary not built next to the tests: \(Self.binary.path)")
    }
  }

  /// Runs `vxswitch lab --check --teardown` with a prefix unique to this test run.
  private func lab(
    _ arguments: [String], allowSkip: Bool = false, file: StaticString = #filePath, line: UInt = #line
  ) throws -> String {
    let prefix = "t\(getpid() % 10000)"
    let process = Process()
    process.executableURL = Self.binary
    process.arguments = ["lab", "--check", "--teardown", "--prefix", prefix] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    // Whatever happened, nothing of this lab stays behind.
    let down = Process()
    down.executableURL = Self.binary
    down.arguments = ["lab", "--down", "--prefix", prefix]
    down.standardOutput = FileHandle.nullDevice
    try down.run()
    down.waitUntilExit()
    if allowSkip && output.contains("this kernel has no 802.1Q VLAN devices") {
      throw XCTSkip(
        "this kernel has no 802.1Q VLAN devices (CONFIG_VLAN_8021Q), and the tc programs that stand in for"
          + " them could not be attached: no VM can send tagged frames")
    }
    XCTAssertEqual(
      process.terminationStatus, 0, "vxswitch lab \(arguments) failed:\n\(output)", file: file, line: line)
    XCTAssertFalse(output.contains("FAIL"), output, file: file, line: line)
    let namespaces = (try? String(contentsOfFile: "/proc/net/dev")) != nil ? Self.namespaces() : []
    XCTAssertFalse(
      namespaces.contains { $0.hasPrefix(prefix + "-") }, "namespaces left: \(namespaces)", file: file,
      line: line)
    // Nor its state directory: restart records left there would make the next lab's
    // daemons restore this lab's MACs as a graceful restart.
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: "/run/vxswitch-lab/\(prefix)"),
      "lab --down left /run/vxswitch-lab/\(prefix)", file: file, line: line)
    return output
  }

  static func namespaces() -> [String] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["ip", "netns", "list"]
    let pipe = Pipe()
    process.standardOutput = pipe
    try? process.run()
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return text.split(separator: "\n").map { String($0.split(separator: " ").first ?? "") }
  }

  /// The README's main command: site 1 extends its network through the API to site 2
  /// over the mutual-TLS site channel; the sites negotiate VNI and route target, bring up
  /// a BGP EVPN session with each other, and their VMs reach each other; site 3 is not a
  /// member: its VMs reach none of them and it holds nothing of the extension. Then site 3
  /// is added (its VMs reach the others), removed (cleaned up), and the extension deleted
  /// (every site back on its own VNI).
  private func skipUnlessGoBGPIsInstalled() throws {
    guard
      ["/usr/bin/gobgpd", "/usr/local/bin/gobgpd"].contains(where: {
        FileManager.default.isExecutableFile(atPath: $0)
      })
    else { throw XCTSkip("gobgpd not installed") }
  }

  func testExtendsANetworkToItsMembersOnly() throws {
    let output = try lab([])
    XCTAssertTrue(
      output.contains("12/12 VM pairs ping each other across 2 member sites of the extension"), output)
    XCTAssertTrue(output.contains("ok   extension of net1 from site 1: every member joined"), output)
    XCTAssertTrue(output.contains("ok   site 1 FDB has every member VM, remote ones from BGP EVPN"), output)
    XCTAssertTrue(output.contains("ok   site 2 FDB has every member VM, remote ones from BGP EVPN"), output)
    XCTAssertTrue(output.contains("ok   site 3 (not a member) reaches no VM of the extension"), output)
    XCTAssertTrue(output.contains("ok   site 3 holds nothing of the extension"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer"), output)
    XCTAssertTrue(
      output.contains("ok   site 3 added to the extension: joined, its VMs reach site 1's and site 2's"),
      output)
    XCTAssertTrue(output.contains("ok   site 3 removed again: its net1 is back on its own VNI"), output)
    XCTAssertTrue(output.contains("ok   extension deleted: every site cleaned up"), output)
  }

  /// The VMs keep their default offloads (TSO/GSO on), so the transfers are made of
  /// 64 KiB super-frames that vxswitch segments; 64 MiB each way, compared byte for byte.
  /// `vxswitch lab --partition`: site 2 is cut off the backbone; traffic inside site 2
  /// and inside site 1 goes on without loss, site 1 stops reaching site 2, site 2 still
  /// takes API changes; the cut outlasts the hold and graceful-restart times, so both
  /// sites keep the other's routes long-lived stale (RFC 9494) and site 1 still sends
  /// site 2's VMs their traffic, encapsulated toward site 2's VTEP; a VM of site 2 takes
  /// site 1's vm2 IPv4 and IPv6 addresses while cut; after the heal site 1 reaches site 2
  /// by itself, the routes are fresh again, and both sites report both conflicts with the
  /// same winner, answering for neither binding; the VM leaves and the conflicts clear at
  /// both sites with no command.
  func testPartitionHealsAndTheAddressConflictIsReportedAlikeAndClears() throws {
    let output = try lab(["--partition"])
    for line in [
      "ok   site 2 cut off the backbone: traffic inside site 2 and inside site 1 goes on",
      "ok   while cut: site 1 no longer reaches site 2",
      "ok   while cut: site 2 accepts local changes",
      "ok   site 2 holds site 1's IPv6 binding fd10::12 from its MAC/IP route",
      "ok   cut longer than the graceful-restart time: both sites keep the other's routes long-lived stale",
      "ok   show bgp and the metrics at site 1 mark site 2's routes long-lived stale",
      "ok   while long-lived stale: site 1 keeps site 2's VMs and sends their traffic to its VTEP",
      "ok   healed: site 1 reaches site 2 again by itself",
      "ok   healed: the routes are fresh again at both sites, none long-lived stale",
      "ok   address conflict on 192.168.100.12 reported at site 1 and site 2 with the same outcome",
      "ok   address conflict on fd10::12 reported at site 1 and site 2 with the same outcome",
      "ok   the VM left: both conflicts cleared at both sites with no command",
      "ok   site 3 holds nothing of the extension",
    ] {
      XCTAssertTrue(output.contains(line), "missing \"\(line)\":\n\(output)")
    }
  }

  func testThreeVXSwitchSitesFloodLearnAndForward() throws {
    let output = try lab(["--static", "--transfer-mib", "64"])
    XCTAssertTrue(output.contains("30/30 VM pairs ping each other across 3 sites"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s3-vm2, 64 MiB"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s3-vm2 -> s1-vm1, 64 MiB"), output)
    // Site 1 (vxswitch) sent UDP GSO frames that reached the backbone as datagrams.
    XCTAssertTrue(output.contains("ok   underlay UDP GSO"), output)
    XCTAssertTrue(output.contains("ok   site 3 FDB has every VM"), output)
  }

  func testInteroperatesWithTheKernelVXLANDevice() throws {
    let output = try lab(["--kernel-peer", "--transfer-mib", "64"])
    XCTAssertTrue(output.contains("30/30 VM pairs"), output)
    XCTAssertTrue(output.contains("ok   kernel site 3: `bridge fdb show` lists vxswitch VMs"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s3-vm2, 64 MiB"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s3-vm2 -> s1-vm1, 64 MiB"), output)
    // Site 1 (vxswitch) sent UDP GSO frames that reached the backbone as datagrams.
    XCTAssertTrue(output.contains("ok   underlay UDP GSO"), output)
  }

  func testInteroperatesWithTheKernelOverAnIPv6Underlay() throws {
    let output = try lab(["--kernel-peer", "--ipv6-underlay", "--transfer-mib", "64"])
    XCTAssertTrue(output.contains("30/30 VM pairs"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s3-vm2, 64 MiB"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s3-vm2 -> s1-vm1, 64 MiB"), output)
    // Site 1 (vxswitch) sent UDP GSO frames that reached the backbone as datagrams.
    XCTAssertTrue(output.contains("ok   underlay UDP GSO"), output)
  }

  func testTwoVXSwitchSitesOverAnIPv6UnderlayWithDefaultOffloads() throws {
    let output = try lab(["--static", "--sites", "2", "--ipv6-underlay", "--transfer-mib", "64"])
    XCTAssertTrue(output.contains("12/12 VM pairs"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s2-vm2, 64 MiB"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s2-vm2 -> s1-vm1, 64 MiB"), output)
    // Site 1 (vxswitch) sent UDP GSO frames that reached the backbone as datagrams.
    XCTAssertTrue(output.contains("ok   underlay UDP GSO"), output)
  }

  /// VMs at MTU 1500 over a 1500-byte underlay (usable 1450): their first full-size
  /// segments are answered with ICMP Fragmentation Needed, the VMs lower their path MTU
  /// and the transfers complete; the lab checks the counter and the VM's route cache.
  func testPathMTUDiscoveryThroughAnUnderlaySmallerThanTheVMsMTU() throws {
    let output = try lab(["--static", "--sites", "2", "--vm-mtu", "1500", "--transfer-mib", "16"])
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s2-vm2, 16 MiB"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s2-vm2 -> s1-vm1, 16 MiB"), output)
    XCTAssertTrue(output.contains("ok   path MTU discovery: VMs at MTU 1500 over a 1450-byte path"), output)
  }

  /// A VM behind a trunk member: its TSO super-frames carry a VLAN tag. Needs 802.1Q
  /// devices in the kernel (to make the VM's tagged interface).
  func testTaggedVMWithDefaultOffloads() throws {
    let output = try lab(
      ["--static", "--sites", "2", "--tagged-vm", "--transfer-mib", "64"], allowSkip: true)
    XCTAssertTrue(output.contains("12/12 VM pairs"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s2-vm2, 64 MiB"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s2-vm2 -> s1-vm1, 64 MiB"), output)
    // Site 1 (vxswitch) sent UDP GSO frames that reached the backbone as datagrams.
    XCTAssertTrue(output.contains("ok   underlay UDP GSO"), output)
    XCTAssertTrue(output.contains("ok   site 2 FDB has every VM"), output)
  }

  /// AF_XDP ports on every interface of the vxswitch site (the XDP program passes the
  /// host's own traffic to the kernel), against a kernel vxlan site: the kernel's frames
  /// arrive with unfinished checksums, which the port recognises and finishes. Two
  /// workers: each veth has one queue, so their sockets share its UMEM.
  func testAFXDPPortsInteroperateWithTheKernelVXLANDevice() throws {
    let output = try lab(
      ["--io", "af_xdp", "--workers", "2", "--kernel-peer", "--sites", "2", "--transfer-mib", "16"])
    XCTAssertTrue(output.contains("12/12 VM pairs"), output)
    XCTAssertTrue(output.contains("ok   site 1 ports are af_xdp (no fallback)"), output)
    XCTAssertFalse(output.contains("sends frames in place"), "workers sharing a queue copy: \(output)")
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s2-vm2, 16 MiB"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s2-vm2 -> s1-vm1, 16 MiB"), output)
    XCTAssertTrue(output.contains("ok   kernel site 2"), output)
  }

  /// An AF_XDP underlay (IPv6) under AF_PACKET VM ports: the VMs keep their offloads, so
  /// their TSO super-frames are cut into datagrams that leave one per AF_XDP descriptor.
  func testAnAFXDPUnderlayOverIPv6UnderAFPacketVMPortsWithAKernelPeer() throws {
    let output = try lab(
      ["--underlay-io", "af_xdp", "--kernel-peer", "--ipv6-underlay", "--sites", "2", "--transfer-mib", "16"])
    XCTAssertTrue(output.contains("12/12 VM pairs"), output)
    XCTAssertTrue(output.contains("ok   site 1 ports are af_packet, underlay af_xdp (no fallback)"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s2-vm2, 16 MiB"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s2-vm2 -> s1-vm1, 16 MiB"), output)
  }

  /// Two AF_XDP vxswitch sites whose remote state comes from BGP EVPN through gobgpd. One
  /// worker per site: its ports share a UMEM, and every port sends frames in place.
  func testAFXDPPortsOverAGoBGPRouteReflector() throws {
    try skipUnlessGoBGPIsInstalled()
    let output = try lab(["--io", "af_xdp", "--bgp", "--sites", "2", "--transfer-mib", "16"])
    XCTAssertTrue(output.contains("12/12 VM pairs ping each other across 2 sites"), output)
    XCTAssertTrue(output.contains("ok   site 1 ports are af_xdp (no fallback)"), output)
    XCTAssertTrue(output.contains("ok   site 2 ports are af_xdp (no fallback)"), output)
    XCTAssertTrue(output.contains("ok   site 1 sends frames in place"), output)
    XCTAssertTrue(output.contains("ok   site 2 sends frames in place"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer s1-vm1 -> s2-vm2, 16 MiB"), output)
    XCTAssertTrue(output.contains("ok   site 2 FDB has every VM"), output)
  }

  func testInteroperatesWithTheKernelOnUDPPort8472() throws {
    let output = try lab(["--kernel-peer", "--udp-port", "8472", "--sites", "2"])
    XCTAssertTrue(output.contains("12/12 VM pairs"), output)
    XCTAssertTrue(output.contains("ok   kernel site 2"), output)
  }

  /// Two vxswitch sites whose only source of remote forwarding state is BGP EVPN: each
  /// has an iBGP session to a gobgpd route reflector in the backbone, an empty static
  /// flood list and no data-plane learning. The lab checks that the sessions come up,
  /// that flood lists are built from type-3 routes, that VMs ping across sites and that
  /// every remote MAC is an FDB entry of origin control from the route reflector.
  func testTwoSitesOverAGoBGPRouteReflector() throws {
    try skipUnlessGoBGPIsInstalled()
    let output = try lab(["--bgp", "--sites", "2"])
    XCTAssertTrue(output.contains("12/12 VM pairs ping each other across 2 sites"), output)
    XCTAssertTrue(
      output.contains(
        "ok   site 1 BGP: session with the route reflector Established, flood list from type-3"), output)
    XCTAssertTrue(
      output.contains(
        "ok   site 2 BGP: session with the route reflector Established, flood list from type-3"), output)
    XCTAssertTrue(output.contains("ok   site 2 FDB has every VM"), output)
    XCTAssertTrue(output.contains("ok   tcp transfer"), output)
    XCTAssertTrue(
      output.contains("control (172.16.1.1 seq 0)"),
      "show fdb marks BGP entries with peer and sequence:\n\(output)")
  }
}
