#include "AllocationCounter.h"
#include <stddef.h>
#include <errno.h>

// glibc's own entry points, which the interposers below forward to.
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define AC_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define AC_SANITIZED 1
#endif

// Per thread: what a test measures is the code it drives on its own thread. Threads
// left behind by earlier tests in the same process (a logger, an event loop winding
// down) allocate whenever the scheduler lets them: most likely what counted 8 once in CI.
// initial-exec: the test executable's own TLS block, reached without calling into the
// dynamic linker (which may allocate) from inside malloc.
static __thread int counting __attribute__((tls_model("initial-exec")));
static __thread uint64_t allocations __attribute__((tls_model("initial-exec")));

static inline void note(void) {
  if (counting) allocations += 1;
}

void ac_start_counting(void) {
  allocations = 0;
  counting = 1;
}

uint64_t ac_stop_counting(void) {
  counting = 0;
  return allocations;
}

// Sanitizers bring their own allocator: interposing over it would bypass their
// bookkeeping. Their allocator calls hooks instead (sanitizer_common's allocator
// interface, declared here to need no header), so a sanitized build counts through them.
#ifdef AC_SANITIZED
int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *, size_t), void (*free_hook)(const volatile void *));

static void counted_malloc(const volatile void *pointer, size_t size) {
  (void)pointer;
  (void)size;
  note();
}

static void ignored_free(const volatile void *pointer) { (void)pointer; }

__attribute__((constructor)) static void install_hooks(void) {
  __sanitizer_install_malloc_and_free_hooks(counted_malloc, ignored_free);
}
#else
void *malloc(size_t size) { note(); return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { note(); return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { note(); return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { note(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { note(); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
  note();
  void *pointer = __libc_memalign(alignment, size);
  if (!pointer) return ENOMEM;
  *out = pointer;
  return 0;
}
void free(void *pointer) { __libc_free(pointer); }
#endif
