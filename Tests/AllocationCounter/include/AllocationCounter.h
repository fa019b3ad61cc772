// Test-only malloc interposer: counts heap allocations made by any thread while
// counting is on, so a test can prove a code path allocates nothing. Linked into the
// test executable only.
#ifndef ALLOCATION_COUNTER_H
#define ALLOCATION_COUNTER_H
#include <stdint.h>

void ac_start_counting(void);
/// Stops counting and returns how many allocations happened since `ac_start_counting`.
uint64_t ac_stop_counting(void);

#endif
