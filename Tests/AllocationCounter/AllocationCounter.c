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

static volatile int counting;
static uint64_t allocations;

static inline void note(void) {
  if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
}

void ac_start_counting(void) {
  __atomic_store_n(&allocations, 0, __ATOMIC_RELAXED);
  counting = 1;
}

uint64_t ac_stop_counting(void) {
  counting = 0;
  return __atomic_load_n(&allocations, __ATOMIC_RELAXED);
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
