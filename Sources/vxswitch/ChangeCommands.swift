import API
import ArgumentParser
import Dataplane
import Foundation
import Management

/// `vxswitch mac add|del|list`: static MACs added at run time (kept across reloads until
/// removed; those of the configuration file are listed with origin "config").
struct MacCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mac", abstract: "Add, remove and list static MACs of a running daemon.",
    subcommands: [MacAdd.self, MacDelete.self, MacList.self])
}

struct MacAdd: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a static MAC.")
  @OptionGroup var location: DaemonLocation
  @Option(help: "The bridge domain's VNI.") var vni: UInt32
  @Option(help: "The MAC address.") var mac: String
  @Option(help: "A local port member (\"vm1\", \"trunk0.10\").") var port: String?
  @Option(help: "A remote VTEP address.") var vtep: String?

  func validate() throws {
    guard MACAddress(mac) != nil else { throw ValidationError("not a MAC address: \(mac)") }
    guard (port == nil) != (vtep == nil) else {
      throw ValidationError("give exactly one of --port and --vtep")
    }
  }

  func run() throws {
    let body = try JSONSerialization.data(
      withJSONObject: ["vni": vni, "mac": mac, "port": port as Any, "vtep": vtep as Any].compactMapValues {
        $0 is NSNull ? nil : $0
      })
    let reply = try location.call { try $0.request(.POST, "/v1/static-macs", body: body) }
    print(reply.status == 201 ? "added \(mac) in VNI \(vni)" : "\(mac) in VNI \(vni) was already there")
  }
}

struct MacDelete: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "del", abstract: "Remove a static MAC added at run time.")
  @OptionGroup var location: DaemonLocation
  @Option(help: "The bridge domain's VNI.") var vni: UInt32
  @Option(help: "The MAC address.") var mac: String

  func run() throws {
    try location.call { try $0.request(.DELETE, "/v1/static-macs/\(vni)/\(mac)") }
    print("removed \(mac) from VNI \(vni)")
  }
}

struct MacList: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "list", abstract: "List static MACs.")
  @OptionGroup var location: DaemonLocation
  @Option(help: "Only this VNI.") var vni: UInt32?
  @Flag(help: "JSON: {\"static_macs\":[{vni,mac,port|vtep,origin}]}.") var json = false

  func run() throws {
    let reply = try location.get("/v1/static-macs" + (vni.map { "?vni=\($0)" } ?? ""))
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    var table = [["vni", "mac", "destination", "origin"]]
    for row in try APICoding.decoder.decode(StaticMACList.self, from: reply).staticMacs {
      table.append([
        "\(row.vni)", row.mac, row.port.map { "port \($0)" } ?? "vtep \(row.vtep ?? "?")",
        row.origin.rawValue,
      ])
    }
    print(TextTable.render(table))
  }
}

/// `vxswitch flood add|del|list`: head-end replication entries added at run time.
struct FloodCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "flood", abstract: "Add, remove and list flood-list (head-end replication) entries.",
    subcommands: [FloodAdd.self, FloodDelete.self, FloodList.self])
}

struct FloodAdd: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "add", abstract: "Add a remote VTEP to a VNI's flood list.")
  @OptionGroup var location: DaemonLocation
  @Option(help: "The bridge domain's VNI.") var vni: UInt32
  @Option(help: "The remote VTEP address.") var vtep: String

  func run() throws {
    let body = try JSONSerialization.data(withJSONObject: ["vni": vni, "vtep": vtep])
    let reply = try location.call { try $0.request(.POST, "/v1/flood", body: body) }
    print(
      reply.status == 201 ? "added \(vtep) to VNI \(vni)" : "\(vtep) was already in VNI \(vni)'s flood list")
  }
}

struct FloodDelete: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "del", abstract: "Remove a flood entry added at run time.")
  @OptionGroup var location: DaemonLocation
  @Option(help: "The bridge domain's VNI.") var vni: UInt32
  @Option(help: "The remote VTEP address.") var vtep: String

  func run() throws {
    try location.call { try $0.request(.DELETE, "/v1/flood/\(vni)/\(vtep)") }
    print("removed \(vtep) from VNI \(vni)")
  }
}

struct FloodList: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "list", abstract: "List flood-list entries.")
  @OptionGroup var location: DaemonLocation
  @Option(help: "Only this VNI.") var vni: UInt32?
  @Flag(help: "JSON: {\"flood\":[{vni,vtep,origin}]}.") var json = false

  func run() throws {
    let reply = try location.get("/v1/flood" + (vni.map { "?vni=\($0)" } ?? ""))
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    var table = [["vni", "vtep", "origin"]]
    for row in try APICoding.decoder.decode(API.FloodList.self, from: reply).flood {
      table.append(["\(row.vni)", row.vtep, row.origin.rawValue])
    }
    print(TextTable.render(table))
  }
}

/// `vxswitch reload`: what SIGHUP does, with the outcome printed.
struct ReloadCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "reload",
    abstract: "Reload the daemon's configuration file (like SIGHUP) and print what changed.")
  @OptionGroup var location: DaemonLocation
  @Flag(help: "JSON: the reload result.") var json = false

  func run() throws {
    let reply = try location.call { try $0.request(.POST, "/v1/reload") }
    if json { return print(String(decoding: reply.body, as: UTF8.self)) }
    let result = try APICoding.decoder.decode(ReloadResult.self, from: reply.body)
    if result.unchanged { return print("configuration reloaded: nothing changed") }
    var parts: [String] = []
    if !result.bridgeDomainsAdded.isEmpty { parts.append("VNIs added \(result.bridgeDomainsAdded)") }
    if !result.bridgeDomainsRemoved.isEmpty { parts.append("VNIs removed \(result.bridgeDomainsRemoved)") }
    if !result.bridgeDomainsChanged.isEmpty { parts.append("VNIs changed \(result.bridgeDomainsChanged)") }
    if result.staticMacsAdded + result.staticMacsRemoved > 0 {
      parts.append("static MACs +\(result.staticMacsAdded) -\(result.staticMacsRemoved)")
    }
    if result.neighborsChanged { parts.append("neighbors changed") }
    if result.bgpChanged { parts.append("[bgp] changed (restart to apply)") }
    print("configuration reloaded: " + parts.joined(separator: "; "))
  }
}
