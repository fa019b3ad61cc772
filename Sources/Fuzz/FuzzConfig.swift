import Dataplane

/// The TOML parser and the configuration decoder, on arbitrary file contents. A decoded
/// configuration must also build a switch (what `vxswitch run` does next), and a rejected
/// one must say why, with line numbers inside the file.
final class ConfigFuzzTarget: FuzzTarget {
  func run(_ input: UnsafeRawBufferPointer) {
    // The file as `ConfigFile.contents` hands it over: bytes, decoded as UTF-8.
    let text = String(decoding: input, as: UTF8.self)
    // Lines as the parser counts them: line feeds (bytes, since "\r\n" is one Character).
    let lines = input.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
    do {
      let config = try SiteConfig.parse(text: text, file: "fuzz.toml")
      // Bounded so that a fuzzed capacity does not make every run allocate gigabytes.
      guard config.site.fdbCapacity <= 1 << 16 else { return }
      _ = SwitchCore(config: config)
    } catch let errors as ConfigErrors {
      fuzzCheck(!errors.errors.isEmpty, "a rejected configuration with no error")
      for error in errors.errors {
        fuzzCheck(
          error.line >= 0 && error.line <= lines + 1, "error line \(error.line) of a \(lines)-line file")
        fuzzCheck(!error.message.isEmpty, "an error without a message")
      }
    } catch {
      fuzzCheck(false, "untyped configuration error \(error)")
    }
  }
}
