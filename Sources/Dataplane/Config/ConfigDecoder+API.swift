extension ConfigDecoder {
  static let apiKeys = ConfigSchema.allowedKeys(in: "api")

  /// `[api]`; nil when `listen` or `token_file` is missing or invalid.
  func decodeAPI(_ table: ConfigTableReader) -> SiteConfig.API? {
    table.rejectUnknownKeys(allowed: Self.apiKeys)
    let listen = table.string("listen", required: true).flatMap { text -> (host: IPAddress, port: UInt16)? in
      switch ConfigSyntax.listenAddress(text.value) {
      case .success(let address): return address
      case .failure(let problem):
        report(problem.message, line: text.line)
        return nil
      }
    }
    let tokenFile = table.string("token_file", required: true).flatMap { path -> String? in
      guard !path.value.isEmpty, !path.value.utf8.contains(0) else {
        report("token_file must be a non-empty path", line: path.line)
        return nil
      }
      return path.value
    }
    guard let listen, let tokenFile else { return nil }
    return SiteConfig.API(listenHost: listen.host, listenPort: listen.port, tokenFile: tokenFile)
  }
}
