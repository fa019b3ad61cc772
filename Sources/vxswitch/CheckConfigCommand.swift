import ArgumentParser
import Dataplane

struct CheckConfigCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check-config",
    abstract: "Validate a site configuration; errors print as FILE:LINE: message.")

  @Argument(help: "The site's TOML configuration file.") var file: String

  func run() throws {
    let config = try loadConfigOrExit(file)
    let ports = Set(config.bridgeDomains.flatMap(\.ports))
    let vteps = Set(config.bridgeDomains.flatMap(\.flood))
    print(
      "\(file): ok: site \(config.site.name), VTEP \(config.site.vtep) on \(config.site.underlay), "
        + "\(config.bridgeDomains.count) bridge domain(s), \(ports.count) port member(s), "
        + "\(vteps.count) flood VTEP(s), \(config.staticMACs.count) static MAC(s)"
        + (config.bgp.map { ", BGP AS \($0.asn) with \($0.peers.count) peer(s)" } ?? "")
        + (config.peering.map {
          ", site-to-site channel on port \($0.listenPort) with \(config.sitePeers.count) site peer(s)"
        }
          ?? ""))
  }
}
