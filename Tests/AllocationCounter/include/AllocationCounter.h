// Test-only malloc interposer: counts the heap allocations a thread makes between its
// own `ac_start_counting` and `ac_stop_counting`, so a test can prove a code path it drives
// allocates nothing. Other threads' allocations are not counted. Linked into the test
// executable only.
#ifndef ALLOCATION_COUNTER_H
#define ALLOCATION_COUNTER_H
#include <stdint.h>

void ac_start_counting(void);
/// Stops counting and returns how many allocations this thread made since its
/// `ac_start_counting`.
uint64_t ac_stop_counting(void);

#endif
