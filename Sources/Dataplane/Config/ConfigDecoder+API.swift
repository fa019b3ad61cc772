extension ConfigDecoder {
  static let apiKeys = ConfigSchema.allowedKeys(in: "api")

  /// `[api]`; nil when `listen` or `token_file` is missing or invalid.
  func decodeAPI(_ table: ConfigTableReader) -> SiteConfig.API? {
    table.rejectUnknownKeys(allowed: Self.apiKeys)
    let listen = decodeListen(table)
    let tokenFile = decodePath(table, "token_file")
    guard let listen, let tokenFile else { return nil }
    return SiteConfig.API(listenHost: listen.host, listenPort: listen.port, tokenFile: tokenFile)
  }
}
