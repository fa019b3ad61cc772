/// TOML integer literals: `42`, `-17`, `1_000_000`, `0xDEAD_BEEF`, `0o755`, `0b1010`.
///
/// Kept apart from the parser because it also explains near misses (floats, dates, unquoted
/// words), which is most of what a user who wrote a bad value needs to hear.
enum TOMLIntegerSyntax {
  enum Result: Equatable {
    case value(Int64)
    case outOfRange
    case invalid
  }

  static func parse(_ token: String) -> Result {
    let bytes = Array(token.utf8)
    var digits = bytes[...]
    var radix: UInt64 = 10
    var isNegative = false
    if bytes.count > 2, bytes[0] == UInt8(ascii: "0"), let prefixRadix = radixPrefixes[bytes[1]] {
      radix = prefixRadix
      digits = bytes[2...]
    } else {
      if let sign = digits.first, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
        isNegative = sign == UInt8(ascii: "-")
        digits = digits.dropFirst()
      }
      // TOML forbids leading zeros so that `010` cannot be mistaken for octal.
      if digits.count > 1, digits.first == UInt8(ascii: "0") { return .invalid }
    }
    let underscore = UInt8(ascii: "_")
    guard let first = digits.first, let last = digits.last, first != underscore, last != underscore
    else { return .invalid }

    var magnitude: UInt64 = 0
    var overflowed = false
    var previousWasUnderscore = false
    for byte in digits {
      if byte == underscore {
        if previousWasUnderscore { return .invalid }
        previousWasUnderscore = true
        continue
      }
      previousWasUnderscore = false
      guard let digit = digitValue(byte), digit < radix else { return .invalid }
      let (shifted, multiplyOverflow) = magnitude.multipliedReportingOverflow(by: radix)
      let (sum, addOverflow) = shifted.addingReportingOverflow(digit)
      overflowed = overflowed || multiplyOverflow || addOverflow
      magnitude = sum
    }
    if overflowed { return .outOfRange }
    let limit = UInt64(Int64.max) + (isNegative ? 1 : 0)
    guard magnitude <= limit else { return .outOfRange }
    if isNegative {
      return .value(magnitude == limit ? Int64.min : -Int64(magnitude))
    }
    return .value(Int64(magnitude))
  }

  /// Why a bare token that is not `true`, `false` or an integer was rejected.
  static func explainInvalid(_ token: String) -> String {
    let shown = token.count > 40 ? String(token.prefix(40)) + "…" : token
    let bytes = Array(token.utf8)
    let unsigned =
      bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") ? bytes.dropFirst() : bytes[...]
    let startsWithDigit = unsigned.first.map(isDecimalDigit) ?? false
    if matches(bytes, pattern: "dddd-dd") || matches(bytes, pattern: "dd:dd") {
      return "dates and times are not supported (found \(shown))"
    }
    if ["inf", "nan"].contains(String(decoding: unsigned, as: UTF8.self))
      || (startsWithDigit && !token.hasPrefix("0x") && unsigned.contains { "eE.".utf8.contains($0) })
    {
      return "floating-point numbers are not supported (found \(shown))"
    }
    if let first = bytes.first, isLetter(first) {
      return "invalid value \(shown) (strings must be quoted)"
    }
    return "invalid value \(shown)"
  }

  private static let radixPrefixes: [UInt8: UInt64] = [
    UInt8(ascii: "x"): 16, UInt8(ascii: "o"): 8, UInt8(ascii: "b"): 2,
  ]

  private static func digitValue(_ byte: UInt8) -> UInt64? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt64(byte - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt64(byte - UInt8(ascii: "A") + 10)
    default: nil
    }
  }

  private static func isDecimalDigit(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
  }

  private static func isLetter(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
  }

  /// Whether `bytes` starts with `pattern`, where `d` stands for any decimal digit.
  private static func matches(_ bytes: [UInt8], pattern: String) -> Bool {
    let pattern = Array(pattern.utf8)
    guard bytes.count >= pattern.count else { return false }
    return zip(bytes, pattern).allSatisfy { byte, expected in
      expected == UInt8(ascii: "d") ? isDecimalDigit(byte) : byte == expected
    }
  }
}
