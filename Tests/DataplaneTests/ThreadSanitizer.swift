#if canImport(Glibc)
  import Glibc
#endif

/// Whether this test binary runs under ThreadSanitizer (its runtime is linked in), so that
/// long stress loops can run fewer rounds there: TSan reports a race at its first overlap.
enum ThreadSanitizer {
  static let isActive: Bool = dlsym(dlopen(nil, RTLD_LAZY), "__tsan_init") != nil
}
