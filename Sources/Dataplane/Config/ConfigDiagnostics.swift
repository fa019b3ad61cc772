/// Collects the problems found while decoding one file.
///
/// A reference type so that the readers of every table, and the cross-checks between tables,
/// add to one list without threading it through each call.
final class ConfigDiagnostics {
  let file: String
  private(set) var errors: [ConfigError] = []

  init(file: String) { self.file = file }

  func report(_ message: String, line: Int) {
    errors.append(ConfigError(file: file, line: line, message: message))
  }

  /// The errors in line order; problems found on the same line keep the order they were found.
  var errorsInLineOrder: [ConfigError] {
    errors.enumerated().sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }.map(\.element)
  }
}

/// A decoded value together with the line it was written on, for later cross-checks whose
/// messages must still point at the right line.
struct Located<Value> {
  var value: Value
  var line: Int
}
