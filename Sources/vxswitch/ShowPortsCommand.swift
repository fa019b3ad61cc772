import API
import ArgumentParser
import Foundation
import Management

struct ShowPorts: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ports", abstract: "Ports: link state, MTU, counters, AF_PACKET ring statistics.")
  @OptionGroup var location: DaemonLocation
  @Flag(
    help: "JSON: {\"ports\":[{name,role,members,oper_state,mtu,rx_frames,rx_bytes,tx_frames,tx_bytes,ring}]}."
  )
  var json = false

  func run() throws {
    let reply = try location.get("/v1/ports")
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    let ports = try APICoding.decoder.decode(PortList.self, from: reply).ports
    var table = [
      ["port", "role", "state", "mtu", "members", "rx frames", "tx frames", "ring drops", "truncated"]
    ]
    for port in ports {
      table.append([
        port.name, port.role, port.operState ?? "-", port.mtu.map { "\($0)" } ?? "-",
        port.members.joined(separator: ","), "\(port.rxFrames)", "\(port.txFrames)",
        port.ring.map { "\($0.kernelDrops)" } ?? "-", port.ring.map { "\($0.truncatedDrops)" } ?? "-",
      ])
    }
    print(TextTable.render(table))
  }
}

struct ShowNeighbors: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "neighbors",
    abstract: "Remote VTEPs and their underlay next hops (configured, kernel, unresolved).")
  @OptionGroup var location: DaemonLocation
  @Flag(help: "JSON: {\"neighbors\":[{vtep,next_hop,mac,resolution,nud_state}]}.") var json = false

  func run() throws {
    let reply = try location.get("/v1/neighbors")
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    let neighbors = try APICoding.decoder.decode(NeighborList.self, from: reply).neighbors
    var table = [["vtep", "next hop", "mac", "resolution", "state"]]
    for neighbor in neighbors {
      table.append([
        neighbor.vtep, neighbor.nextHop ?? "-", neighbor.mac ?? "-", neighbor.resolution.rawValue,
        neighbor.nudState?.joined(separator: ",") ?? "-",
      ])
    }
    print(TextTable.render(table))
  }
}
