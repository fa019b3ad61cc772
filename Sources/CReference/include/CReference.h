// A tight C implementation of the fast paths, as a yardstick for the pipeline's
// instructions per frame (issue 15: `Bench reference`, scripts/bench-callgrind.sh).
//
// Not part of the switch: the switch's per-packet logic is Swift. `vxr_encapsulate` does
// the work `Pipeline.switchAccessBatch` does for a frame that bypasses the flow cache (an
// untagged frame from one access member, known unicast at a resolved VTEP, over an IPv4
// underlay without UDP checksums or an IPv6 one, fixed DSCP): the frame's checks, the
// destination's FDB lookup in the same bucket layout and seqlock, the VTEP's flush
// generation and resolution, the source's check against the per-worker source cache (a
// home-bucket lookup on a miss), the bucket prefetch a few frames ahead, the outer header
// from the VTEP's template with its lengths, IPv4 header checksum or IPv6 flow label and
// UDP checksum, and flow-hashed UDP source port, the frame copy, and the transmit slot's
// status check and commit. Frames it does not take (anything else) are counted and left,
// as the pipeline's general path would take them.
//
// Thread safety: one caller per `vxr_encap` at a time; the FDB may be written meanwhile
// (the lookups follow its seqlock).
#ifndef VXSWITCH_CREFERENCE_H
#define VXSWITCH_CREFERENCE_H

#include <stddef.h>
#include <stdint.h>

struct vxr_source_entry {
  uint64_t key;
  uint64_t tag;
};

// The FDB's read side: buckets of eight words (sequence, three keys, three values,
// overflow), the bucket count, the VTEPs' and ports' flush generations.
struct vxr_fdb {
  const uint64_t *words;
  uint64_t buckets;
  const uint8_t *vtep_generations;
  const uint8_t *port_generations;
};

struct vxr_encap {
  struct vxr_fdb fdb;
  // The ingress member's lane.
  uint64_t domain_bits;
  uint64_t vtep_pattern;
  uint64_t port_pattern;
  uint64_t source_tag;
  uint32_t vlan_tag;
  uint32_t vni_field;
  uint64_t length_span;
  uint16_t member;
  uint8_t learns;
  uint8_t watches_arp;
  // An IPv6 underlay (70-byte outer header, flow label, the mandatory UDP checksum);
  // else IPv4 (50 bytes, no UDP checksum).
  uint8_t ipv6;
  // The per-worker source cache (4096 entries).
  struct vxr_source_entry *sources;
  // The underlay: per-VTEP 50-byte header templates `header_slot` bytes apart, their
  // pre-folded IPv4 header sums, which VTEPs are resolved, the UDP source port range.
  const uint8_t *headers;
  uint64_t header_slot;
  const uint32_t *checksum_base;
  const uint8_t *resolved;
  uint64_t vtep_count;
  uint32_t port_base;
  uint64_t port_span;
  // The transmit ring: `slot_count` (a power of two) slots of `slot_size` bytes, a
  // 32-bit status word and a 32-bit length word at the slot's start, the frame at
  // `data_offset`; `next` is the slot the next frame takes.
  uint8_t *ring;
  uint64_t slot_size;
  uint64_t slot_count;
  uint64_t data_offset;
  uint64_t next;
};

// Encapsulates the frames it can (see above) into the ring; returns how many. Frames
// left to a general path are added to `*others`, frames dropped for a full ring to
// `*ring_full`.
size_t vxr_encapsulate(struct vxr_encap *encap, uint8_t *const *frames, const int32_t *lengths,
                       const uint32_t *vlan_tags, size_t count, uint64_t *others, uint64_t *ring_full);

// Frees the first `written` slots of the ring as a port's transmit would and starts it
// over.
void vxr_encap_discard(struct vxr_encap *encap, size_t written);

// A transmit ring of the decapsulation's output ports (the same slot layout as above).
struct vxr_ring {
  uint8_t *base;
  uint64_t slot_size;
  uint64_t slot_count;
  uint64_t data_offset;
  uint64_t max_frame_length;
  uint64_t next;
  uint64_t pending;
};

// The same for `Pipeline.decapsulateBatch` on frames that bypass the flow cache: the
// outer header's masked compares against the site's pattern (UDP to the local VTEP and
// port; over IPv4 without a UDP checksum), its lengths and header or UDP checksum, the
// outer source's VTEP (looked up when it changes), the VNI's lane, the inner frame's
// checks, the destination's FDB lookup (a current entry at an untagged local member),
// the source's check against the source cache (tagged with the VTEP; a home-bucket
// lookup on a miss), the bucket prefetch, and the inner frame's copy into the member's
// interface ring with that interface's transmit counters.
struct vxr_decap {
  struct vxr_fdb fdb;
  // The VNI's lane (`vni_field` as the VXLAN header carries it).
  uint32_t vni_field;
  uint8_t learns;
  uint8_t general_flags;
  // An IPv6 underlay (70-byte outer header, the UDP checksum verified); else IPv4.
  uint8_t ipv6;
  uint64_t domain_bits;
  uint64_t port_pattern;
  uint64_t vtep_pattern;
  // The outer header pattern, three 16-byte vectors: a frame's bytes 12-27 and 28-43
  // (IPv4), or 12-27, 38-53 and 54-69 (IPv6), must equal `expected` where `masks` has bits.
  uint8_t masks[48];
  uint8_t expected[48];
  // The VTEP table (open addressing: a slot holds index + 1, 0 when empty).
  const uint32_t *vtep_slots;
  uint64_t vtep_mask;
  const uint64_t *vtep_high;
  const uint64_t *vtep_low;
  const uint16_t *member_vlan;
  const uint16_t *member_interface;
  struct vxr_source_entry *sources;
  uint64_t source_tag_base;
  // Rings by interface index (a null base: none), transmit counters by interface.
  struct vxr_ring *rings;
  uint64_t ring_count;
  uint64_t *tx_frames;
  uint64_t *tx_bytes;
};

// Frees the ring's slots as a port's transmit would (frames in the order they were
// committed, from the ring's start) and starts it over.
void vxr_ring_discard(struct vxr_ring *ring);

size_t vxr_decapsulate(struct vxr_decap *decap, uint8_t *const *frames, const int32_t *lengths,
                       const uint8_t *flags, size_t count, uint64_t *others, uint64_t *ring_full);

#endif
