/// Typed access to one table of a configuration file.
///
/// Each accessor reports a missing required key, a wrong type or an out-of-range value to the
/// shared diagnostics and then answers nil, so the caller simply skips that field and decoding
/// goes on to find the next problem.
struct ConfigTableReader {
  let table: TOMLTable
  /// How the table is named in messages: `[site]`, `[[bgp.peer]]`.
  let name: String
  let diagnostics: ConfigDiagnostics

  func report(_ message: String, line: Int) { diagnostics.report(message, line: line) }

  /// Reports every key not in `allowed`, so a misspelt key is an error rather than a silently
  /// ignored setting.
  func rejectUnknownKeys(allowed: Set<String>) {
    for entry in table.entries where !allowed.contains(entry.key) {
      report("unknown key \(ConfigSyntax.quoted(entry.key)) in \(name)", line: entry.value.line)
    }
  }

  func contains(_ key: String) -> Bool { table[key] != nil }

  /// The raw value, after reporting it missing when `required`.
  func value(_ key: String, required: Bool = false) -> TOMLValue? {
    guard let value = table[key] else {
      if required { report("missing required key '\(key)' in \(name)", line: table.line) }
      return nil
    }
    return value
  }

  func string(_ key: String, required: Bool = false) -> Located<String>? {
    guard let value = value(key, required: required) else { return nil }
    guard let string = value.string else {
      report("\(key) must be a string", line: value.line)
      return nil
    }
    return Located(value: string, line: value.line)
  }

  func boolean(_ key: String) -> Located<Bool>? {
    guard let value = value(key) else { return nil }
    guard let boolean = value.boolean else {
      report("\(key) must be true or false", line: value.line)
      return nil
    }
    return Located(value: boolean, line: value.line)
  }

  func integer(_ key: String, required: Bool = false) -> Located<Int64>? {
    guard let value = value(key, required: required) else { return nil }
    guard let integer = value.integer else {
      report("\(key) must be an integer", line: value.line)
      return nil
    }
    return Located(value: integer, line: value.line)
  }

  func integer(_ key: String, in range: ClosedRange<Int64>, required: Bool = false) -> Located<Int64>? {
    guard let integer = integer(key, required: required) else { return nil }
    guard range.contains(integer.value) else {
      report("\(key) must be \(Self.describe(range)) (got \(integer.value))", line: integer.line)
      return nil
    }
    return integer
  }

  func array(_ key: String) -> Located<[TOMLValue]>? {
    guard let value = value(key) else { return nil }
    guard let array = value.array else {
      report("\(key) must be an array", line: value.line)
      return nil
    }
    return Located(value: array, line: value.line)
  }

  /// The string elements of an array; other elements are reported and left out.
  func strings(_ key: String) -> [Located<String>]? {
    guard let array = array(key) else { return nil }
    return array.value.compactMap { element in
      guard let string = element.string else {
        report("\(key) entries must be strings", line: element.line)
        return nil
      }
      return Located(value: string, line: element.line)
    }
  }

  func ipAddress(_ key: String, required: Bool = false) -> Located<IPAddress>? {
    guard let text = string(key, required: required) else { return nil }
    guard let address = ConfigSyntax.ipAddress(text.value) else {
      report(
        "\(key) must be an IPv4 or IPv6 address (got \(ConfigSyntax.quoted(text.value)))", line: text.line)
      return nil
    }
    return Located(value: address, line: text.line)
  }

  /// A MAC address that may appear as a source or FDB entry: unicast and not all zeros.
  func unicastMACAddress(_ key: String, required: Bool = false) -> Located<MACAddress>? {
    guard let text = string(key, required: required) else { return nil }
    guard let address = ConfigSyntax.macAddress(text.value) else {
      report(
        "\(key) must be a MAC address like 02:00:00:00:00:01 (got \(ConfigSyntax.quoted(text.value)))",
        line: text.line)
      return nil
    }
    guard !address.isMulticast, address != .zero else {
      report("\(key) must be a unicast address (got \(address))", line: text.line)
      return nil
    }
    return Located(value: address, line: text.line)
  }

  /// The tables of an array of tables such as `[[neighbor]]`; `displayName` names the header.
  func arrayOfTables(_ key: String, displayName: String) -> [ConfigTableReader] {
    guard let value = value(key) else { return [] }
    guard let elements = value.array else {
      report("\(key) must be an array of tables, written \(displayName)", line: value.line)
      return []
    }
    return elements.compactMap { element in
      guard let table = element.table else {
        report("\(key) must be an array of tables, written \(displayName)", line: element.line)
        return nil
      }
      return ConfigTableReader(table: table, name: displayName, diagnostics: diagnostics)
    }
  }

  /// A single sub-table such as `[bgp]`.
  func subTable(_ key: String, displayName: String) -> ConfigTableReader? {
    guard let value = value(key) else { return nil }
    guard let table = value.table else {
      report("\(key) must be a table, written \(displayName)", line: value.line)
      return nil
    }
    return ConfigTableReader(table: table, name: displayName, diagnostics: diagnostics)
  }

  private static func describe(_ range: ClosedRange<Int64>) -> String {
    range.upperBound == .max
      ? "at least \(range.lowerBound)" : "between \(range.lowerBound) and \(range.upperBound)"
  }
}
