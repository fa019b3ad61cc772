import API
import ArgumentParser
import Dataplane
import Foundation
import Management

struct ShowPorts: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ports", abstract: "Ports: link state, MTU, port type, counters, ring statistics.")
  @OptionGroup var location: DaemonLocation
  @Flag(
    help:
      "JSON: {\"ports\":[{name,role,members,oper_state,mtu,io,stack_bypass,offload_tap,vm_mtu,rx_frames,rx_bytes,tx_frames,tx_bytes,ring}]}."
  )
  var json = false

  func run() throws {
    let reply = try location.get("/v1/ports")
    if json { return print(String(decoding: reply, as: UTF8.self)) }
    let ports = try APICoding.decoder.decode(PortList.self, from: reply).ports
    var table = [
      [
        "port", "role", "state", "mtu", "vm mtu", "io", "tap", "members", "rx frames", "tx frames",
        "in place", "super-frames", "ring drops", "truncated",
      ]
    ]
    for port in ports {
      table.append([
        port.name, port.role, port.operState ?? "-", port.mtu.map { "\($0)" } ?? "-",
        port.vmMTU.map { "\($0)" } ?? "-", (port.io ?? "-") + (port.stackBypass == true ? "+tcx" : ""),
        port.offloadTap ?? "-", port.members.joined(separator: ","), "\(port.rxFrames)", "\(port.txFrames)",
        port.io == PortIO.afXDP.rawValue ? port.ring.map { "\($0.sentInPlace)" } ?? "-" : "-",
        port.ring.map { "\($0.superFrames)" } ?? "-",
        port.ring.map { "\($0.kernelDrops)" } ?? "-", port.ring.map { "\($0.truncatedDrops)" } ?? "-",
      ])
    }
    print(TextTable.render(table))
    print(
      "vm mtu: the largest MTU a VM may use behind the port (underlay MTU less 50 bytes over IPv4, 70 over IPv6);"
    )
    print("larger frames get ICMP Fragmentation Needed / Packet Too Big (IPv4 with DF, IPv6) or are dropped.")
    if ports.contains(where: { $0.offloadTap != nil }) {
      print(
        "tap: super-frames go through this tap (offload_tap): the kernel cuts them toward the underlay, or takes coalesced TCP toward a VM."
      )
    }
    if ports.contains(where: { $0.io == PortIO.afXDP.rawValue }) {
      print(
        "in place: AF_XDP frames sent from the chunk another port of the worker received them in (one UMEM), not copied."
      )
    }
    if ports.contains(where: { $0.stackBypass == true }) {
      print(
        "+tcx: the underlay's VXLAN datagrams end at tc ingress once the switch has them (not up the host's stack)."
      )
    }
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
