import ArgumentParser
import Dataplane
import Foundation

struct ReplayCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "replay",
    abstract: "Run pcap files through the switch offline; write what each port emits to DIR/PORT.pcap.")

  @Option(help: "The site's TOML configuration file.") var config: String
  @Option(
    name: .customLong("in"), help: "PORT=FILE.pcap: frames entering PORT (repeatable; merged by timestamp).")
  var inputs: [String] = []
  @Option(name: .customLong("out-dir"), help: "Directory for PORT.pcap output files.") var outDir: String
  @Flag(help: "Print the counters as JSON.") var json = false

  func validate() throws {
    if inputs.isEmpty { throw ValidationError("give at least one --in PORT=FILE.pcap") }
    for input in inputs where !input.contains("=") || input.hasPrefix("=") || input.hasSuffix("=") {
      throw ValidationError("--in takes PORT=FILE.pcap, got '\(input)'")
    }
  }

  func run() throws {
    let site = try loadConfigOrExit(config)
    let parsed = inputs.map { input -> Replay.Input in
      let parts = input.split(separator: "=", maxSplits: 1)
      return Replay.Input(port: String(parts[0]), path: String(parts[1]))
    }
    let report: Replay.Report
    do {
      report = try Replay(config: site, inputs: parsed, outputDirectory: outDir).run()
    } catch let failure as Replay.Failure {
      printError("vxswitch replay: \(failure)")
      throw ExitCode(1)
    }
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      encoder.keyEncodingStrategy = .convertToSnakeCase
      print(String(decoding: try encoder.encode(report), as: UTF8.self))
      return
    }
    print(TextTable.report(report))
    for port in report.ports where port.txFrames > 0 { print("wrote \(port.output ?? port.name)") }
  }
}
