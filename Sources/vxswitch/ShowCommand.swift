import API
import ArgumentParser
import ControlShim
import Dataplane
import Foundation
import Management

/// Where a client subcommand finds the daemon: `--socket PATH`, the `control_socket` of
/// `--config FILE`, or `--url URL --token-file FILE` (the TCP API).
struct DaemonLocation: ParsableArguments {
  @Option(help: "The site's configuration (its control_socket is used).") var config: String?
  @Option(help: "The daemon's control socket.") var socket: String?
  @Option(help: "The daemon's TCP API, e.g. http://127.0.0.1:8080 (with --token-file).") var url: String?
  @Option(help: "The file holding the API's bearer token (with --url).") var tokenFile: String?

  func client() throws -> APIClient {
    if let url {
      guard let tokenFile else { throw ValidationError("--url needs --token-file") }
      guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
        throw ValidationError("cannot read \(tokenFile)")
      }
      return APIClient(.url(url, token: token.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
    if let socket { return APIClient(.unixSocket(socket)) }
    if let config { return APIClient(.unixSocket(try loadConfigOrExit(config).site.controlSocket)) }
    throw ValidationError("give --config FILE, --socket PATH or --url URL --token-file FILE")
  }

  /// Runs `body` with a client; API and connection errors are printed and exit 1.
  @discardableResult
  func call<T>(_ body: (APIClient) throws -> T) throws -> T {
    let client = try client()
    do {
      return try body(client)
    } catch let error as APIClientError {
      if case .connection = error {
        printError("vxswitch: \(error) (is `vxswitch run` running?)")
      } else {
        printError("vxswitch: \(error)")
      }
      throw ExitCode(1)
    }
  }

  func get(_ path: String) throws -> Data { try call { try $0.request(.GET, path).body } }
}

struct ShowCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "show", abstract: "Inspect a running daemon.",
    subcommands: [
      ShowFDB.self, ShowARP.self, ShowBridgeDomains.self, ShowStatistics.self, ShowBGP.self, ShowPorts.self,
      ShowNeighbors.self, ShowNetworks.self, ShowExtensions.self, ShowConflicts.self,
    ])
}

struct ClearCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "clear", abstract: "Reset state of a running daemon.", subcommands: [ClearDuplicateMAC.self])
}

struct ClearDuplicateMAC: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dup-mac",
    abstract: "Release MACs frozen by BGP EVPN duplicate-MAC detection (RFC 7432 section 15.1).",
    discussion: """
      The corrective action after fixing the cause (a loop, two hosts with one MAC): the \
      MAC's routes are processed again and, if it is local, advertised again. Without \
      --vni and --mac, every frozen MAC is released.
      """)
  @OptionGroup var location: DaemonLocation
  @Option(help: "Only MACs of this VNI.") var vni: UInt32?
  @Option(help: "Only this MAC.") var mac: String?
  @Flag(help: "JSON: {\"cleared\":[{vni,mac}]}.") var json = false

  func validate() throws {
    if let mac, MACAddress(mac) == nil { throw ValidationError("not a MAC address: \(mac)") }
  }

  func run() throws {
    var query: [String] = []
    if let vni { query.append("vni=\(vni)") }
    if let mac { query.append("mac=\(mac)") }
    let path = "/v1/duplicate-macs" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
    let reply = try location.call { try $0.request(.DELETE, path).body }
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    let cleared = try APICoding.decoder.decode(ReleasedMACList.self, from: reply).cleared
    if cleared.isEmpty { return print("no frozen MAC matched") }
    for entry in cleared { print("released \(entry.mac) in VNI \(entry.vni)") }
  }
}

private let snakeDecoder = APICoding.decoder

struct ShowFDB: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fdb", abstract: "Forwarding entries, like `bridge fdb show`.")
  @OptionGroup var location: DaemonLocation
  @Option(help: "Only this VNI.") var vni: UInt32?
  @Option(help: "Only this MAC.") var mac: String?
  @Option(help: "Only entries of this origin: static, local, decap or control.") var origin: String?
  @Flag(help: "JSON: {\"entries\":[{mac,vni,port|vtep,action,origin,age_seconds,peer,sequence,duplicate}]}.")
  var json = false

  func run() throws {
    var filters = ["limit=10000"]
    if let vni { filters.append("vni=\(vni)") }
    if let mac { filters.append("mac=\(mac)") }
    if let origin { filters.append("origin=\(origin)") }
    var rows: [FDBRow] = []
    var cursor: String? = "0"
    while let next = cursor {
      let page = try location.call {
        try $0.get("/v1/fdb?" + (filters + ["cursor=\(next)"]).joined(separator: "&"), as: FDBList.self)
      }
      rows += page.entries
      cursor = page.nextCursor
    }
    rows.sort { ($0.vni, $0.mac) < ($1.vni, $1.mac) }
    if json { return print(String(decoding: try APICoding.encoder.encode(["entries": rows]), as: UTF8.self)) }
    var table = [["mac", "vni", "destination", "origin", "age"]]
    for row in rows {
      let destination =
        row.action == "drop" ? "drop" : row.port.map { "port \($0)" } ?? "vtep \(row.vtep ?? "?")"
      var origin = row.origin
      if let peer = row.peer { origin += " (\(peer)\(row.sequence.map { " seq \($0)" } ?? ""))" }
      if row.duplicate == true { origin += " duplicate" }
      table.append([row.mac, "\(row.vni)", destination, origin, row.ageSeconds.map { "\($0)s" } ?? "-"])
    }
    print(TextTable.render(table))
  }
}

struct ShowARP: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "arp",
    abstract: "ARP and neighbour-discovery suppression bindings (IPv4 and IPv6 -> MAC), local and from EVPN.")
  @OptionGroup var location: DaemonLocation
  @Option(help: "Only this VNI.") var vni: UInt32?
  @Flag(help: "JSON: {\"entries\":[{vni,ip,mac,origin,peer,age_seconds,duplicate,conflict}]}.") var json =
    false

  func run() throws {
    let reply = try location.get("/v1/arp" + (vni.map { "?vni=\($0)" } ?? ""))
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    let rows = try snakeDecoder.decode([String: [ARPRow]].self, from: reply)["entries"] ?? []
    var table = [["vni", "ip", "mac", "origin", "age"]]
    for row in rows {
      var origin = row.origin
      if let peer = row.peer { origin += " (\(peer))" }
      if row.duplicate == true { origin += " duplicate" }
      if row.conflict == true { origin += " conflict (not answered)" }
      table.append([
        "\(row.vni)", row.ip, row.mac, origin, row.ageSeconds.map { "\($0)s" } ?? "-",
      ])
    }
    print(TextTable.render(table))
  }
}

struct ShowConflicts: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "conflicts",
    abstract:
      "Address conflicts: one IP bound to several MACs, one MAC at two VTEPs (with the rule's outcome).")
  @OptionGroup var location: DaemonLocation
  @Option(help: "Only this VNI.") var vni: UInt32?
  @Option(help: "Only this kind: ip or mac.") var kind: String?
  @Flag(
    help:
      "JSON: {\"conflicts\":[{kind,vni,ip,mac,claims:[{mac,vtep,sequence,peer,winner}],rule,outcome,duration}]}."
  ) var json = false

  func run() throws {
    let query = [vni.map { "vni=\($0)" }, kind.map { "kind=\($0)" }].compactMap { $0 }
    let reply = try location.get("/v1/conflicts" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    let conflicts = try snakeDecoder.decode([String: [AddressConflict]].self, from: reply)["conflicts"] ?? []
    if conflicts.isEmpty { return print("no address conflicts") }
    var table = [["kind", "vni", "address", "claims (winner first)", "rule", "outcome", "for"]]
    for conflict in conflicts {
      let claims = conflict.claims.map { claim in
        (conflict.kind == .ip ? "\(claim.mac) " : "") + "@\(claim.vtep) seq \(claim.sequence) (\(claim.peer))"
      }
      table.append([
        conflict.kind.rawValue, "\(conflict.vni)", conflict.ip ?? conflict.mac ?? "-",
        claims.joined(separator: ", "),
        conflict.rule.rawValue, conflict.outcome, "\(Int(conflict.duration))s",
      ])
    }
    print(TextTable.render(table))
  }
}

struct ShowBridgeDomains: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bd", abstract: "Bridge domains: ports, flood lists, MACs.")
  @OptionGroup var location: DaemonLocation
  @Flag(help: "JSON: {\"bridge_domains\":[{vni,index,ports,flood,learn_local,learn_decap,macs}]}.") var json =
    false

  func run() throws {
    let reply = try location.get("/v1/bridge-domains")
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    let rows = try snakeDecoder.decode([String: [BridgeDomainRow]].self, from: reply)["bridge_domains"] ?? []
    var table = [["vni", "ports", "flood", "learning", "macs"]]
    for row in rows {
      let learning = [row.learnLocal ? "local" : nil, row.learnDecap ? "decap" : nil].compactMap { $0 }
      table.append([
        "\(row.vni)", row.ports.joined(separator: ","), row.flood.joined(separator: ","),
        learning.isEmpty ? "off" : learning.joined(separator: "+"), "\(row.macs)",
      ])
    }
    print(TextTable.render(table))
  }
}

struct ShowStatistics: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stats", abstract: "Frames, bytes, drops by reason, learning.")
  @OptionGroup var location: DaemonLocation
  @Flag(help: "JSON: the same shape as `vxswitch replay --json`.") var json = false

  func run() throws {
    let reply = try location.get("/v1/statistics")
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    let report = try snakeDecoder.decode(StatisticsReport.self, from: reply)
    print(TextTable.report(report))
  }
}

struct ShowBGP: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "bgp", abstract: "BGP EVPN sessions.")
  @OptionGroup var location: DaemonLocation
  @Flag(
    help:
      "JSON: {asn,router_id,listening_port,local_mac_routes,remote_mac_routes,frozen_macs,duplicate_macs:[...],peers:[...]}."
  )
  var json = false

  func run() throws {
    let reply = try location.get("/v1/bgp")
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    print(TextTable.bgp(try JSONDecoder().decode(SpeakerStatus.self, from: reply)))
  }
}

enum TextTable {
  static func render(_ rows: [[String]]) -> String {
    let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.map { row in
      row.enumerated().map { column, cell in
        cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
      }
      .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n")
  }

  static func bgp(_ status: SpeakerStatus) -> String {
    var text = "BGP AS \(status.asn), router ID \(status.routerID)"
    if let port = status.listeningPort { text += ", listening on port \(port)" }
    text += "\nMAC routes: \(status.localMACRoutes) local, \(status.remoteMACRoutes) remote"
    if status.frozenMACs > 0 { text += ", \(status.frozenMACs) frozen (duplicate)" }
    if let restart = status.gracefulRestart, restart.restarted {
      text += "\ngraceful restart: restarted"
      text += restart.restartState ? ", Restart State announced" : ", finished"
      if !restart.localStateRestored { text += ", End-of-RIB waiting for the local state" }
      if restart.selectionDeferral { text += ", received routes held until the peers' End-of-RIB" }
    }
    for frozen in status.duplicateMACs {
      text += "\nduplicate MAC \(frozen.mac) in VNI \(frozen.vni): \(frozen.moves) moves, frozen "
      text += duration(frozen.frozenFor) + " ago"
      text += frozen.releaseIn.map { ", released in " + duration($0) } ?? " until `vxswitch clear dup-mac`"
    }
    var rows = [
      ["peer", "AS", "type", "state", "up", "received", "accepted", "stale", "advertised", "capabilities"]
    ]
    for peer in status.peers {
      var capabilities = peer.negotiatedFamilies
      if peer.fourOctetAS { capabilities.append("as4") }
      if peer.routeRefresh { capabilities.append("refresh") }
      if peer.peerGracefulRestart { capabilities.append(peer.peerRestarted == true ? "gr(restarted)" : "gr") }
      if peer.peerLongLivedStaleTime != nil { capabilities.append("llgr") }
      if peer.routeTargetConstraint { capabilities.append("rtc") }
      if peer.md5 { capabilities.append("md5") }
      rows.append([
        peer.name, "\(peer.remoteAS)", peer.isInternal ? "iBGP" : "eBGP", peer.state.rawValue,
        peer.uptime.map(Self.duration) ?? "-", "\(peer.routesReceived)", "\(peer.routesAccepted)",
        staleColumn(peer),
        "\(peer.routesAdvertised)", capabilities.joined(separator: ","),
      ])
    }
    text += "\n" + render(rows)
    for peer in status.peers {
      if let error = peer.lastError { text += "\n\(peer.name): last error: \(error)" }
    }
    return text
  }

  /// The stale routes and their phase: "3 (gr)" while graceful restart keeps them, "3
  /// (llgr)" once they are long-lived stale (RFC 9494), "0 (1 llgr)" for routes the peer
  /// sent marked LLGR_STALE.
  static func staleColumn(_ peer: PeerStatus) -> String {
    switch peer.stalePhase {
    case .gracefulRestart?: return "\(peer.routesStale) (gr)"
    case .longLived?: return "\(peer.routesStale) (llgr)"
    default:
      guard let longLived = peer.routesLongLivedStale, longLived > 0 else { return "\(peer.routesStale)" }
      return "\(peer.routesStale) (\(longLived) llgr)"
    }
  }

  static func duration(_ seconds: Double) -> String {
    let whole = Int(seconds)
    if whole < 60 { return "\(whole)s" }
    if whole < 3600 { return "\(whole / 60)m\(whole % 60)s" }
    return "\(whole / 3600)h\(whole / 60 % 60)m"
  }

  static func report(_ report: StatisticsReport) -> String {
    var rows = [["port", "rx frames", "rx bytes", "tx frames", "tx bytes"]]
    for port in report.ports {
      rows.append([port.name, "\(port.rxFrames)", "\(port.rxBytes)", "\(port.txFrames)", "\(port.txBytes)"])
    }
    var text = render(rows)
    text += "\nencapsulated \(report.encapsulated)  decapsulated \(report.decapsulated)"
    text += "  flood copies \(report.floodCopies)  learned \(report.learned)  moves \(report.moves)"
    text += "  aged \(report.aged)  FDB entries \(report.fdbEntries)"
    if let suppressed = report.arpSuppressed { text += "  ARP suppressed \(suppressed)" }
    if let collisions = report.arpBindingCollisions, collisions > 0 {
      text += "  IPv6 bindings refused (folded-key collision) \(collisions)"
    }
    if report.drops.isEmpty {
      text += "\ndrops: none"
    } else {
      text += "\ndrops:"
      for (reason, count) in report.drops.sorted(by: { $0.key < $1.key }) {
        text += "\n  \(reason): \(count)"
      }
    }
    return text
  }
}
