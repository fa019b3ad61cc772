#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Reads a configuration file whole, with plain libc so the dataplane needs no Foundation.
enum ConfigFile {
  struct Problem: Error {
    var message: String
  }

  /// Far above any real configuration; guards against being pointed at a device or a huge log.
  static let maximumSize = 16 << 20

  static func contents(of path: String) -> Result<[UInt8], Problem> {
    guard !path.utf8.contains(0) else {
      return .failure(Problem(message: "cannot read the file: invalid path"))
    }
    guard let file = fopen(path, "rb") else { return .failure(Problem(message: describeErrno())) }
    defer { fclose(file) }
    var contents: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    while true {
      let count = chunk.withUnsafeMutableBytes { buffer in fread(buffer.baseAddress, 1, buffer.count, file) }
      contents.append(contentsOf: chunk[0..<count])
      guard contents.count <= maximumSize else {
        return .failure(Problem(message: "the file is larger than \(maximumSize >> 20) MiB"))
      }
      if count < chunk.count {
        if ferror(file) != 0 { return .failure(Problem(message: describeErrno())) }
        return .success(contents)
      }
    }
  }

  private static func describeErrno() -> String {
    "cannot read the file: \(String(cString: strerror(errno)))"
  }
}
