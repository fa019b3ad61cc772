import ArgumentParser
import Dataplane
import Foundation

@main
struct VXSwitchCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "vxswitch",
    abstract: "A userspace VXLAN switch: per-site forwarding daemon, offline replay and lab.",
    subcommands: [
      CheckConfigCommand.self, RunCommand.self, ReplayCommand.self, ShowCommand.self, ClearCommand.self,
      MacCommand.self, FloodCommand.self, ReloadCommand.self, ExtendCommand.self, ExtensionsCommand.self,
      UnextendCommand.self,
      LabCommand.self,
      LabTransferCommand.self,
      PKICommand.self,
    ])
}

/// Loads a configuration or exits with its errors, one `FILE:LINE: message` per line.
func loadConfigOrExit(_ path: String) throws -> SiteConfig {
  do {
    return try SiteConfig.load(path: path)
  } catch let errors as ConfigErrors {
    printError(errors.description)
    throw ExitCode(1)
  } catch {
    printError("\(path): \(error)")
    throw ExitCode(1)
  }
}

func printError(_ message: String) {
  var standardError = StandardError()
  print(message, to: &standardError)
}

struct StandardError: TextOutputStream {
  mutating func write(_ string: String) {
    FileHandle.standardError.write(Data(string.utf8))
  }
}
