import API
import ControlShim
import Dataplane
import Foundation
import Management

extension Lab {
  /// `--partition`: site 2 is cut off the backbone (its backbone link goes down); traffic
  /// inside site 2 and inside site 1 goes on without loss, site 1 no longer reaches site
  /// 2, and site 2 keeps accepting local changes. The cut outlasts the hold time (9 s)
  /// and the graceful-restart time (`stale_time = 3`): the sessions go down and each side
  /// keeps the other's routes as long-lived stale (RFC 9494), still forwarding toward the
  /// other site's VTEP. While cut, a VM of site 2 takes an IPv4 and an IPv6 address a VM
  /// of site 1 uses (another MAC). The cut heals: site 1 reaches site 2 again with no
  /// command, the routes are fresh again, and both sites report the same two address
  /// conflicts with the same winners, suppression answering for neither binding; the VM
  /// leaves (its addresses removed, its link down) and the conflicts clear at both sites
  /// when its MAC ages out.
  func partitionChecks() -> [CheckResult] {
    let t = topology
    let cut = 2
    var results: [CheckResult] = []
    func loss(_ source: (Int, Int), _ destination: (Int, Int)) -> String {
      let output =
        (try? Shell.inNamespace(
          t.vmNamespace(source.0, source.1),
          ["ping", "-c", "20", "-i", "0.05", "-W", "1", "-q", t.vmAddress(destination.0, destination.1)]))
        ?? "100% packet loss"
      return output.split(separator: "\n").first { $0.contains("packet loss") }.map(String.init) ?? output
    }
    func reaches(_ source: (Int, Int), _ destination: (Int, Int), within seconds: Double) -> Bool {
      let deadline = Date().addingTimeInterval(seconds)
      repeat {
        if Shell.succeeds([
          "ip", "netns", "exec", t.vmNamespace(source.0, source.1), "ping", "-c", "1", "-W", "1", "-q",
          t.vmAddress(destination.0, destination.1),
        ]) {
          return true
        }
      } while Date() < deadline
      return false
    }
    func conflicts(_ site: Int) -> [AddressConflict] {
      api(site, "/v1/conflicts").flatMap { try? APICoding.decoder.decode(ConflictList.self, from: $0) }?
        .conflicts ?? []
    }
    // The BGP status spells its keys out (no snake-case conversion).
    func session(_ site: Int, with other: Int) -> PeerStatus? {
      api(site, "/v1/bgp").flatMap { try? JSONDecoder().decode(SpeakerStatus.self, from: $0) }?
        .peers.first { $0.name == "site-\(other)" }
    }
    func remoteEntries(_ site: Int, of other: Int) -> [FDBRow] {
      (api(site, "/v1/fdb").flatMap { try? APICoding.decoder.decode(FDBList.self, from: $0) }?.entries ?? [])
        .filter { $0.vtep == t.vtep(other) }
    }
    func bindings(_ site: Int) -> [ARPRow] {
      api(site, "/v1/arp").flatMap { try? APICoding.decoder.decode(ARPList.self, from: $0) }?.entries ?? []
    }
    func poll(seconds: Double, _ condition: () -> Bool) -> Bool {
      let deadline = Date().addingTimeInterval(seconds)
      while !condition() {
        if Date() >= deadline { return false }
        usleep(250_000)
      }
      return true
    }
    func address6(_ site: Int, _ vm: Int) -> String { "fd10::\(site * 10 + vm)" }

    // IPv6 on the VMs of sites 1 and 2; site 1's vm2 uses its address, so that site 2
    // holds that binding from site 1's MAC/IP route before the cut.
    for site in [1, cut] {
      for vm in 1...2 {
        _ = try? Shell.inNamespace(
          t.vmNamespace(site, vm),
          ["ip", "-6", "addr", "add", "\(address6(site, vm))/64", "dev", "eth0", "nodad"])
      }
    }
    let contested6 = address6(1, 2)
    let known = poll(seconds: 20) {
      _ = Shell.succeeds([
        "ip", "netns", "exec", t.vmNamespace(1, 2), "ping", "-6", "-c", "1", "-W", "1", "-q", address6(1, 1),
      ])
      return bindings(cut).contains { $0.ip == contested6 }
    }
    results.append(
      CheckResult(
        name: "site \(cut) holds site 1's IPv6 binding \(contested6) from its MAC/IP route", passed: known,
        detail: known ? "" : "not in site \(cut)'s bindings within 20 s"))
    let remoteBefore = remoteEntries(1, of: cut).count

    _ = try? Shell.inNamespace(t.backbone, ["ip", "link", "set", "s\(cut)", "down"])
    let inside = loss((cut, 1), (cut, 2))
    let rest = loss((1, 1), (1, 2))
    results.append(
      CheckResult(
        name: "site \(cut) cut off the backbone: traffic inside site \(cut) and inside site 1 goes on",
        passed: inside.contains(" 0% packet loss") && rest.contains(" 0% packet loss"),
        detail: "site \(cut): \(inside); site 1: \(rest)"))
    results.append(
      CheckResult(
        name: "while cut: site 1 no longer reaches site \(cut)",
        passed: !reaches((1, 1), (cut, 1), within: 0),
        detail: ""))
    let body = try? JSONSerialization.data(withJSONObject: ["name": "net-cut", "vni": 900])
    var created = "no answer"
    do {
      let reply = try APIClient(.unixSocket(t.socketPath(cut))).request(.POST, "/v1/networks", body: body)
      created = "HTTP \(reply.status)"
    } catch {
      created = "\(error)"
    }
    results.append(
      CheckResult(
        name: "while cut: site \(cut) accepts local changes (a new network through its API)",
        passed: created == "HTTP 201", detail: created))

    // A VM of the cut site takes the addresses of site 1's vm2, and uses them (its ARP
    // request and neighbour solicitation carry the bindings to its switch).
    let contested = t.vmAddress(1, 2)
    let intruder = t.vmNamespace(cut, 2)
    _ = try? Shell.inNamespace(intruder, ["ip", "addr", "add", "\(contested)/32", "dev", "eth0"])
    _ = try? Shell.inNamespace(
      intruder, ["ip", "-6", "addr", "add", "\(contested6)/128", "dev", "eth0", "nodad"])
    // Forget the neighbours, so that the pings start with an ARP request (a neighbour
    // solicitation) from the address.
    _ = try? Shell.inNamespace(intruder, ["ip", "neigh", "flush", "dev", "eth0"])
    _ = try? Shell.inNamespace(intruder, ["ip", "-6", "neigh", "flush", "dev", "eth0"])
    _ = Shell.succeeds([
      "ip", "netns", "exec", intruder, "ping", "-c", "1", "-W", "1", "-I", contested, t.vmAddress(cut, 1),
    ])
    _ = Shell.succeeds([
      "ip", "netns", "exec", intruder, "ping", "-6", "-c", "1", "-W", "1", "-I", contested6, address6(cut, 1),
    ])

    // Longer than the hold time and the graceful-restart time: both sides keep the
    // other's routes as long-lived stale, and site 1 still forwards to site 2's VMs.
    var phases: [Int: PeerStatus] = [:]
    let longLived = poll(seconds: 60) {
      for (site, other) in [(1, cut), (cut, 1)] { phases[site] = session(site, with: other) }
      return phases.values.count == 2 && phases.values.allSatisfy { $0.stalePhase == .longLived }
    }
    results.append(
      CheckResult(
        name:
          "cut longer than the graceful-restart time: both sites keep the other's routes long-lived stale",
        passed: longLived && phases.values.allSatisfy { ($0.routesLongLivedStale ?? 0) > 0 },
        detail: [1, cut].map { site in
          phases[site].map {
            "site \(site): \($0.state.rawValue), phase \($0.stalePhase?.rawValue ?? "none"), \($0.routesLongLivedStale ?? 0) llgr-stale"
          } ?? "site \(site): no session"
        }.joined(separator: "; ")))
    // `vxswitch show bgp` at site 1: the peer's capabilities and stale column say so.
    let shown =
      api(1, "/v1/bgp").flatMap { try? JSONDecoder().decode(SpeakerStatus.self, from: $0) }.map(TextTable.bgp)
      ?? ""
    let row = shown.split(separator: "\n").first { $0.hasPrefix("site-\(cut) ") }.map(String.init) ?? ""
    let metrics = api(1, "/metrics").map { String(decoding: $0, as: UTF8.self) } ?? ""
    let metric =
      metrics.split(separator: "\n").first {
        $0.hasPrefix("vxswitch_bgp_routes_stale{") && $0.contains("peer=\"site-\(cut)\"")
          && $0.contains("phase=\"long_lived\"")
      }.map(String.init) ?? "no vxswitch_bgp_routes_stale for site-\(cut), long_lived"
    results.append(
      CheckResult(
        name: "show bgp and the metrics at site 1 mark site \(cut)'s routes long-lived stale",
        passed: row.contains("(llgr)") && row.contains(",llgr")
          && (Double(metric.split(separator: " ").last ?? "") ?? 0) > 0,
        detail: (row.isEmpty
          ? "no row for site-\(cut):\n\(shown)" : row.split(separator: " ").joined(separator: " "))
          + "; " + metric))
    let remoteDuring = remoteEntries(1, of: cut).count
    let encapsulated = capture(
      in: t.backbone, interface: "s1",
      filter: ["udp", "and", "dst", "host", t.vtep(cut), "and", "dst", "port", "\(t.udpPort)"], packets: 3
    ) {
      _ = Shell.succeeds([
        "ip", "netns", "exec", t.vmNamespace(1, 1), "ping", "-c", "5", "-i", "0.2", "-W", "1", "-q",
        t.vmAddress(cut, 1),
      ])
    }
    results.append(
      CheckResult(
        name: "while long-lived stale: site 1 keeps site \(cut)'s VMs and sends their traffic to its VTEP",
        passed: remoteDuring > 0 && remoteDuring == remoteBefore && encapsulated,
        detail:
          "site 1 FDB entries behind \(t.vtep(cut)): \(remoteBefore) before the cut, \(remoteDuring) now; "
          + "encapsulated frames to \(t.vtep(cut)) on the backbone: \(encapsulated ? "seen" : "none")"))

    _ = try? Shell.inNamespace(t.backbone, ["ip", "link", "set", "s\(cut)", "up"])
    let healed = reaches((1, 1), (cut, 1), within: 90)
    results.append(
      CheckResult(
        name: "healed: site 1 reaches site \(cut) again by itself", passed: healed,
        detail: healed ? "" : "no reply within 90 s"))
    var fresh: [Int: PeerStatus] = [:]
    let refreshed = poll(seconds: 60) {
      for (site, other) in [(1, cut), (cut, 1)] { fresh[site] = session(site, with: other) }
      return fresh.values.count == 2
        && fresh.values.allSatisfy {
          $0.state == .established && $0.stalePhase == nil && ($0.routesLongLivedStale ?? 0) == 0
            && $0.routesAccepted > 0
        }
    }
    results.append(
      CheckResult(
        name: "healed: the routes are fresh again at both sites, none long-lived stale", passed: refreshed,
        detail: [1, cut].map { site in
          fresh[site].map {
            "site \(site): \($0.state.rawValue), phase \($0.stalePhase?.rawValue ?? "none"), \($0.routesLongLivedStale ?? 0) llgr-stale, \($0.routesAccepted) accepted"
          } ?? "site \(site): no session"
        }.joined(separator: "; ")))

    // Both sites see the same pair of claims and apply the same rule; neither binding is
    // answered for (ARP and ND suppression off for the address, `conflict` in the table).
    for address in [contested, contested6] {
      var seen: [Int: AddressConflict] = [:]
      _ = poll(seconds: 60) {
        for site in [1, cut] {
          seen[site] = conflicts(site).first { $0.kind == .ip && $0.ip == address }
        }
        return seen.count == 2
      }
      let winners = [1, cut].compactMap { seen[$0]?.claims.first(where: \.winner)?.mac }
      let answered = [1, cut].filter { site in
        bindings(site).contains { $0.ip == address && $0.conflict != true }
      }
      results.append(
        CheckResult(
          name: "address conflict on \(address) reported at site 1 and site \(cut) with the same outcome",
          passed: winners.count == 2 && winners[0] == winners[1] && answered.isEmpty,
          detail: [1, cut].map { site in
            seen[site].map {
              "site \(site): \($0.claims.map { "\($0.mac)\($0.winner ? " (kept)" : "")" }.joined(separator: " vs ")), rule \($0.rule.rawValue), \($0.outcome)"
            } ?? "site \(site): none"
          }.joined(separator: "; ") + (answered.isEmpty ? "" : "; still answered for at site(s) \(answered)"))
      )
    }

    // The intruder leaves: its MAC ages out at its site and the conflict clears.
    _ = try? Shell.inNamespace(intruder, ["ip", "addr", "del", "\(contested)/32", "dev", "eth0"])
    _ = try? Shell.inNamespace(intruder, ["ip", "-6", "addr", "del", "\(contested6)/128", "dev", "eth0"])
    _ = try? Shell.inNamespace(intruder, ["ip", "link", "set", "eth0", "down"])
    let clearDeadline = Date().addingTimeInterval(120)
    func stillReported() -> [Int] {
      [1, cut].filter { site in conflicts(site).contains { $0.ip == contested || $0.ip == contested6 } }
    }
    var remaining = stillReported()
    while !remaining.isEmpty && Date() < clearDeadline {
      usleep(1_000_000)
      remaining = stillReported()
    }
    _ = try? Shell.inNamespace(intruder, ["ip", "link", "set", "eth0", "up"])
    results.append(
      CheckResult(
        name: "the VM left: both conflicts cleared at both sites with no command", passed: remaining.isEmpty,
        detail: remaining.isEmpty ? "" : "still reported at site(s) \(remaining)"))
    return results
  }
}

extension Lab {
  /// Runs `body` while tcpdump watches `interface` in `namespace`; whether `packets`
  /// frames matching `filter` were seen (tcpdump stops at that count, or after 10 s).
  func capture(
    in namespace: String, interface: String, filter: [String], packets: Int, while body: () -> Void
  ) -> Bool {
    let log = NSTemporaryDirectory() + "vxswitch-lab-capture-\(getpid()).log"
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: log) }
    guard let handle = try? FileHandle(forWritingTo: URL(fileURLWithPath: log)) else { return false }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments =
      [
        "ip", "netns", "exec", namespace, "timeout", "10", "tcpdump", "-i", interface, "-n", "-p", "-l", "-c",
        "\(packets)",
      ]
      + filter
    process.standardOutput = handle
    process.standardError = handle
    process.standardInput = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    // tcpdump says when it listens: only then is the traffic sent.
    let ready = Date().addingTimeInterval(5)
    while Date() < ready,
      !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("listening on")
    {
      usleep(50_000)
    }
    body()
    process.waitUntilExit()
    return process.terminationStatus == 0
  }
}
