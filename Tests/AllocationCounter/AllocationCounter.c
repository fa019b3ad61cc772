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
// bookkeeping, so a sanitized build counts nothing (the allocation test checks that the
// interposer saw at least one allocation, and is not run under sanitizers).
#ifndef AC_SANITIZED
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
