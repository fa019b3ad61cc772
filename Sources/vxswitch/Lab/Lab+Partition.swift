import API
import ControlShim
import Foundation
import Management

extension Lab {
  /// `--partition`: site 2 is cut off the backbone (its backbone link goes down); traffic
  /// inside site 2 and inside site 1 goes on without loss, site 1 no longer reaches site
  /// 2, and site 2 keeps accepting local changes. While cut, a VM of site 2 takes an IP
  /// address a VM of site 1 uses (another MAC). The cut heals: site 1 reaches site 2 again
  /// with no command, and both sites report the same address conflict with the same
  /// winner; the VM leaves (its address removed, its link down) and the conflict clears
  /// at both sites when its MAC ages out.
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

    // A VM of the cut site takes the address of site 1's vm2, and uses it (its ARP
    // request carries the binding to its switch).
    let contested = t.vmAddress(1, 2)
    let intruder = t.vmNamespace(cut, 2)
    _ = try? Shell.inNamespace(intruder, ["ip", "addr", "add", "\(contested)/32", "dev", "eth0"])
    // Forget the neighbours, so that the ping starts with an ARP request from the address.
    _ = try? Shell.inNamespace(intruder, ["ip", "neigh", "flush", "dev", "eth0"])
    _ = Shell.succeeds([
      "ip", "netns", "exec", intruder, "ping", "-c", "1", "-W", "1", "-I", contested, t.vmAddress(cut, 1),
    ])

    _ = try? Shell.inNamespace(t.backbone, ["ip", "link", "set", "s\(cut)", "up"])
    let healed = reaches((1, 1), (cut, 1), within: 90)
    results.append(
      CheckResult(
        name: "healed: site 1 reaches site \(cut) again by itself", passed: healed,
        detail: healed ? "" : "no reply within 90 s"))

    // Both sites see the same pair of claims and apply the same rule.
    var seen: [Int: AddressConflict] = [:]
    let deadline = Date().addingTimeInterval(60)
    repeat {
      for site in [1, cut] {
        seen[site] = conflicts(site).first { $0.kind == .ip && $0.ip == contested }
      }
      if seen.count == 2 { break }
      usleep(500_000)
    } while Date() < deadline
    let winners = [1, cut].compactMap { seen[$0]?.claims.first(where: \.winner)?.mac }
    results.append(
      CheckResult(
        name: "address conflict on \(contested) reported at site 1 and site \(cut) with the same outcome",
        passed: winners.count == 2 && winners[0] == winners[1],
        detail: [1, cut].map { site in
          seen[site].map {
            "site \(site): \($0.claims.map { "\($0.mac)\($0.winner ? " (kept)" : "")" }.joined(separator: " vs ")), rule \($0.rule.rawValue), \($0.outcome)"
          } ?? "site \(site): none"
        }.joined(separator: "; ")))

    // The intruder leaves: its MAC ages out at its site and the conflict clears.
    _ = try? Shell.inNamespace(intruder, ["ip", "addr", "del", "\(contested)/32", "dev", "eth0"])
    _ = try? Shell.inNamespace(intruder, ["ip", "link", "set", "eth0", "down"])
    let clearDeadline = Date().addingTimeInterval(120)
    var remaining = [1, cut].filter { site in conflicts(site).contains { $0.ip == contested } }
    while !remaining.isEmpty && Date() < clearDeadline {
      usleep(1_000_000)
      remaining = [1, cut].filter { site in conflicts(site).contains { $0.ip == contested } }
    }
    _ = try? Shell.inNamespace(intruder, ["ip", "link", "set", "eth0", "up"])
    results.append(
      CheckResult(
        name: "the VM left: the conflict cleared at both sites with no command", passed: remaining.isEmpty,
        detail: remaining.isEmpty ? "" : "still reported at site(s) \(remaining)"))
    return results
  }
}
