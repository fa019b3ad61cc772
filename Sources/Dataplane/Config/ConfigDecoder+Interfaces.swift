extension ConfigDecoder {
  static let interfaceKeys = ConfigSchema.allowedKeys(in: "interface")

  /// `[[interface]]`: per-interface settings (the port type, the offload tap), one table per interface name.
  /// An interface without a table keeps the defaults; a table for an interface no bridge
  /// domain uses yet is kept, for ports added later through the API.
  func decodeInterfaces(_ tables: [ConfigTableReader]) -> [SiteConfig.InterfaceSettings] {
    var lineByName: [String: Int] = [:]
    var settings: [SiteConfig.InterfaceSettings] = []
    for table in tables {
      table.rejectUnknownKeys(allowed: Self.interfaceKeys)
      guard let name = table.string("name", required: true) else { continue }
      guard ConfigSyntax.isValidInterfaceName(name.value) else {
        report(
          "interface name must be a Linux interface name, \(ConfigSyntax.interfaceNameRule) "
            + "(got \(ConfigSyntax.quoted(name.value)))", line: name.line)
        continue
      }
      if let firstLine = lineByName[name.value] {
        report("interface \(name.value) is already configured on line \(firstLine)", line: name.line)
        continue
      }
      lineByName[name.value] = name.line
      var entry = SiteConfig.InterfaceSettings(name: name.value)
      if let value = table.value("io") {
        if let word = value.string, let io = PortIO(rawValue: word) {
          entry.io = io
        } else {
          let words = PortIO.allCases.map(\.rawValue).joined(separator: " or ")
          let got = value.string.map { " (got \(ConfigSyntax.quoted($0)))" } ?? ""
          report("io must be \(words)\(got)", line: value.line)
        }
      }
      if let offloadTap = table.boolean("offload_tap") { entry.offloadTap = offloadTap.value }
      settings.append(entry)
    }
    return settings
  }
}
