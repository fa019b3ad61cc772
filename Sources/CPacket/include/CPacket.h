// CPacket: C bindings for vxswitch. Only what Swift cannot express lives here:
// kernel ABI structures and constants (AF_PACKET, TPACKET_V3), libpcap and libnl entry
// points, and a few inline helpers (prefetch). Every symbol of our own is prefixed `cp_`.
#ifndef CPACKET_H
#define CPACKET_H

#include <stdint.h>
#include <stddef.h>
#include <pcap/pcap.h>

/// Hints the CPU to pull the cache line at `p` into L1 ahead of a read.
static inline void cp_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Hints the CPU to pull the cache line at `p` ahead of a write.
static inline void cp_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

#endif
