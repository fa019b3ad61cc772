/// The textual forms configuration values take beyond plain TOML types: names, addresses,
/// port members and BGP route distinguishers / targets.
public enum ConfigSyntax {
  /// Why a `"ifname[.vlan]"` string was rejected.
  struct Problem: Error {
    var message: String
  }

  /// A value that is not what its key expects, outside a configuration file.
  public struct ConfigValueError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
  }

  /// Site names end up in file names (the control socket) and log lines, hence the tight set.
  public static func isValidSiteName(_ name: String) -> Bool { isValidName(name, maximumLength: 32) }

  /// Bridge domain names: the characters of site names, up to 64 of them.
  public static func isValidBridgeDomainName(_ name: String) -> Bool { isValidName(name, maximumLength: 64) }

  /// What `isValidSiteName` / `isValidBridgeDomainName` accept, for messages.
  static func nameRule(maximumLength: Int) -> String {
    "1 to \(maximumLength) characters from A-Z a-z 0-9 _ . -"
  }

  private static func isValidName(_ name: String, maximumLength: Int) -> Bool {
    (1...maximumLength).contains(name.utf8.count)
      && name.utf8.allSatisfy { byte in
        isASCIIAlphanumeric(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
          || byte == UInt8(ascii: "-")
      }
  }

  /// The kernel's `dev_valid_name()`: 1 to 15 bytes (IFNAMSIZ less the NUL), not `.` or `..`,
  /// no `/`, `:` or whitespace; control characters are refused here as well.
  static func isValidInterfaceName(_ name: String) -> Bool {
    let bytes = Array(name.utf8)
    guard (1...15).contains(bytes.count), name != ".", name != ".." else { return false }
    return bytes.allSatisfy { byte in
      byte > 0x20 && byte != 0x7F && byte != UInt8(ascii: "/") && byte != UInt8(ascii: ":")
    }
  }

  static let interfaceNameRule = "1 to 15 bytes, without '/', ':', whitespace or control characters"

  /// `"vm1"` (untagged) or `"trunk0.10"` (VLAN 10 on trunk0, VLAN 1 to 4094).
  ///
  /// Linux interface names may themselves contain dots, so only an all-digit suffix after the
  /// last dot is read as a VLAN: `"eth0.abc"` is the interface `eth0.abc`, untagged.
  static func portMember(_ text: String) -> Result<SiteConfig.PortMember, Problem> {
    portMemberChecked(text)
  }

  /// `portMember` for other targets: the member, or the problem's message.
  public static func parsePortMember(_ text: String) -> Result<SiteConfig.PortMember, ConfigValueError> {
    portMemberChecked(text).mapError { ConfigValueError(message: $0.message) }
  }

  private static func portMemberChecked(_ text: String) -> Result<SiteConfig.PortMember, Problem> {
    var interface = text
    var vlan: UInt16? = nil
    if let dot = text.lastIndex(of: ".") {
      let suffix = text[text.index(after: dot)...]
      if !suffix.isEmpty, suffix.utf8.allSatisfy(isASCIIDigit) {
        guard suffix.utf8.count <= 4, let number = UInt16(suffix), (1...4094).contains(number) else {
          return .failure(
            Problem(message: "VLAN \(suffix) in port \(quoted(text)) is not between 1 and 4094"))
        }
        interface = String(text[..<dot])
        vlan = number
      }
    }
    guard isValidInterfaceName(interface) else {
      return .failure(
        Problem(message: "port \(quoted(text)) is not \"ifname\" or \"ifname.VLAN\" (\(interfaceNameRule))"))
    }
    return .success(SiteConfig.PortMember(interface: interface, vlan: vlan))
  }

  /// An IP address, refusing embedded NULs that the C parser underneath would silently cut at.
  static func ipAddress(_ text: String) -> IPAddress? {
    text.utf8.contains(0) ? nil : IPAddress(text)
  }

  static func macAddress(_ text: String) -> MACAddress? {
    text.utf8.contains(0) ? nil : MACAddress(text)
  }

  /// Route distinguisher or route target in one of the RFC 4364 forms: `ASN:N` with a 2-byte
  /// ASN and 4-byte N or a 4-byte ASN and 2-byte N, or `A.B.C.D:N` with a 2-byte N.
  static func isValidRouteDistinguisher(_ text: String) -> Bool {
    guard let colon = text.lastIndex(of: ":"),
      let assigned = decimal(text[text.index(after: colon)...])
    else { return false }
    let administrator = text[..<colon]
    if administrator.contains(".") {
      guard case .v4? = ipAddress(String(administrator)) else { return false }
      return assigned <= UInt64(UInt16.max)
    }
    guard let asn = decimal(administrator), asn <= UInt64(UInt32.max) else { return false }
    return asn <= UInt64(UInt16.max) ? assigned <= UInt64(UInt32.max) : assigned <= UInt64(UInt16.max)
  }

  static let routeDistinguisherForms = "\"ASN:N\" or \"A.B.C.D:N\""

  /// `"127.0.0.1:8080"` or `"[::1]:8080"`: an IPv4 address, or an IPv6 address in brackets,
  /// then a port from 1 to 65535.
  static func listenAddress(_ text: String) -> Result<(host: IPAddress, port: UInt16), Problem> {
    let form = Problem(
      message:
        "listen must be \"ADDRESS:PORT\", like \"127.0.0.1:8080\" or \"[::1]:8080\" (got \(quoted(text)))"
    )
    guard let colon = text.lastIndex(of: ":") else { return .failure(form) }
    let hostText = text[..<colon]
    let host: IPAddress
    if hostText.hasPrefix("["), hostText.hasSuffix("]"), hostText.count >= 2 {
      let inside = String(hostText.dropFirst().dropLast())
      guard let address = ipAddress(inside), !address.isIPv4 else {
        return .failure(
          Problem(message: "listen address \(quoted(inside)) in brackets must be an IPv6 address"))
      }
      host = address
    } else {
      guard let address = ipAddress(String(hostText)) else { return .failure(form) }
      guard address.isIPv4 else {
        return .failure(
          Problem(
            message: "listen address \(address) must be in brackets, like \"[\(address)]:8080\" "
              + "(got \(quoted(text)))"))
      }
      host = address
    }
    guard let port = decimal(text[text.index(after: colon)...]) else { return .failure(form) }
    guard (1...65535).contains(port) else {
      return .failure(Problem(message: "listen port must be between 1 and 65535 (got \(port))"))
    }
    return .success((host, UInt16(port)))
  }

  /// `"https://HOST:PORT"` (a trailing `/` allowed, nothing else after the port): HOST an
  /// IPv4 address, an IPv6 address in brackets, or a DNS name; PORT 1 to 65535, required.
  /// IP addresses come back in their canonical form, IPv6 without brackets.
  static func peerURL(_ text: String) -> Result<(host: String, port: UInt16), Problem> {
    let form = Problem(
      message: "url must be \"https://HOST:PORT\" with HOST an IPv4 address, an IPv6 address in "
        + "brackets or a DNS name, like \"https://192.0.2.2:7443\" (got \(quoted(text)))")
    let scheme = "https://"
    guard text.hasPrefix(scheme) else { return .failure(form) }
    var authority = text.dropFirst(scheme.count)
    if authority.hasSuffix("/") { authority = authority.dropLast() }
    guard let colon = authority.lastIndex(of: ":") else { return .failure(form) }
    let hostText = authority[..<colon]
    let host: String
    if hostText.hasPrefix("["), hostText.hasSuffix("]"), hostText.count >= 2 {
      guard let address = ipAddress(String(hostText.dropFirst().dropLast())), !address.isIPv4 else {
        return .failure(form)
      }
      host = "\(address)"
    } else if let address = ipAddress(String(hostText)), address.isIPv4 {
      host = "\(address)"
    } else {
      guard isValidDNSName(hostText) else { return .failure(form) }
      host = String(hostText)
    }
    guard let port = decimal(authority[authority.index(after: colon)...]) else { return .failure(form) }
    guard (1...65535).contains(port) else {
      return .failure(Problem(message: "url port must be between 1 and 65535 (got \(port))"))
    }
    return .success((host, UInt16(port)))
  }

  static let peerSiteNameRule =
    "a DNS name: dot-separated labels of letters, digits and '-' (no '_', no '-' at either end of a label), "
    + "not an IP address"

  /// A DNS host name (RFC 1123): dot-separated labels of 1 to 63 letters, digits and `-`, not
  /// starting or ending with `-`, at most 253 bytes; the last label is not all digits (so
  /// that a mistyped IPv4 address is not taken for a name).
  static func isValidDNSName(_ text: Substring) -> Bool {
    guard (1...253).contains(text.utf8.count) else { return false }
    let labels = text.split(separator: ".", omittingEmptySubsequences: false)
    for label in labels {
      guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-",
        label.utf8.allSatisfy({ isASCIIAlphanumeric($0) || $0 == UInt8(ascii: "-") })
      else { return false }
    }
    return !(labels.last?.utf8.allSatisfy(isASCIIDigit) ?? true)
  }

  /// Plain decimal digits only (no sign, no `_`), at most 10 of them.
  private static func decimal(_ text: Substring) -> UInt64? {
    guard (1...10).contains(text.utf8.count), text.utf8.allSatisfy(isASCIIDigit) else { return nil }
    return UInt64(text)
  }

  private static func isASCIIDigit(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
  }

  private static func isASCIIAlphanumeric(_ byte: UInt8) -> Bool {
    isASCIIDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
      || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
  }
}

extension ConfigSyntax {
  /// A user-written string as shown in a message: in single quotes, control characters escaped
  /// so they cannot garble the terminal, and cut short when long.
  static func quoted(_ text: String) -> String {
    var shown = ""
    for (index, scalar) in text.unicodeScalars.enumerated() {
      if index == 64 {
        shown += "…"
        break
      }
      if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
        shown += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
      } else {
        shown.unicodeScalars.append(scalar)
      }
    }
    return "'\(shown)'"
  }
}
