import Foundation
import XCTest

@testable import Dataplane

final class ConfigTests: XCTestCase {
  // MARK: - Helpers

  /// A valid `[site]` on lines 1-4; text appended to it starts on line 5, still inside `[site]`.
  private let site = "[site]\nname = \"a\"\nvtep = \"10.0.0.1\"\nunderlay = \"eth1\"\n"

  /// The errors for `text` as "LINE: message", or [] when it decodes.
  private func errors(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
    do {
      _ = try SiteConfig.parse(text: text, file: "test.toml")
      return []
    } catch let errors as ConfigErrors {
      XCTAssertFalse(errors.errors.isEmpty, "ConfigErrors thrown without errors", file: file, line: line)
      XCTAssertTrue(errors.errors.allSatisfy { $0.file == "test.toml" }, file: file, line: line)
      return errors.errors.map { "\($0.line): \($0.message)" }
    } catch {
      XCTFail("unexpected error type: \(error)", file: file, line: line)
      return []
    }
  }

  private func decode(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> SiteConfig? {
    do {
      return try SiteConfig.parse(text: text, file: "test.toml")
    } catch {
      XCTFail("unexpected error:\n\(error)", file: file, line: line)
      return nil
    }
  }

  private func ip(_ text: String) -> IPAddress { IPAddress(text)! }
  private func mac(_ text: String) -> MACAddress { MACAddress(text)! }

  private var examplePath: String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("examples/site-a.toml").path
  }

  // MARK: - Valid files

  func testFullConfigurationDecodesToTheExpectedModel() throws {
    let config = try XCTUnwrap(
      decode(
        """
        # Every key, most of them away from their defaults.
        [site]
        name = "dc1.site-b_2"
        vtep = "2001:db8::1"
        underlay = "bond0"
        udp_port = 8472
        underlay_mac = "02:00:00:00:00:01"
        mtu = 9000
        udp_source_ports = [ 50000, 60000 ]
        udp_checksum_ipv4 = true
        ttl = 32
        dscp = "inherit"
        aging_time = 600
        learn_limit = 0x1_0000
        fdb_capacity = 2_097_152
        workers = 2
        cpus = [2, 3]
        control_socket = "/tmp/vx.sock"
        log_level = "debug"

        [api]
        listen = "[::1]:8443"
        token_file = "/etc/vxswitch/api.token"

        [[neighbor]]
        ip = "2001:db8::2"
        mac = "02:00:00:00:00:02"

        [[neighbor]]
        ip = "fe80::2"
        mac = "02-00-00-00-00-03"

        [[bridge_domain]]
        vni = 100
        name = "net1"
        ports = [
          "vm1",          # untagged
          "trunk0.10",
        ]
        flood = ["2001:db8::2", "2001:db8::3"]
        learning = false
        learn_limit = 1000
        arp_suppression = true
        rd = "192.0.2.1:100"
        import_rt = ["65000:100", "4200000000:7"]
        export_rt = ["65000:100"]

        [[bridge_domain]]
        vni = 16777215
        ports = ["trunk0.20", "eth0.abc"]

        [[static_mac]]
        vni = 100
        mac = "02:00:00:00:aa:01"
        remote = "2001:db8::2"

        [[static_mac]]
        vni = 100
        mac = "02:00:00:00:aa:02"
        port = "trunk0.10"

        [bgp]
        asn = 4200000000
        router_id = "192.0.2.1"
        listen_port = 0
        stale_time = 0

        [[bgp.peer]]
        address = "2001:db8::2"
        asn = 65001
        hold_time = 0
        password = 'se"cret'
        passive = true
        max_routes = 500

        [[bgp.peer]]
        address = "192.0.2.2"
        asn = 65002
        port = 1179
        """))

    var site = SiteConfig.Site(name: "dc1.site-b_2", vtep: ip("2001:db8::1"), underlay: "bond0")
    site.udpPort = 8472
    site.underlayMAC = mac("02:00:00:00:00:01")
    site.mtu = 9000
    site.udpSourcePorts = 50000...60000
    site.udpChecksumIPv4 = true
    site.ttl = 32
    site.dscp = .inherit
    site.agingTime = 600
    site.learnLimit = 65536
    site.fdbCapacity = 2_097_152
    site.workers = 2
    site.cpus = [2, 3]
    site.controlSocket = "/tmp/vx.sock"
    site.logLevel = .debug
    var expected = SiteConfig(site: site)
    expected.api = SiteConfig.API(
      listenHost: ip("::1"), listenPort: 8443, tokenFile: "/etc/vxswitch/api.token")
    expected.neighbors = [
      .init(ip: ip("2001:db8::2"), mac: mac("02:00:00:00:00:02")),
      .init(ip: ip("fe80::2"), mac: mac("02:00:00:00:00:03")),
    ]
    var first = SiteConfig.BridgeDomain(vni: 100)
    first.name = "net1"
    first.ports = [.init(interface: "vm1"), .init(interface: "trunk0", vlan: 10)]
    first.flood = [ip("2001:db8::2"), ip("2001:db8::3")]
    first.learning = false
    first.learnLimit = 1000
    first.arpSuppression = true
    first.rd = "192.0.2.1:100"
    first.importRTs = ["65000:100", "4200000000:7"]
    first.exportRTs = ["65000:100"]
    var second = SiteConfig.BridgeDomain(vni: 16_777_215)
    second.ports = [.init(interface: "trunk0", vlan: 20), .init(interface: "eth0.abc")]
    expected.bridgeDomains = [first, second]
    expected.staticMACs = [
      .init(vni: 100, mac: mac("02:00:00:00:aa:01"), target: .remote(ip("2001:db8::2"))),
      .init(vni: 100, mac: mac("02:00:00:00:aa:02"), target: .port(.init(interface: "trunk0", vlan: 10))),
    ]
    var bgp = SiteConfig.BGP(asn: 4_200_000_000, routerID: ip("192.0.2.1"))
    bgp.listenPort = 0
    bgp.staleTime = 0
    var passivePeer = SiteConfig.BGP.Peer(address: ip("2001:db8::2"), asn: 65001)
    passivePeer.holdTime = 0
    passivePeer.password = "se\"cret"
    passivePeer.passive = true
    passivePeer.maxRoutes = 500
    var activePeer = SiteConfig.BGP.Peer(address: ip("192.0.2.2"), asn: 65002)
    activePeer.port = 1179
    bgp.peers = [passivePeer, activePeer]
    expected.bgp = bgp

    XCTAssertEqual(config.site, expected.site)
    XCTAssertEqual(config.api, expected.api)
    XCTAssertEqual(config.neighbors, expected.neighbors)
    XCTAssertEqual(config.bridgeDomains, expected.bridgeDomains)
    XCTAssertEqual(config.staticMACs, expected.staticMACs)
    XCTAssertEqual(config.bgp, expected.bgp)
    XCTAssertEqual(config, expected)
  }

  func testMinimalSiteGetsTheDefaults() throws {
    let config = try XCTUnwrap(decode(site))
    let expected = SiteConfig(site: SiteConfig.Site(name: "a", vtep: ip("10.0.0.1"), underlay: "eth1"))
    XCTAssertEqual(config, expected)
    XCTAssertEqual(config.site.udpPort, 4789)
    XCTAssertEqual(config.site.controlSocket, "/run/vxswitch/a.sock")
    XCTAssertEqual(config.site.dscp, .fixed(0))
    XCTAssertEqual(config.site.logLevel, .info)
    XCTAssertNil(config.api)
    XCTAssertNil(config.bgp)
    XCTAssertTrue(config.bridgeDomains.isEmpty)
  }

  func testBGPDefaultsAndInlineTablesAreAccepted() throws {
    let config = try XCTUnwrap(
      decode(
        site
          + "dscp = 46\n[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\npeer = [{ address = \"10.0.0.9\", asn = 1 }]\n"
      ))
    XCTAssertEqual(config.site.dscp, .fixed(46))
    let bgp = try XCTUnwrap(config.bgp)
    XCTAssertEqual(bgp.listenPort, 179)
    XCTAssertEqual(bgp.staleTime, 300)
    XCTAssertEqual(bgp.longLivedStaleTime, 86400, "long-lived graceful restart on, for a day")
    XCTAssertEqual(bgp.peers, [SiteConfig.BGP.Peer(address: ip("10.0.0.9"), asn: 1)])
    XCTAssertEqual(bgp.peers.first?.holdTime, 90)
    // Duplicate-MAC detection: FRR's 5 moves in 180 s, frozen until cleared.
    XCTAssertEqual([bgp.dupMACMaxMoves, bgp.dupMACTime, bgp.dupMACFreeze], [5, 180, 0])
  }

  func testDuplicateMACDetectionSettings() throws {
    let config = try XCTUnwrap(
      decode(
        site + "[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n"
          + "dup_mac_max_moves = 3\ndup_mac_time = 60\ndup_mac_freeze = 600\n"))
    let bgp = try XCTUnwrap(config.bgp)
    XCTAssertEqual([bgp.dupMACMaxMoves, bgp.dupMACTime, bgp.dupMACFreeze], [3, 60, 600])
  }

  func testExampleFileDecodes() throws {
    let config = try SiteConfig.load(path: examplePath)
    XCTAssertEqual(config.site.name, "site-a")
    XCTAssertEqual(config.site.vtep, ip("10.0.0.1"))
    XCTAssertEqual(config.site.underlay, "eth1")
    XCTAssertEqual(config.site.udpPort, 4789)
    XCTAssertEqual(config.site.underlayMAC, mac("02:00:00:00:00:01"))
    XCTAssertEqual(config.neighbors, [.init(ip: ip("10.0.0.2"), mac: mac("02:00:00:00:00:02"))])
    var domain = SiteConfig.BridgeDomain(vni: 100)
    domain.ports = [.init(interface: "vm1"), .init(interface: "vm2")]
    domain.flood = [ip("10.0.0.2")]
    domain.learning = true
    XCTAssertEqual(config.bridgeDomains, [domain])
    XCTAssertEqual(
      config.staticMACs, [.init(vni: 100, mac: mac("02:00:00:00:aa:01"), target: .remote(ip("10.0.0.2")))])
    XCTAssertNil(config.bgp)
  }

  // MARK: - Errors, one kind at a time

  func testSiteErrors() {
    let cases: [(text: String, errors: [String])] = [
      (site + "udpport = 1\n", ["5: unknown key 'udpport' in [site]"]),
      (site + "udp_port = \"4789\"\n", ["5: udp_port must be an integer"]),
      (site + "udp_port = 0\n", ["5: udp_port must be between 1 and 65535 (got 0)"]),
      (site + "udp_port = 65536\n", ["5: udp_port must be between 1 and 65535 (got 65536)"]),
      ("\n[site]\nname = \"a\"\nunderlay = \"eth1\"\n", ["2: missing required key 'vtep' in [site]"]),
      (
        "[site]\n",
        [
          "1: missing required key 'name' in [site]", "1: missing required key 'vtep' in [site]",
          "1: missing required key 'underlay' in [site]",
        ]
      ),
      ("# nothing\n", ["0: missing [site] table"]),
      ("site = 1\n", ["1: site must be a table, written [site]"]),
      (
        "[site]\nname = \"has space\"\nvtep = \"10.0.0.1\"\nunderlay = \"eth1\"\n",
        ["2: name must be 1 to 32 characters from A-Z a-z 0-9 _ . - (got 'has space')"]
      ),
      (
        "[site]\nname = \"\(String(repeating: "x", count: 33))\"\nvtep = \"10.0.0.1\"\nunderlay = \"eth1\"\n",
        [
          "2: name must be 1 to 32 characters from A-Z a-z 0-9 _ . - (got '\(String(repeating: "x", count: 33))')"
        ]
      ),
      (
        "[site]\nname = \"a\"\nvtep = \"10.0.0.256\"\nunderlay = \"eth1\"\n",
        ["3: vtep must be an IPv4 or IPv6 address (got '10.0.0.256')"]
      ),
      (
        "[site]\nname = \"a\"\nvtep = \"10.0.0.1\\u0000\"\nunderlay = \"eth1\"\n",
        ["3: vtep must be an IPv4 or IPv6 address (got '10.0.0.1\\u{0}')"]
      ),
      (
        "[site]\nname = \"a\"\nvtep = \"10.0.0.1\"\nunderlay = \"a-very-long-name\"\n",
        [
          "4: underlay must be a Linux interface name, 1 to 15 bytes, without '/', ':', whitespace or "
            + "control characters (got 'a-very-long-name')"
        ]
      ),
      (
        site + "underlay_mac = \"01:00:5e:00:00:01\"\n",
        ["5: underlay_mac must be a unicast address (got 01:00:5e:00:00:01)"]
      ),
      (
        site + "underlay_mac = \"02:00:00:00:00\"\n",
        ["5: underlay_mac must be a MAC address like 02:00:00:00:00:01 (got '02:00:00:00:00')"]
      ),
      (site + "mtu = 575\n", ["5: mtu must be between 576 and 9216 (got 575)"]),
      (site + "mtu = 9217\n", ["5: mtu must be between 576 and 9216 (got 9217)"]),
      (
        "[site]\nname = \"a\"\nvtep = \"2001:db8::1\"\nunderlay = \"eth1\"\nmtu = 1279\n",
        ["5: mtu must be between 1280 and 9216 with an IPv6 vtep (got 1279)"]
      ),
      (
        site + "udp_source_ports = [60000, 50000]\n",
        ["5: udp_source_ports low end 60000 is above the high end 50000"]
      ),
      (site + "udp_source_ports = [1]\n", ["5: udp_source_ports must be [low, high], two integers"]),
      (
        site + "udp_source_ports = [0, 10]\n", ["5: udp_source_ports must be between 1 and 65535 (got 0, 10)"]
      ),
      (site + "udp_source_ports = 5\n", ["5: udp_source_ports must be an array"]),
      (site + "udp_checksum_ipv4 = 1\n", ["5: udp_checksum_ipv4 must be true or false"]),
      (site + "ttl = 0\n", ["5: ttl must be between 1 and 255 (got 0)"]),
      (site + "dscp = 64\n", ["5: dscp must be between 0 and 63 (got 64)"]),
      (site + "dscp = \"copy\"\n", ["5: dscp must be an integer from 0 to 63 or \"inherit\""]),
      (site + "aging_time = 0\n", ["5: aging_time must be at least 1 (got 0)"]),
      (site + "learn_limit = -1\n", ["5: learn_limit must be at least 0 (got -1)"]),
      (site + "fdb_capacity = 1023\n", ["5: fdb_capacity must be between 1024 and 16777216 (got 1023)"]),
      (
        site + "fdb_capacity = 16777217\n",
        ["5: fdb_capacity must be between 1024 and 16777216 (got 16777217)"]
      ),
      (site + "workers = 0\n", ["5: workers must be between 1 and 64 (got 0)"]),
      (site + "workers = 65\n", ["5: workers must be between 1 and 64 (got 65)"]),
      (
        site + "cpus = [0,\n  -1,\n  \"2\"]\n",
        [
          "6: cpus entries must be integers of at least 0", "7: cpus entries must be integers of at least 0",
        ]
      ),
      (site + "cpus = [1, 1]\n", ["5: cpu 1 is listed twice in cpus"]),
      (site + "control_socket = \"\"\n", ["5: control_socket must be a non-empty path"]),
      (
        site + "control_socket = \"/\(String(repeating: "s", count: 107))\"\n",
        ["5: control_socket is 108 bytes long; a Unix socket path is at most 107"]
      ),
      (site + "[site.extra]\n", ["5: unknown key 'extra' in [site]"]),
      (site + "[other]\nx = 1\n", ["5: unknown table [other]"]),
      ("stray = 1\n" + site, ["1: unknown key 'stray'"]),
      ("stray = []\n" + site, ["1: unknown key 'stray'"]),
      ("[[stray]]\n" + site, ["1: unknown table [stray]"]),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testInterfaceSettings() throws {
    let text =
      site
      + "[[interface]]\nname = \"eth1\"\nio = \"af_xdp\"\n[[interface]]\nname = \"vm1\"\nio = \"af_packet\"\n"
    let config = try XCTUnwrap(decode(text))
    XCTAssertEqual(config.io(of: "eth1"), .afXDP)
    XCTAssertEqual(config.io(of: "vm1"), .afPacket)
    XCTAssertEqual(config.io(of: "vm2"), .afPacket, "an interface without a table keeps the default")
    XCTAssertTrue(config.offloadTap(of: "eth1"), "offload taps are on unless a table turns them off")
    XCTAssertTrue(config.offloadTap(of: "vm2"))
    let off = try XCTUnwrap(decode(site + "[[interface]]\nname = \"vm1\"\noffload_tap = false\n"))
    XCTAssertFalse(off.offloadTap(of: "vm1"))
    XCTAssertEqual(off.io(of: "vm1"), .afPacket)
  }

  func testInterfaceErrors() {
    let cases: [(text: String, errors: [String])] = [
      (site + "[[interface]]\nio = \"af_xdp\"\n", ["5: missing required key 'name' in [[interface]]"]),
      (
        site + "[[interface]]\nname = \"eth1\"\nio = \"dpdk\"\n",
        ["7: io must be af_packet or af_xdp (got 'dpdk')"]
      ),
      (site + "[[interface]]\nname = \"eth1\"\nio = 1\n", ["7: io must be af_packet or af_xdp"]),
      (
        site + "[[interface]]\nname = \"eth1\"\n[[interface]]\nname = \"eth1\"\n",
        ["8: interface eth1 is already configured on line 6"]
      ),
      (
        site + "[[interface]]\nname = \"a/b\"\n",
        ["6: interface name must be a Linux interface name, \(ConfigSyntax.interfaceNameRule) (got 'a/b')"]
      ),
      (site + "[[interface]]\nname = \"eth1\"\nmode = \"x\"\n", ["7: unknown key 'mode' in [[interface]]"]),
      (
        site + "[[interface]]\nname = \"eth1\"\noffload_tap = \"no\"\n",
        ["7: offload_tap must be true or false"]
      ),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testNeighborErrors() {
    let cases: [(text: String, errors: [String])] = [
      (site + "[[neighbor]]\nip = \"10.0.0.2\"\n", ["5: missing required key 'mac' in [[neighbor]]"]),
      (
        site + "[[neighbor]]\nip = \"10.0.0.2\"\nmac = \"ff:ff:ff:ff:ff:ff\"\n",
        [
          "7: mac must be a unicast address (got ff:ff:ff:ff:ff:ff)"
        ]
      ),
      (
        site + "[[neighbor]]\nip = \"10.0.0.2\"\nmac = \"02:00:00:00:00:02\"\n"
          + "[[neighbor]]\nip = \"10.0.0.2\"\nmac = \"02:00:00:00:00:03\"\n",
        ["9: neighbor 10.0.0.2 is already defined on line 6"]
      ),
      (
        site + "[[neighbor]]\nip = \"10.0.0.2\"\nmac = \"02:00:00:00:00:02\"\nvia = 1\n",
        [
          "8: unknown key 'via' in [[neighbor]]"
        ]
      ),
      (
        site + "[[neighbor]]\nip = \"10.0.0.1\"\nmac = \"02:00:00:00:00:02\"\n",
        [
          "6: neighbor 10.0.0.1 is the local vtep"
        ]
      ),
      (
        site + "[neighbor]\nip = \"10.0.0.2\"\n",
        ["5: neighbor must be an array of tables, written [[neighbor]]"]
      ),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testBridgeDomainErrors() {
    let domain = site + "[[bridge_domain]]\n"  // header on line 5, keys from line 6
    let cases: [(text: String, errors: [String])] = [
      (domain + "ports = []\n", ["5: missing required key 'vni' in [[bridge_domain]]"]),
      (domain + "vni = 0\n", ["6: vni must be between 1 and 16777215 (got 0)"]),
      (domain + "vni = 16777216\n", ["6: vni must be between 1 and 16777215 (got 16777216)"]),
      (
        domain + "vni = 1\n[[bridge_domain]]\nvni = 1\n",
        ["8: vni 1 is already used by the bridge domain on line 6"]
      ),
      (domain + "vni = 1\nports = \"vm1\"\n", ["7: ports must be an array"]),
      (domain + "vni = 1\nports = [1]\n", ["7: ports entries must be strings"]),
      (
        domain + "vni = 1\nports = [\"trunk0.4095\"]\n",
        ["7: VLAN 4095 in port 'trunk0.4095' is not between 1 and 4094"]
      ),
      (
        domain + "vni = 1\nports = [\"trunk0.0\"]\n",
        ["7: VLAN 0 in port 'trunk0.0' is not between 1 and 4094"]
      ),
      (
        domain + "vni = 1\nports = [\"bad/name\"]\n",
        [
          "7: port 'bad/name' is not \"ifname\" or \"ifname.VLAN\" (1 to 15 bytes, without '/', ':', "
            + "whitespace or control characters)"
        ]
      ),
      (
        domain + "vni = 1\nports = [\"vm1\"]\n[[bridge_domain]]\nvni = 2\nports = [\"vm1\"]\n",
        ["10: port vm1 is already a member of the bridge domain with vni 1 (line 7)"]
      ),
      (
        domain + "vni = 1\nports = [\"vm1\", \"vm1\"]\n",
        ["7: port vm1 is already a member of the bridge domain with vni 1 (line 7)"]
      ),
      (
        domain + "vni = 1\nports = [\"trunk0\"]\n[[bridge_domain]]\nvni = 2\nports = [\"trunk0.10\"]\n",
        ["10: interface trunk0 is used tagged here but untagged in the bridge domain with vni 1 (line 7)"]
      ),
      (
        domain + "vni = 1\nports = [\n  \"trunk0.10\",\n  \"trunk0\",\n]\n",
        ["9: interface trunk0 is used untagged here but tagged in the bridge domain with vni 1 (line 8)"]
      ),
      (
        domain + "vni = 1\nports = [\"eth1\"]\n",
        ["7: port eth1 is on the underlay interface, which cannot be an access port"]
      ),
      (
        domain + "vni = 1\nports = [\"eth1.10\"]\n",
        ["7: port eth1.10 is on the underlay interface, which cannot be an access port"]
      ),
      (
        domain + "vni = 1\nflood = [\"2001:db8::2\"]\n",
        ["7: flood entry 2001:db8::2 is IPv6 but the vtep 10.0.0.1 is IPv4"]
      ),
      (domain + "vni = 1\nflood = [\"10.0.0.1\"]\n", ["7: flood entry 10.0.0.1 is the local vtep"]),
      (domain + "vni = 1\nflood = [\"10.0.0.x\"]\n", ["7: flood entry '10.0.0.x' is not an IP address"]),
      (
        domain + "vni = 1\nflood = [\"10.0.0.2\",\n\"10.0.0.2\"]\n",
        ["8: flood entry 10.0.0.2 is already listed on line 7"]
      ),
      (domain + "vni = 1\nlearning = \"yes\"\n", ["7: learning must be true or false"]),
      (domain + "vni = 1\nlearn_limit = -5\n", ["7: learn_limit must be at least 0 (got -5)"]),
      (domain + "vni = 1\narp_suppression = 0\n", ["7: arp_suppression must be true or false"]),
      (domain + "vni = 1\nrd = \"65000\"\n", ["7: rd must be \"ASN:N\" or \"A.B.C.D:N\" (got '65000')"]),
      (
        domain + "vni = 1\nrd = \"1.2.3.4:65536\"\n",
        ["7: rd must be \"ASN:N\" or \"A.B.C.D:N\" (got '1.2.3.4:65536')"]
      ),
      (
        domain + "vni = 1\nrd = \"4200000000:65536\"\n",
        [
          "7: rd must be \"ASN:N\" or \"A.B.C.D:N\" (got '4200000000:65536')"
        ]
      ),
      (
        domain + "vni = 1\nrd = \"4294967296:1\"\n",
        ["7: rd must be \"ASN:N\" or \"A.B.C.D:N\" (got '4294967296:1')"]
      ),
      (
        domain + "vni = 1\nimport_rt = [\"65000:1\", \"x:1\"]\n",
        [
          "7: import_rt entry 'x:1' must be \"ASN:N\" or \"A.B.C.D:N\""
        ]
      ),
      (
        domain + "vni = 1\nexport_rt = [\"1.2.3:1\"]\n",
        ["7: export_rt entry '1.2.3:1' must be \"ASN:N\" or \"A.B.C.D:N\""]
      ),
      (domain + "vni = 1\nflooding = true\n", ["7: unknown key 'flooding' in [[bridge_domain]]"]),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testStaticMACErrors() {
    // Lines 5-7: a bridge domain with vni 100 and port vm1; the [[static_mac]] header is on line 8.
    let base = site + "[[bridge_domain]]\nvni = 100\nports = [\"vm1\"]\n[[static_mac]]\n"
    let cases: [(text: String, errors: [String])] = [
      (
        base + "vni = 200\nmac = \"02:00:00:00:aa:01\"\nport = \"vm1\"\n",
        ["9: vni 200 has no [[bridge_domain]]"]
      ),
      (
        base + "vni = 100\nmac = \"03:00:00:00:aa:01\"\nport = \"vm1\"\n",
        [
          "10: mac must be a unicast address (got 03:00:00:00:aa:01)"
        ]
      ),
      (
        base + "vni = 100\nmac = \"00:00:00:00:00:00\"\nport = \"vm1\"\n",
        [
          "10: mac must be a unicast address (got 00:00:00:00:00:00)"
        ]
      ),
      (
        base + "vni = 100\nmac = \"02:00:00:00:aa:01\"\n",
        ["8: [[static_mac]] needs exactly one of 'remote' or 'port'"]
      ),
      (
        base + "vni = 100\nmac = \"02:00:00:00:aa:01\"\nport = \"vm1\"\nremote = \"10.0.0.2\"\n",
        ["8: [[static_mac]] needs exactly one of 'remote' or 'port'"]
      ),
      (
        base + "vni = 100\nmac = \"02:00:00:00:aa:01\"\nport = \"vm2\"\n",
        [
          "11: port vm2 is not a member of the bridge domain with vni 100"
        ]
      ),
      (
        base + "vni = 100\nmac = \"02:00:00:00:aa:01\"\nremote = \"10.0.0.1\"\n",
        ["11: remote 10.0.0.1 is the local vtep"]
      ),
      (
        base + "vni = 100\nmac = \"02:00:00:00:aa:01\"\nremote = \"::2\"\n",
        [
          "11: remote ::2 is IPv6 but the vtep 10.0.0.1 is IPv4"
        ]
      ),
      (
        base + "vni = 100\nmac = \"02:00:00:00:aa:01\"\nport = \"vm1\"\n"
          + "[[static_mac]]\nvni = 100\nmac = \"02:00:00:00:AA:01\"\nremote = \"10.0.0.2\"\n",
        ["14: static mac 02:00:00:00:aa:01 in vni 100 is already defined on line 10"]
      ),
      (
        base + "mac = \"02:00:00:00:aa:01\"\nport = \"vm1\"\n",
        ["8: missing required key 'vni' in [[static_mac]]"]
      ),
      (
        base + "vni = 100\nmac = \"02:00:00:00:aa:01\"\nport = \"vm1\"\nage = 1\n",
        [
          "12: unknown key 'age' in [[static_mac]]"
        ]
      ),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testBGPErrors() {
    let bgp = site + "[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n"  // [bgp] on line 5
    let peer = bgp + "[[bgp.peer]]\naddress = \"10.0.0.2\"\nasn = 65001\n"  // [[bgp.peer]] on line 8
    let cases: [(text: String, errors: [String])] = [
      (site + "[bgp]\nrouter_id = \"10.0.0.1\"\n", ["5: missing required key 'asn' in [bgp]"]),
      (
        site + "[bgp]\nasn = 0\nrouter_id = \"10.0.0.1\"\n",
        ["6: asn must be between 1 and 4294967295 (got 0)"]
      ),
      (
        site + "[bgp]\nasn = 4294967296\nrouter_id = \"10.0.0.1\"\n",
        [
          "6: asn must be between 1 and 4294967295 (got 4294967296)"
        ]
      ),
      (site + "[bgp]\nasn = 1\nrouter_id = \"::1\"\n", ["7: router_id must be an IPv4 address (got ::1)"]),
      (bgp + "listen_port = 65536\n", ["8: listen_port must be between 0 and 65535 (got 65536)"]),
      (bgp + "stale_time = -1\n", ["8: stale_time must be at least 0 (got -1)"]),
      (
        bgp + "long_lived_stale_time = 16777216\n",
        ["8: long_lived_stale_time must be between 0 and 16777215 (got 16777216)"]
      ),
      (
        bgp + "long_lived_stale_time = -1\n",
        ["8: long_lived_stale_time must be between 0 and 16777215 (got -1)"]
      ),
      (bgp + "graceful = true\n", ["8: unknown key 'graceful' in [bgp]"]),
      (bgp + "restart_time = 4096\n", ["8: restart_time must be between 1 and 4095 (got 4096)"]),
      (bgp + "restart_time = 0\n", ["8: restart_time must be between 1 and 4095 (got 0)"]),
      (
        bgp + "selection_deferral_time = 0\n",
        ["8: selection_deferral_time must be between 1 and 3600 (got 0)"]
      ),
      (bgp + "dup_mac_max_moves = 1\n", ["8: dup_mac_max_moves must be between 2 and 1000 (got 1)"]),
      (bgp + "dup_mac_time = 1801\n", ["8: dup_mac_time must be between 2 and 1800 (got 1801)"]),
      (
        bgp + "dup_mac_freeze = 10\n",
        ["8: dup_mac_freeze must be 0 (until cleared) or between 30 and 3600 (got 10)"]
      ),
      (
        site + "[[bgp.peer]]\naddress = \"10.0.0.2\"\nasn = 1\n",
        [
          "5: missing required key 'asn' in [bgp]", "5: missing required key 'router_id' in [bgp]",
        ]
      ),
      (peer + "hold_time = 2\n", ["11: hold_time must be 0 or between 3 and 65535 (got 2)"]),
      (peer + "hold_time = 65536\n", ["11: hold_time must be 0 or between 3 and 65535 (got 65536)"]),
      (
        peer + "password = \"\(String(repeating: "p", count: 81))\"\n",
        ["11: password must be at most 80 bytes"]
      ),
      (peer + "passive = \"no\"\n", ["11: passive must be true or false"]),
      (peer + "max_routes = 0\n", ["11: max_routes must be at least 1 (got 0)"]),
      (peer + "port = 0\n", ["11: port must be between 1 and 65535 (got 0)"]),
      (peer + "md5 = \"x\"\n", ["11: unknown key 'md5' in [[bgp.peer]]"]),
      (bgp + "[[bgp.peer]]\naddress = \"10.0.0.2\"\n", ["8: missing required key 'asn' in [[bgp.peer]]"]),
      (
        peer + "[[bgp.peer]]\naddress = \"10.0.0.2\"\nasn = 65002\n",
        ["12: peer 10.0.0.2 is already defined on line 9"]
      ),
      (
        bgp + "[bgp.peer]\naddress = \"10.0.0.2\"\n",
        ["8: peer must be an array of tables, written [[bgp.peer]]"]
      ),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testSyntaxErrorIsReportedAlone() {
    XCTAssertEqual(
      errors(site + "udp_port = 4789 x\nttl = 0\n"),
      ["5: unexpected 'x' after the value; expected end of line"])
    XCTAssertEqual(errors(site + "[site]\n"), ["5: table [site] is already defined on line 1"])
  }

  // MARK: - Several errors at once

  func testAllErrorsAreReportedInLineOrder() throws {
    let text = """
      [site]
      name = "a"
      underlay = "eth1"
      ttl = 0

      [[bridge_domain]]
      vni = 100
      ports = ["vm1"]

      [[static_mac]]
      vni = 300
      mac = "02:00:00:00:00:01"
      remote = "10.0.0.2"

      [[bridge_domain]]
      vni = 100
      learning = "yes"
      colour = "blue"
      """
    let expected = [
      "1: missing required key 'vtep' in [site]",
      "4: ttl must be between 1 and 255 (got 0)",
      "11: vni 300 has no [[bridge_domain]]",
      "16: vni 100 is already used by the bridge domain on line 7",
      "17: learning must be true or false",
      "18: unknown key 'colour' in [[bridge_domain]]",
    ]
    XCTAssertEqual(errors(text), expected)

    do {
      _ = try SiteConfig.parse(text: text, file: "conf/site.toml")
      XCTFail("expected ConfigErrors")
    } catch let thrown as ConfigErrors {
      XCTAssertEqual(
        thrown.description,
        expected.map { "conf/site.toml:" + $0 }.joined(separator: "\n"))
      XCTAssertEqual(
        thrown.errors.first?.description, "conf/site.toml:1: missing required key 'vtep' in [site]")
    }
  }

  // MARK: - log_level, [api], bridge domain names

  func testLogLevels() throws {
    XCTAssertEqual(
      SiteConfig.LogLevel.allCases.map(\.rawValue),
      ["trace", "debug", "info", "notice", "warning", "error", "critical"])
    for level in SiteConfig.LogLevel.allCases {
      let config = try XCTUnwrap(decode(site + "log_level = \"\(level.rawValue)\"\n"))
      XCTAssertEqual(config.site.logLevel, level)
    }
    let encoded = try JSONEncoder().encode([SiteConfig.LogLevel.warning])
    XCTAssertEqual(String(decoding: encoded, as: UTF8.self), "[\"warning\"]")
    XCTAssertEqual(try JSONDecoder().decode([SiteConfig.LogLevel].self, from: encoded), [.warning])
  }

  func testLogLevelErrors() {
    let rule = "log_level must be one of trace, debug, info, notice, warning, error, critical"
    let cases: [(text: String, errors: [String])] = [
      (site + "log_level = \"verbose\"\n", ["5: \(rule) (got 'verbose')"]),
      (site + "log_level = \"INFO\"\n", ["5: \(rule) (got 'INFO')"]),
      (site + "log_level = \"\"\n", ["5: \(rule) (got '')"]),
      (site + "\nlog_level = 3\n", ["6: \(rule)"]),
      (site + "log_level = [\"info\"]\n", ["5: \(rule)"]),
      (site + "loglevel = \"info\"\n", ["5: unknown key 'loglevel' in [site]"]),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testAcceptedVTEPs() throws {
    XCTAssertEqual(try XCTUnwrap(decode(site)).site.acceptedVTEPs, .any)
    XCTAssertEqual(try XCTUnwrap(decode(site + "accept_vteps = \"known\"\n")).site.acceptedVTEPs, .known)
    XCTAssertEqual(
      errors(site + "accept_vteps = \"some\"\n"),
      ["5: accept_vteps must be \"any\" or \"known\" (got 'some')"])
    XCTAssertEqual(errors(site + "accept_vteps = true\n"), ["5: accept_vteps must be \"any\" or \"known\""])
  }

  func testAPIListenAddresses() throws {
    let cases: [(listen: String, host: String, port: UInt16)] = [
      ("127.0.0.1:8080", "127.0.0.1", 8080),
      ("0.0.0.0:1", "0.0.0.0", 1),
      ("[::1]:8080", "::1", 8080),
      ("[::]:65535", "::", 65535),
      ("[2001:db8::7]:443", "2001:db8::7", 443),
      ("[::ffff:192.0.2.1]:80", "::ffff:192.0.2.1", 80),
    ]
    for (listen, host, port) in cases {
      let config = try XCTUnwrap(
        decode(site + "[api]\nlisten = \"\(listen)\"\ntoken_file = \"/etc/vxswitch/api.token\"\n"))
      XCTAssertEqual(
        config.api,
        SiteConfig.API(listenHost: ip(host), listenPort: port, tokenFile: "/etc/vxswitch/api.token"),
        listen)
    }
    let inline = try XCTUnwrap(
      decode("api = { listen = \"10.0.0.1:9000\", token_file = \"t\" }\n" + site))
    XCTAssertEqual(inline.api, SiteConfig.API(listenHost: ip("10.0.0.1"), listenPort: 9000, tokenFile: "t"))
  }

  func testAPIRateLimit() throws {
    let api = site + "[api]\nlisten = \"127.0.0.1:8080\"\ntoken_file = \"t\"\n"  // keys from line 6
    XCTAssertEqual(try XCTUnwrap(decode(api)).api?.rateLimit, 50, "the default")
    XCTAssertEqual(try XCTUnwrap(decode(api + "rate_limit = 5\n")).api?.rateLimit, 5)
    XCTAssertEqual(try XCTUnwrap(decode(api + "rate_limit = 0\n")).api?.rateLimit, 0, "0: no limit")
    let errors = self.errors(api + "rate_limit = -1\n")
    XCTAssertEqual(errors.count, 1)
    XCTAssertTrue(errors.first?.hasPrefix("8: rate_limit must be") == true, "\(errors)")
    XCTAssertEqual(self.errors(api + "rate_limit = \"fast\"\n").first?.hasPrefix("8: rate_limit"), true)
  }

  func testAPIErrors() {
    let api = site + "[api]\n"  // header on line 5, keys from line 6
    let token = "token_file = \"/etc/vxswitch/api.token\"\n"
    let form = "listen must be \"ADDRESS:PORT\", like \"127.0.0.1:8080\" or \"[::1]:8080\""
    let cases: [(text: String, errors: [String])] = [
      (api + token, ["5: missing required key 'listen' in [api]"]),
      (api + "listen = \"127.0.0.1:8080\"\n", ["5: missing required key 'token_file' in [api]"]),
      (
        api,
        ["5: missing required key 'listen' in [api]", "5: missing required key 'token_file' in [api]"]
      ),
      (
        "api = {}\n" + site,
        ["1: missing required key 'listen' in [api]", "1: missing required key 'token_file' in [api]"]
      ),
      (api + token + "listen = \"127.0.0.1\"\n", ["7: \(form) (got '127.0.0.1')"]),
      (api + token + "listen = \"127.0.0.1:\"\n", ["7: \(form) (got '127.0.0.1:')"]),
      (api + token + "listen = \"127.0.0.1:http\"\n", ["7: \(form) (got '127.0.0.1:http')"]),
      (api + token + "listen = \"127.0.0.1:-1\"\n", ["7: \(form) (got '127.0.0.1:-1')"]),
      (api + token + "listen = \"localhost:8080\"\n", ["7: \(form) (got 'localhost:8080')"]),
      (api + token + "listen = \"10.0.0.256:80\"\n", ["7: \(form) (got '10.0.0.256:80')"]),
      (api + token + "listen = \"[::1]\"\n", ["7: \(form) (got '[::1]')"]),
      (api + token + "listen = \"[::1:80\"\n", ["7: \(form) (got '[::1:80')"]),
      (api + token + "listen = \"\"\n", ["7: \(form) (got '')"]),
      (api + token + "listen = \"127.0.0.1:0\"\n", ["7: listen port must be between 1 and 65535 (got 0)"]),
      (
        api + token + "listen = \"[::1]:65536\"\n", ["7: listen port must be between 1 and 65535 (got 65536)"]
      ),
      (
        api + token + "listen = \"::1:8080\"\n",
        ["7: listen address ::1 must be in brackets, like \"[::1]:8080\" (got '::1:8080')"]
      ),
      (
        api + token + "listen = \"[127.0.0.1]:8080\"\n",
        ["7: listen address '127.0.0.1' in brackets must be an IPv6 address"]
      ),
      (api + token + "listen = 8080\n", ["7: listen must be a string"]),
      (api + "listen = \"127.0.0.1:8080\"\ntoken_file = \"\"\n", ["7: token_file must be a non-empty path"]),
      (
        api + "listen = \"127.0.0.1:8080\"\ntoken_file = \"a\\u0000b\"\n",
        ["7: token_file must be a non-empty path"]
      ),
      (api + "listen = \"127.0.0.1:8080\"\ntoken_file = 1\n", ["7: token_file must be a string"]),
      (
        api + "listen = \"127.0.0.1:0\"\ntoken_file = \"\"\n",
        ["6: listen port must be between 1 and 65535 (got 0)", "7: token_file must be a non-empty path"]
      ),
      (api + token + "listen = \"127.0.0.1:8080\"\nport = 1\n", ["8: unknown key 'port' in [api]"]),
      ("api = 1\n" + site, ["1: api must be a table, written [api]"]),
      (site + "[[api]]\n" + token, ["5: api must be a table, written [api]"]),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testBridgeDomainNames() throws {
    let longest = String(repeating: "n", count: 64)
    let config = try XCTUnwrap(
      decode(
        site + "[[bridge_domain]]\nvni = 1\nname = \"net1\"\n[[bridge_domain]]\nvni = 2\n"
          + "[[bridge_domain]]\nvni = 3\nname = \"A.b-C_9\"\n[[bridge_domain]]\nvni = 4\nname = \"\(longest)\"\n"
          + "[[bridge_domain]]\nvni = 5\nname = \"Net1\"\n"))
    XCTAssertEqual(config.bridgeDomains.map(\.name), ["net1", nil, "A.b-C_9", longest, "Net1"])
  }

  func testBridgeDomainNameErrors() {
    let domain = site + "[[bridge_domain]]\nvni = 1\n"  // header on line 5, vni on 6, name on 7
    let rule = "name must be 1 to 64 characters from A-Z a-z 0-9 _ . -"
    let tooLong = String(repeating: "n", count: 65)
    let cases: [(text: String, errors: [String])] = [
      (domain + "name = \"\"\n", ["7: \(rule) (got '')"]),
      (domain + "name = \"net 1\"\n", ["7: \(rule) (got 'net 1')"]),
      (domain + "name = \"net/1\"\n", ["7: \(rule) (got 'net/1')"]),
      (domain + "name = \"net:1\"\n", ["7: \(rule) (got 'net:1')"]),
      (domain + "name = \"n\u{E9}t\"\n", ["7: \(rule) (got 'n\u{E9}t')"]),
      // Messages cut quoted values after 64 characters.
      (domain + "name = \"\(tooLong)\"\n", ["7: \(rule) (got '\(tooLong.dropLast())…')"]),
      (domain + "name = 1\n", ["7: name must be a string"]),
      (
        domain + "name = \"net1\"\n[[bridge_domain]]\nvni = 2\nname = \"net1\"\n",
        ["10: name 'net1' is already used by the bridge domain on line 7"]
      ),
      (
        domain + "name = \"net1\"\n[[bridge_domain]]\nvni = 2\nname = \"net2\"\n"
          + "[[bridge_domain]]\nvni = 3\nname = \"net1\"\n",
        ["13: name 'net1' is already used by the bridge domain on line 7"]
      ),
      (
        // A duplicate name is reported even when the VNI is also wrong.
        domain + "name = \"net1\"\n[[bridge_domain]]\nvni = 1\nname = \"net1\"\n",
        [
          "9: vni 1 is already used by the bridge domain on line 6",
          "10: name 'net1' is already used by the bridge domain on line 7",
        ]
      ),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  // MARK: - [peering] and [[site_peer]]

  /// A valid `[peering]` on lines 5-9, after `site`.
  private let peering =
    "[peering]\nlisten = \"0.0.0.0:7443\"\ntls_cert = \"/etc/vxswitch/a.pem\"\n"
    + "tls_key = \"/etc/vxswitch/a.key\"\ntls_ca = \"/etc/vxswitch/ca.pem\"\n"

  func testPeeringAndSitePeers() throws {
    let config = try XCTUnwrap(
      decode(
        site + peering
          + """
          [[site_peer]]
          name = "site-b"
          url = "https://192.0.2.2:7443"

          [[site_peer]]
          name = "dc2.Site-c"
          url = "https://[2001:DB8::3]:443/"

          [[site_peer]]
          name = "d"
          url = "https://peer-d.example.net:8443"

          """))
    XCTAssertEqual(
      config.peering,
      SiteConfig.Peering(
        listenHost: ip("0.0.0.0"), listenPort: 7443, tlsCert: "/etc/vxswitch/a.pem",
        tlsKey: "/etc/vxswitch/a.key", tlsCA: "/etc/vxswitch/ca.pem"))
    XCTAssertEqual(
      config.sitePeers,
      [
        SiteConfig.SitePeer(name: "site-b", host: "192.0.2.2", port: 7443),
        SiteConfig.SitePeer(name: "dc2.Site-c", host: "2001:db8::3", port: 443),
        SiteConfig.SitePeer(name: "d", host: "peer-d.example.net", port: 8443),
      ])
    let bare = try XCTUnwrap(
      decode(site + "[peering]\nlisten = \"[::1]:1\"\ntls_cert = \"c\"\ntls_key = \"k\"\ntls_ca = \"a\"\n"))
    XCTAssertEqual(
      bare.peering,
      SiteConfig.Peering(listenHost: ip("::1"), listenPort: 1, tlsCert: "c", tlsKey: "k", tlsCA: "a"))
    XCTAssertEqual(bare.sitePeers, [])
    XCTAssertEqual(
      [bare.peering?.staleTime, bare.peering?.longLivedStaleTime, bare.peering?.holdTime], [300, 86400, 90])
    XCTAssertEqual([bare.peering?.restartTime, bare.peering?.selectionDeferralTime], [120, 60])
    let timers = try XCTUnwrap(
      decode(
        site + peering + "hold_time = 9\nstale_time = 3\nlong_lived_stale_time = 16777215\n"
          + "restart_time = 4095\nselection_deferral_time = 5\n"))
    XCTAssertEqual(
      [
        timers.peering?.holdTime, timers.peering?.staleTime, timers.peering?.longLivedStaleTime,
        timers.peering?.restartTime, timers.peering?.selectionDeferralTime,
      ],
      [9, 3, 16_777_215, 4095, 5])
    XCTAssertNil(try XCTUnwrap(decode(site)).peering)
  }

  func testPeeringErrors() {
    let header = site + "[peering]\n"  // header on line 5, keys from line 6
    let files = "tls_cert = \"c\"\ntls_key = \"k\"\ntls_ca = \"a\"\n"  // lines 6-8
    let form = "listen must be \"ADDRESS:PORT\", like \"127.0.0.1:8080\" or \"[::1]:8080\""
    let cases: [(text: String, errors: [String])] = [
      (header + files, ["5: missing required key 'listen' in [peering]"]),
      (
        header + files + "listen = \"127.0.0.1:7443\"\nlong_lived_stale_time = 16777216\nhold_time = 2\n",
        [
          "10: long_lived_stale_time must be between 0 and 16777215 (got 16777216)",
          "11: hold_time must be 0 or between 3 and 65535 (got 2)",
        ]
      ),
      (
        header + files + "listen = \"127.0.0.1:7443\"\nstale_time = -5\n",
        ["10: stale_time must be at least 0 (got -5)"]
      ),
      (
        header + "listen = \"127.0.0.1:7443\"\n",
        [
          "5: missing required key 'tls_cert' in [peering]", "5: missing required key 'tls_key' in [peering]",
          "5: missing required key 'tls_ca' in [peering]",
        ]
      ),
      (header + files + "listen = \"localhost:7443\"\n", ["9: \(form) (got 'localhost:7443')"]),
      (header + files + "listen = \"127.0.0.1:0\"\n", ["9: listen port must be between 1 and 65535 (got 0)"]),
      (
        header + files + "listen = \"::1:7443\"\n",
        ["9: listen address ::1 must be in brackets, like \"[::1]:8080\" (got '::1:7443')"]
      ),
      (
        header + "listen = \"127.0.0.1:7443\"\ntls_cert = \"\"\ntls_key = 1\ntls_ca = \"a\\u0000\"\n",
        [
          "7: tls_cert must be a non-empty path", "8: tls_key must be a string",
          "9: tls_ca must be a non-empty path",
        ]
      ),
      (header + files + "listen = \"127.0.0.1:7443\"\nport = 1\n", ["10: unknown key 'port' in [peering]"]),
      ("peering = 1\n" + site, ["1: peering must be a table, written [peering]"]),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  func testSitePeerURLs() throws {
    let cases: [(url: String, host: String, port: Int)] = [
      ("https://192.0.2.2:7443", "192.0.2.2", 7443),
      ("https://[::1]:1", "::1", 1),
      ("https://[2001:db8:0::7]:65535/", "2001:db8::7", 65535),
      ("https://localhost:7443", "localhost", 7443),
      ("https://Site-B.example.net:7443", "Site-B.example.net", 7443),
      ("https://a1.b2.c3:7443", "a1.b2.c3", 7443),
    ]
    for (url, host, port) in cases {
      let config = try XCTUnwrap(
        decode(site + peering + "[[site_peer]]\nname = \"b\"\nurl = \"\(url)\"\n"), url)
      XCTAssertEqual(config.sitePeers, [SiteConfig.SitePeer(name: "b", host: host, port: port)], url)
    }
  }

  func testSitePeerErrors() {
    let peers = site + peering  // [[site_peer]] headers from line 10
    let form =
      "url must be \"https://HOST:PORT\" with HOST an IPv4 address, an IPv6 address in brackets or a DNS "
      + "name, like \"https://192.0.2.2:7443\""
    let rule = "name must be 1 to 32 characters from A-Z a-z 0-9 _ . -"
    let dnsRule =
      "name must be a DNS name: dot-separated labels of letters, digits and '-' (no '_', no '-' at either end "
      + "of a label), not an IP address, as certificates carry it"
    let peer = { (name: String, url: String) in "[[site_peer]]\nname = \"\(name)\"\nurl = \"\(url)\"\n" }
    var cases: [(text: String, errors: [String])] = [
      (peers + "[[site_peer]]\nname = \"b\"\n", ["10: missing required key 'url' in [[site_peer]]"]),
      (
        peers + "[[site_peer]]\nurl = \"https://b:1\"\n", ["10: missing required key 'name' in [[site_peer]]"]
      ),
      (peers + peer("b c", "https://b:1"), ["11: \(rule) (got 'b c')"]),
      (peers + peer("", "https://b:1"), ["11: \(rule) (got '')"]),
      (
        peers + peer(String(repeating: "n", count: 33), "https://b:1"),
        ["11: \(rule) (got '\(String(repeating: "n", count: 33))')"]
      ),
      (
        peers + peer("b", "https://b:1") + peer("b", "https://c:1"),
        ["14: site peer 'b' is already defined on line 11"]
      ),
      (
        peers + peer("b", "https://b:1") + peer("B", "https://c:1"),
        ["14: site peer 'B' is already defined on line 11"]
      ),
      (peers + peer("a", "https://a:1"), ["11: site peer 'a' is this site's own name"]),
      (peers + peer("b_c", "https://b:1"), ["11: \(dnsRule) (got 'b_c')"]),
      (peers + peer("-b", "https://b:1"), ["11: \(dnsRule) (got '-b')"]),
      (peers + peer("b..c", "https://b:1"), ["11: \(dnsRule) (got 'b..c')"]),
      (peers + peer("10.0.0.2", "https://b:1"), ["11: \(dnsRule) (got '10.0.0.2')"]),
      (
        "[site]\nname = \"a_b\"\nvtep = \"10.0.0.1\"\nunderlay = \"eth1\"\n" + peering,
        [
          "5: with [peering], the site name must be a DNS name: dot-separated labels of letters, digits and '-' "
            + "(no '_', no '-' at either end of a label), not an IP address, as certificates carry it (got 'a_b')"
        ]
      ),
      (peers + peer("A", "https://a:1"), ["11: site peer 'A' is this site's own name"]),
      (peers + peer("b", "https://b:0"), ["12: url port must be between 1 and 65535 (got 0)"]),
      (peers + peer("b", "https://b:65536"), ["12: url port must be between 1 and 65535 (got 65536)"]),
      (peers + "[[site_peer]]\nname = \"b\"\nurl = 7443\n", ["12: url must be a string"]),
      (peers + peer("b", "https://b:1") + "port = 1\n", ["13: unknown key 'port' in [[site_peer]]"]),
      (
        site + peer("b", "https://b:1") + peer("c", "https://c:1"),
        ["5: [[site_peer]] needs a [peering] table (the channel's address and TLS files)"]
      ),
      ("site_peer = 1\n" + site, ["1: site_peer must be an array of tables, written [[site_peer]]"]),
    ]
    for url in [
      "http://b:1", "https://b", "https://b:", "https://b:x", "https://:1", "https://b:1/path",
      "https://u@b:1",
      "https://[::1]", "https://[192.0.2.1]:1", "https://::1:1", "https://10.0.0.256:1", "https://1.2.3:1",
      "https://-b:1", "https://b-:1", "https://b..c:1", "https://b_c:1", "https://b.:1", "HTTPS://b:1",
      "https://b:1?x", "https://\(String(repeating: "a", count: 64)):1",
    ] {
      cases.append(
        (
          peers + peer("b", url),
          ["12: \(form) (got '\(url.count > 64 ? String(url.prefix(64)) + "…" : url)')"]
        ))
    }
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  /// `[[site_peer]] evpn_only = true`: a site reached over BGP EVPN only (its VTEP, AS and
  /// TCP MD5 key; no url); `state_dir`.
  func testEVPNOnlySitePeersAndStateDirectory() throws {
    let config = try XCTUnwrap(
      decode(
        site.replacingOccurrences(of: "[site]\n", with: "[site]\nstate_dir = \"/var/lib/vxswitch\"\n")
          + peering
            + """
            [[site_peer]]
            name = "site-b"
            url = "https://192.0.2.2:7443"

            [[site_peer]]
            name = "frr-1"
            evpn_only = true
            vtep = "10.0.0.9"
            asn = 65009
            password = "key"

            [[site_peer]]
            name = "frr-2"
            evpn_only = true
            vtep = "10.0.0.10"
            """))
    XCTAssertEqual(config.sitePeers.map(\.name), ["site-b"], "EVPN-only sites have no site channel")
    XCTAssertEqual(
      config.evpnSites,
      [
        SiteConfig.EVPNSite(name: "frr-1", vtep: ip("10.0.0.9"), asn: 65009, password: "key"),
        SiteConfig.EVPNSite(name: "frr-2", vtep: ip("10.0.0.10")),
      ])
    XCTAssertEqual(config.site.stateFile, "/var/lib/vxswitch/a.state.json")
    XCTAssertEqual(
      try XCTUnwrap(decode(site)).site.stateFile, "/var/lib/vxswitch/a.state.json",
      "with the default control socket")
    XCTAssertEqual(
      try XCTUnwrap(
        decode(
          site.replacingOccurrences(of: "[site]\n", with: "[site]\ncontrol_socket = \"/srv/a/api.sock\"\n"))
      ).site.stateFile, "/srv/a/a.state.json", "next to a configured control socket")

    let peers = site + peering  // [[site_peer]] headers from line 10
    let evpn = { (extra: String) in "[[site_peer]]\nname = \"frr\"\nevpn_only = true\n" + extra }
    let cases: [(text: String, errors: [String])] = [
      (peers + evpn(""), ["10: missing required key 'vtep' in [[site_peer]]"]),
      (
        peers + evpn("vtep = \"10.0.0.9\"\nurl = \"https://b:1\"\n"),
        ["14: url is not used with evpn_only = true: the site has no site channel, only BGP EVPN"]
      ),
      (peers + evpn("vtep = \"10.0.0.1\"\n"), ["13: vtep 10.0.0.1 is this site's own VTEP"]),
      (peers + evpn("vtep = \"fd00::9\"\n"), ["13: vtep fd00::9 is not of the family of [site] vtep"]),
      (peers + evpn("vtep = \"10.0.0.9\"\nasn = 0\n"), ["14: asn must be between 1 and 4294967295 (got 0)"]),
      (peers + evpn("vtep = \"10.0.0.9\"\npassword = \"\"\n"), ["14: password must be 1 to 80 bytes"]),
      (
        peers + "[[site_peer]]\nname = \"b\"\nurl = \"https://b:1\"\nvtep = \"10.0.0.9\"\n",
        ["10: vtep is only used with evpn_only = true (a site reached over BGP EVPN only)"]
      ),
      (
        peers + "[[site_peer]]\nname = \"frr\"\nurl = \"https://b:1\"\n" + evpn("vtep = \"10.0.0.9\"\n"),
        ["14: site peer 'frr' is already defined on line 11"]
      ),
      (
        site.replacingOccurrences(of: "[site]\n", with: "[site]\nstate_dir = \"\"\n"),
        ["2: state_dir must be a non-empty path"]
      ),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(errors(text), expected, "for input:\n\(text)")
    }
  }

  // MARK: - Files and hostile input

  func testUnreadableFileIsReportedOnLineZero() {
    XCTAssertThrowsError(try SiteConfig.load(path: "/nonexistent/vxswitch.toml")) { error in
      let errors = (error as? ConfigErrors)?.errors
      XCTAssertEqual(errors?.count, 1)
      XCTAssertEqual(errors?.first?.line, 0)
      XCTAssertEqual(errors?.first?.file, "/nonexistent/vxswitch.toml")
      XCTAssertEqual(errors?.first?.message, "cannot read the file: No such file or directory")
    }
  }

  func testBinaryFileGivesAnErrorNotACrash() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent(
      "vxswitch-binary-\(ProcessInfo.processInfo.processIdentifier).toml")
    defer { try? FileManager.default.removeItem(at: path) }
    var bytes: [UInt8] = Array("[site]\n".utf8)
    var generator = SplitMix64(seed: 7)
    bytes += (0..<4096).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    try Data(bytes).write(to: path)
    XCTAssertThrowsError(try SiteConfig.load(path: path.path)) { error in
      let errors = (error as? ConfigErrors)?.errors ?? []
      XCTAssertEqual(errors.count, 1)
      XCTAssertGreaterThanOrEqual(errors.first?.line ?? 0, 1)
    }
  }

  func testGarbageTextGivesAnError() {
    let inputs = ["\u{0}\u{1}\u{2}", "\u{FFFD}\u{FFFD}", "[[[[", "}{", "\"", "=", "[site]\nname = \u{7}"]
    for input in inputs {
      XCTAssertFalse(errors(input).isEmpty, "no error for \(input.debugDescription)")
    }
  }

  /// Random edits of a valid file must each decode or fail with located errors, never crash.
  func testRandomMutationsNeverCrash() throws {
    let valid =
      try String(contentsOfFile: examplePath, encoding: .utf8)
      + "\n[bgp]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n[[bgp.peer]]\naddress = \"10.0.0.2\"\nasn = 1\n"
    XCTAssertNotNil(decode(valid))
    let tokens = Array("[]{}\"'=,.#\\\n \t0123456789abcxyz_-:".utf8) + [0x00, 0x0D, 0x7F, 0xC3, 0xFF]
    var generator = SplitMix64(seed: 0x7678_7377)
    var decodedCount = 0
    for _ in 0..<1500 {
      var bytes = Array(valid.utf8)
      for _ in 0..<(1 + Int(generator.next() % 4)) {
        let index = Int(generator.next() % UInt64(bytes.count))
        let token = tokens[Int(generator.next() % UInt64(tokens.count))]
        switch generator.next() % 5 {
        case 0: bytes[index] = token
        case 1: bytes.insert(token, at: index)
        case 2: if bytes.count > 1 { bytes.remove(at: index) }
        case 3: bytes = Array(bytes[..<index])
        default:
          let end = min(bytes.count, index + Int(generator.next() % 40))
          bytes.insert(contentsOf: bytes[index..<end], at: index)
        }
        if bytes.isEmpty { bytes = [0x20] }
      }
      let lineCount = bytes.filter { $0 == 0x0A }.count + 1
      do {
        _ = try TOMLDocument(parsing: bytes)
      } catch {
        XCTAssertTrue((1...lineCount).contains(error.line), "TOML error line \(error.line) of \(lineCount)")
      }
      let text = String(decoding: bytes, as: UTF8.self)
      do {
        _ = try SiteConfig.parse(text: text, file: "fuzz.toml")
        decodedCount += 1
      } catch let thrown as ConfigErrors {
        XCTAssertFalse(thrown.errors.isEmpty)
        for error in thrown.errors {
          XCTAssertTrue(
            (0...lineCount).contains(error.line), "config error line \(error.line) of \(lineCount)")
          XCTAssertFalse(error.message.isEmpty)
        }
      }
    }
    XCTAssertGreaterThan(decodedCount, 0, "some mutations (inside comments, say) should still decode")
  }
}
