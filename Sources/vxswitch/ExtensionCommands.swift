import API
import ArgumentParser
import Foundation
import Management

/// `vxswitch extend NETWORK --to site-b,site-c`: asks this site (which then owns the
/// extension) to extend a local network; the sites negotiate VNI and route target.
struct ExtendCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "extend", abstract: "Extend a local network to other sites (this site owns the extension).")
  @OptionGroup var location: DaemonLocation
  @Argument(help: "The local network's name.") var network: String
  @Option(help: "The other sites, comma-separated.") var to: String
  @Flag(help: "Wait until every reachable member joined (at most --timeout seconds).") var wait = false
  @Option(help: "Seconds --wait waits.") var timeout: Double = 60
  @Flag(help: "JSON: the extension.") var json = false

  func run() throws {
    let sites = to.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let body = try JSONSerialization.data(withJSONObject: ["network": network, "sites": sites])
    let reply = try location.call { try $0.request(.POST, "/v1/extensions", body: body) }
    var status = try APICoding.decoder.decode(ExtensionStatus.self, from: reply.body)
    if wait {
      let deadline = Date().addingTimeInterval(timeout)
      while status.members.contains(where: { $0.state != .joined }) && Date() < deadline {
        usleep(200_000)
        status = try location.call { try $0.get("/v1/extensions/\(status.id)", as: ExtensionStatus.self) }
      }
    }
    if json { return print(String(decoding: try APICoding.encoder.encode(status), as: UTF8.self)) }
    print(ExtensionTable.render([status]))
  }
}

struct ExtensionsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "extensions",
    abstract: "Extensions this site owns or is a member of, with each member's state.")
  @OptionGroup var location: DaemonLocation
  @Flag(
    help: "JSON: {\"extensions\":[{id,owner,network,vni,route_target,members,role,generation,deleting}]}.")
  var json = false

  func run() throws {
    let reply = try location.get("/v1/extensions")
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    print(ExtensionTable.render(try APICoding.decoder.decode(ExtensionList.self, from: reply).extensions))
  }
}

struct ShowExtensions: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "extensions", abstract: "Same as `vxswitch extensions`.")
  @OptionGroup var location: DaemonLocation
  @Flag(help: "JSON, as `vxswitch extensions --json`.") var json = false

  func run() throws {
    var command = ExtensionsCommand()
    command.location = location
    command.json = json
    try command.run()
  }
}

struct UnextendCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "unextend", abstract: "Delete an extension everywhere (on its owner site).")
  @OptionGroup var location: DaemonLocation
  @Argument(help: "The extension's identifier.") var id: String

  func run() throws {
    try location.call { try $0.request(.DELETE, "/v1/extensions/\(id)") }
    print("extension \(id): members are being removed")
  }
}

struct ShowNetworks: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "networks", abstract: "Named networks.")
  @OptionGroup var location: DaemonLocation
  @Flag(help: "JSON: {\"networks\":[{name,vni,ports,origin,extended,route_target}]}.") var json = false

  func run() throws {
    let reply = try location.get("/v1/networks")
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    var table = [["network", "vni", "ports", "origin", "extension"]]
    for row in try APICoding.decoder.decode(NetworkList.self, from: reply).networks {
      table.append([
        row.name, "\(row.vni)", row.ports.joined(separator: ","), row.origin.rawValue,
        row.extended ? "rt \(row.routeTarget ?? "?")" : "-",
      ])
    }
    print(TextTable.render(table))
  }
}

enum ExtensionTable {
  static func render(_ extensions: [ExtensionStatus]) -> String {
    var table = [["extension", "network", "vni", "rt", "role", "member", "state", "vtep", "reason"]]
    for status in extensions {
      for (index, member) in status.members.enumerated() {
        let first = index == 0
        table.append([
          first ? status.id.rawValue + (status.deleting ? " (deleting)" : "") : "",
          first ? status.network : "",
          first ? status.vni.map { "\($0)" } ?? "-" : "", first ? status.routeTarget ?? "-" : "",
          first ? status.role : "", member.site, member.state.rawValue, member.vtep ?? "-",
          member.reason ?? "",
        ])
      }
    }
    return TextTable.render(table)
  }
}
