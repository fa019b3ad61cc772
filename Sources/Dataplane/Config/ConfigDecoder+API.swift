extension ConfigDecoder {
  static let apiKeys = ConfigSchema.allowedKeys(in: "api")
  /// `rate_limit` of `[api]` and `[peering]`: requests a second per client, 0 for none.
  static let rateLimitRange: ClosedRange<Int64> = 0...1_000_000

  /// `[api]`; nil when `listen` or `token_file` is missing or invalid.
  func decodeAPI(_ table: ConfigTableReader) -> SiteConfig.API? {
    table.rejectUnknownKeys(allowed: Self.apiKeys)
    let listen = decodeListen(table)
    let tokenFile = decodePath(table, "token_file")
    let rateLimit = table.integer("rate_limit", in: Self.rateLimitRange)
    guard let listen, let tokenFile else { return nil }
    var api = SiteConfig.API(listenHost: listen.host, listenPort: listen.port, tokenFile: tokenFile)
    if let rateLimit { api.rateLimit = Int(rateLimit.value) }
    return api
  }
}
