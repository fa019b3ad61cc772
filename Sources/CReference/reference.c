// See CReference.h. Written as tight as the work allows: one pass per frame, constants
// in locals, the same prefetch distance as the pipeline, no call per frame.
#include "CReference.h"

#include <string.h>

#define VXR_PREFETCH_DISTANCE 4
#define VXR_SOURCE_CACHE_BITS 12
#define VXR_PATTERN_MASK 0x0FF30000ull
#define VXR_GROUP_BIT_OF_LOADED_MAC (1ull << 56)
#define VXR_FLOW_HASH_MULTIPLIER 0xBF58476D1CE4E5B9ull

static inline __attribute__((always_inline)) uint64_t load64(const void *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static inline __attribute__((always_inline)) uint32_t load32(const void *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline __attribute__((always_inline)) uint16_t load16(const void *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}
static inline __attribute__((always_inline)) void store16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline __attribute__((always_inline)) void store32(void *p, uint32_t v) { memcpy(p, &v, 4); }
static inline __attribute__((always_inline)) void store64(void *p, uint64_t v) { memcpy(p, &v, 8); }
static inline __attribute__((always_inline)) void copy16(uint8_t *to, const uint8_t *from) { memcpy(to, from, 16); }

static inline __attribute__((always_inline)) uint64_t home_bucket(uint64_t key, uint64_t buckets) {
  return (((key * 0x9E3779B97F4A7C15ull) >> 32) * buckets) >> 32;
}

// The value stored for `key` in its home bucket, 0 when absent there or while a writer
// rewrites the bucket (the pipeline's `homeValue`).
static inline __attribute__((always_inline)) uint64_t home_value(const uint64_t *bucket, uint64_t key) {
  uint64_t sequence = __atomic_load_n(&bucket[0], __ATOMIC_ACQUIRE);
  uint64_t value = 0;
  if (__atomic_load_n(&bucket[1], __ATOMIC_RELAXED) == key)
    value = __atomic_load_n(&bucket[4], __ATOMIC_RELAXED);
  else if (__atomic_load_n(&bucket[2], __ATOMIC_RELAXED) == key)
    value = __atomic_load_n(&bucket[5], __ATOMIC_RELAXED);
  else if (__atomic_load_n(&bucket[3], __ATOMIC_RELAXED) == key)
    value = __atomic_load_n(&bucket[6], __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if ((sequence & 1) || __atomic_load_n(&bucket[0], __ATOMIC_RELAXED) != sequence) return 0;
  return value;
}

// `a + b` with the carry out of bit 63 added back in (2^64 is 1 modulo 0xFFFF).
static inline __attribute__((always_inline)) uint64_t add_with_carry(uint64_t a, uint64_t b) {
  uint64_t sum;
  uint64_t carry = __builtin_add_overflow(a, b, &sum);
  return sum + carry;
}

// The one's-complement sum of `count` bytes as native-order 64-bit words added with
// end-around carry, four a round (the pipeline's `OnesComplement.nativeSum`; the same
// fold, whichever way the words were added).
static inline __attribute__((always_inline)) uint64_t native_sum(const uint8_t *bytes, int64_t count,
                                                                 uint64_t accumulator) {
  int64_t offset = 0;
  for (; offset + 32 <= count; offset += 32) {
    accumulator = add_with_carry(accumulator, load64(bytes + offset));
    accumulator = add_with_carry(accumulator, load64(bytes + offset + 8));
    accumulator = add_with_carry(accumulator, load64(bytes + offset + 16));
    accumulator = add_with_carry(accumulator, load64(bytes + offset + 24));
  }
  for (; offset + 8 <= count; offset += 8) accumulator = add_with_carry(accumulator, load64(bytes + offset));
  if (offset + 4 <= count) {
    accumulator = add_with_carry(accumulator, load32(bytes + offset));
    offset += 4;
  }
  if (offset + 2 <= count) {
    accumulator = add_with_carry(accumulator, load16(bytes + offset));
    offset += 2;
  }
  if (offset < count) accumulator = add_with_carry(accumulator, bytes[offset]);
  return accumulator;
}

static inline __attribute__((always_inline)) uint64_t fold16(uint64_t value) {
  uint32_t low = (uint32_t)value, high = (uint32_t)(value >> 32);
  uint32_t halves = low + high;
  uint32_t word = halves + (halves < low);
  return (uint64_t)((word + (word << 16 | word >> 16)) >> 16);
}

// A 16-bit big-endian value as `native_sum` adds it (byte-swapped on this little-endian host).
static inline __attribute__((always_inline)) uint64_t native_order(uint16_t value) {
  return __builtin_bswap16(value);
}

// Whether `source` is known at the target (`index` of the kind `pattern` says, current
// under `generations`): from the source cache when it holds `source` with `tag`, else
// from the source's home bucket, which the cache then holds (the pipeline's source cache
// and learning check).
static inline __attribute__((always_inline)) int source_is_known(
    const uint64_t *words, uint64_t buckets, struct vxr_source_entry *sources, uint64_t source, uint64_t tag,
    uint64_t pattern, uint64_t index, const uint8_t *generations) {
  struct vxr_source_entry *cached = sources + ((source * 0xD6E8FEB86659FD93ull) >> (64 - VXR_SOURCE_CACHE_BITS));
  if (cached->key == source && cached->tag == tag) return 1;
  uint64_t found = home_value(words + home_bucket(source, buckets) * 8, source);
  if ((found & VXR_PATTERN_MASK) != pattern || (found & 0xFFFF) != index ||
      generations[index] != (uint8_t)(found >> 28))
    return 0;
  cached->key = source;
  cached->tag = tag;
  return 1;
}

// The flow hash the UDP source port comes from (the pipeline's `InnerFrame.flowHash`).
static inline __attribute__((always_inline)) uint64_t flow_hash(const uint8_t *frame, int64_t length) {
  const uint8_t *rest = frame + 12;
  int64_t rest_length = length - 12;
  if (rest_length >= 26 && (load64(rest) & 0xFFFFFF) == 0x450008) {
    uint64_t fragment_and_protocol = load64(rest + 8) & 0xFF00FF1F;
    if (fragment_and_protocol == 0x11000000 || fragment_and_protocol == 0x06000000)
      return (load64(rest + 14) ^ (fragment_and_protocol >> 24) ^ ((uint64_t)load32(rest + 22) << 24)) *
             VXR_FLOW_HASH_MULTIPLIER;
  }
  uint16_t ether_type = (uint16_t)(rest[0] << 8 | rest[1]);
  uint64_t hash;
  if (ether_type == 0x0800 && rest_length >= 22) {
    const uint8_t *ip = rest + 2;
    int64_t header_length = (ip[0] & 0x0F) << 2;
    uint8_t proto = ip[9];
    hash = load64(ip + 12) ^ proto;
    if ((proto == 6 || proto == 17) && ((ip[6] << 8 | ip[7]) & 0x1FFF) == 0 &&
        rest_length >= 2 + header_length + 4)
      hash ^= (uint64_t)load32(ip + header_length) << 24;
  } else if (ether_type == 0x86DD && rest_length >= 42) {
    const uint8_t *ip = rest + 2;
    uint8_t next_header = ip[6];
    hash = load64(ip + 8) ^ load64(ip + 16) ^ load64(ip + 24) * 31 ^ load64(ip + 32) * 31 ^ next_header;
    if ((next_header == 6 || next_header == 17) && rest_length >= 46) hash ^= (uint64_t)load32(ip + 40) << 24;
  } else {
    hash = load64(frame) ^ load64(frame + 4) * 31 ^ ether_type;
  }
  return hash * VXR_FLOW_HASH_MULTIPLIER;
}

// Frames past 64 bytes (and runts below 16) in 16-byte moves, not through memcpy: a call
// in the loop's body has the compiler save the loop's vector registers around every copy.
static inline __attribute__((always_inline)) void copy_long_frame(uint8_t *to, const uint8_t *from,
                                                                  int64_t count) {
  if (count < 16) {
    for (int64_t index = 0; index < count; index++) to[index] = from[index];
    return;
  }
  for (int64_t offset = 0; offset < count - 16; offset += 16) copy16(to + offset, from + offset);
  copy16(to + count - 16, from + count - 16);
}

static inline __attribute__((always_inline)) void copy_frame(uint8_t *to, const uint8_t *from, int64_t count) {
  if (__builtin_expect((uint64_t)(count - 48) <= 16, 1)) {
    copy16(to, from);
    copy16(to + 16, from + 16);
    copy16(to + 32, from + 32);
    copy16(to + count - 16, from + count - 16);
  } else if (count >= 16 && count < 48) {
    int64_t head = count >= 32 ? 16 : count - 16, tail = count >= 32 ? count - 32 : 0;
    copy16(to, from);
    copy16(to + head, from + head);
    copy16(to + tail, from + tail);
    copy16(to + count - 16, from + count - 16);
  } else {
    copy_long_frame(to, from, count);
  }
}

// The loop for one underlay family (`ipv6` a constant at each call: the compiler makes
// two loops, as the pipeline's generics do).
static inline __attribute__((always_inline)) size_t encapsulate(struct vxr_encap *encap, uint8_t *const *frames,
                                                                const int32_t *lengths, const uint32_t *vlan_tags,
                                                                size_t count, uint64_t *others, uint64_t *ring_full,
                                                                const int ipv6) {
  const int64_t header_length = ipv6 ? 70 : 50;
  const uint64_t *words = encap->fdb.words;
  const uint64_t buckets = encap->fdb.buckets;
  const uint8_t *vtep_generations = encap->fdb.vtep_generations;
  const uint8_t *port_generations = encap->fdb.port_generations;
  const uint64_t domain_bits = encap->domain_bits;
  const uint64_t vtep_pattern = encap->vtep_pattern;
  const uint64_t port_pattern = encap->port_pattern;
  const uint64_t source_tag = encap->source_tag;
  const uint32_t vlan_tag = encap->vlan_tag;
  const uint32_t vni_field = encap->vni_field;
  const uint64_t length_span = encap->length_span;
  const uint16_t member = encap->member;
  const int learns = encap->learns;
  const int watches_arp = encap->watches_arp;
  struct vxr_source_entry *sources = encap->sources;
  const uint8_t *headers = encap->headers;
  const uint64_t header_slot = encap->header_slot;
  const uint32_t *checksum_base = encap->checksum_base;
  const uint8_t *resolved = encap->resolved;
  const uint64_t vtep_count = encap->vtep_count;
  const uint32_t port_base = encap->port_base;
  const uint64_t port_span = encap->port_span;
  uint8_t *ring = encap->ring;
  const uint64_t slot_size = encap->slot_size;
  const uint64_t slot_mask = encap->slot_count - 1;
  const uint64_t data_offset = encap->data_offset;
  uint64_t next = encap->next;
  size_t encapsulated = 0;
  uint64_t left = 0, full = 0;

  for (size_t index = 0; index < count; index++) {
    const uint8_t *frame = frames[index];
    const int64_t length = lengths[index];
    size_t ahead = index + VXR_PREFETCH_DISTANCE;
    if (ahead < count && lengths[ahead] >= 14) {
      uint64_t key = domain_bits | __builtin_bswap64(load64(frames[ahead])) >> 16;
      __builtin_prefetch(words + home_bucket(key, buckets) * 8);
    }
    if (vlan_tags[index] != vlan_tag || (uint64_t)(length - 14) >= length_span) goto other;
    uint16_t ether_type = load16(frame + 12);
    if (ether_type == 0x0081 || (watches_arp && ether_type == 0x0608)) goto other;
    uint64_t source_field = __builtin_bswap64(load64(frame + 6));
    uint64_t destination_field = __builtin_bswap64(load64(frame));
    if (((source_field | destination_field) & VXR_GROUP_BIT_OF_LOADED_MAC) || source_field < 0x10000) goto other;

    uint64_t key = domain_bits | destination_field >> 16;
    uint64_t value = home_value(words + home_bucket(key, buckets) * 8, key);
    if ((value & VXR_PATTERN_MASK) != vtep_pattern) goto other;
    uint64_t vtep = value & 0xFFFF;
    if (vtep_generations[vtep] != (uint8_t)(value >> 28) || vtep >= vtep_count || !resolved[vtep]) goto other;

    if (learns && !source_is_known(words, buckets, sources, domain_bits | source_field >> 16, source_tag,
                                   port_pattern, member, port_generations))
      goto other;

    uint8_t *slot = ring + next * slot_size;
    if (__atomic_load_n((uint32_t *)slot, __ATOMIC_ACQUIRE) & 3) {
      full++;
      continue;
    }
    uint8_t *output = slot + data_offset;
    const uint8_t *header = headers + vtep * header_slot;
    copy16(output, header);
    copy16(output + 16, header + 16);
    if (ipv6) {
      copy16(output + 32, header + 32);
      copy16(output + 46, header + 46);
    } else {
      copy16(output + 26, header + 26);
    }
    store64(output + header_length - 8, load64(header + header_length - 8));
    copy_frame(output + header_length, frame, length);
    uint64_t hash = flow_hash(frame, length);
    uint16_t source_port = (uint16_t)(port_base + (uint32_t)((((hash >> 32) * port_span)) >> 32));
    if (ipv6) {
      // Flow label from the hash; payload and UDP lengths; the UDP checksum over the
      // datagram, its pseudo-header's addresses pre-summed per VTEP.
      uint32_t payload_length = (uint32_t)length + 16;
      store32(output + 14, __builtin_bswap32(__builtin_bswap32(load32(output + 14)) | (uint32_t)(hash >> 44)));
      store16(output + 18, __builtin_bswap16((uint16_t)payload_length));
      store16(output + 54, __builtin_bswap16(source_port));
      store16(output + 58, __builtin_bswap16((uint16_t)payload_length));
      store32(output + 66, vni_field);
      uint64_t pseudo_header = native_order((uint16_t)checksum_base[vtep]) + native_order((uint16_t)payload_length);
      uint16_t folded = (uint16_t)fold16(native_sum(output + 54, payload_length, pseudo_header));
      store16(output + 60, folded == 0xFFFF ? 0xFFFF : (uint16_t)~folded);
    } else {
      uint32_t ip_length = (uint32_t)length + 36;
      uint32_t sum = checksum_base[vtep] + ip_length;
      store16(output + 16, __builtin_bswap16((uint16_t)ip_length));
      store16(output + 24, __builtin_bswap16((uint16_t) ~((sum & 0xFFFF) + (sum >> 16))));
      store16(output + 34, __builtin_bswap16(source_port));
      store16(output + 38, __builtin_bswap16((uint16_t)(ip_length - 20)));
      store32(output + 46, vni_field);
    }
    store32(slot + 4, (uint32_t)(length + header_length));
    __atomic_store_n((uint32_t *)slot, 1, __ATOMIC_RELEASE);
    next = (next + 1) & slot_mask;
    encapsulated++;
    continue;
  other:
    left++;
  }
  encap->next = next;
  *others += left;
  *ring_full += full;
  return encapsulated;
}

// One function per family, so that each loop has its registers to itself.
__attribute__((noinline)) static size_t encapsulate_ipv4(struct vxr_encap *encap, uint8_t *const *frames,
                                                         const int32_t *lengths, const uint32_t *vlan_tags,
                                                         size_t count, uint64_t *others, uint64_t *ring_full) {
  return encapsulate(encap, frames, lengths, vlan_tags, count, others, ring_full, 0);
}

__attribute__((noinline)) static size_t encapsulate_ipv6(struct vxr_encap *encap, uint8_t *const *frames,
                                                         const int32_t *lengths, const uint32_t *vlan_tags,
                                                         size_t count, uint64_t *others, uint64_t *ring_full) {
  return encapsulate(encap, frames, lengths, vlan_tags, count, others, ring_full, 1);
}

size_t vxr_encapsulate(struct vxr_encap *encap, uint8_t *const *frames, const int32_t *lengths,
                       const uint32_t *vlan_tags, size_t count, uint64_t *others, uint64_t *ring_full) {
  return encap->ipv6 ? encapsulate_ipv6(encap, frames, lengths, vlan_tags, count, others, ring_full)
                     : encapsulate_ipv4(encap, frames, lengths, vlan_tags, count, others, ring_full);
}

#include <emmintrin.h>

void vxr_encap_discard(struct vxr_encap *encap, size_t written) {
  uint8_t *ring = encap->ring;
  const uint64_t slot_size = encap->slot_size;
  for (size_t slot = 0; slot < written; slot++)
    __atomic_store_n((uint32_t *)(ring + slot * slot_size), 0, __ATOMIC_RELAXED);
  encap->next = 0;
}

void vxr_ring_discard(struct vxr_ring *ring) {
  uint8_t *base = ring->base;
  const uint64_t pending = ring->pending, slot_size = ring->slot_size;
  for (uint64_t slot = 0; slot < pending; slot++)
    __atomic_store_n((uint32_t *)(base + slot * slot_size), 0, __ATOMIC_RELAXED);
  ring->next = 0;
  ring->pending = 0;
}

#define VXR_CHECKSUM_VALID 2

// The 20-byte IPv4 header's checksum verifies: its plain sum is a non-zero multiple of
// 0xFFFF (the pipeline's `ipv4HeaderChecksumIsValid20`).
static inline __attribute__((always_inline)) int ipv4_header_checksum_is_valid(const uint8_t *ip) {
  uint64_t a = load64(ip), b = load64(ip + 8), c = load32(ip + 16);
  uint64_t partial = a + b;
  uint64_t carry1 = partial < a;
  uint64_t sum = partial + c + carry1;
  uint64_t carry2 = sum < partial;
  return (sum + carry2) * 0xFFFEFFFEFFFEFFFFull <= 0x1000100010001ull;
}

static inline __attribute__((always_inline)) int64_t vtep_index(const struct vxr_decap *d, uint64_t high, uint64_t low) {
  uint64_t slot = (((high ^ low) * 0x9E3779B97F4A7C15ull) >> 40) & d->vtep_mask;
  for (;;) {
    uint32_t entry = d->vtep_slots[slot];
    if (entry == 0) return -1;
    if (d->vtep_low[entry - 1] == low && d->vtep_high[entry - 1] == high) return (int64_t)entry - 1;
    slot = (slot + 1) & d->vtep_mask;
  }
}

// The loop for one underlay family (`ipv6` a constant at each call).
static inline __attribute__((always_inline)) size_t decapsulate(struct vxr_decap *decap, uint8_t *const *frames,
                                                                const int32_t *lengths, const uint8_t *flags,
                                                                size_t count, uint64_t *others, uint64_t *ring_full,
                                                                const int ipv6) {
  const int64_t outer_length = ipv6 ? 70 : 50;
  const int64_t longest_frame = ipv6 ? 0xFFFF + 54 : 0xFFFF + 14;
  const uint64_t *words = decap->fdb.words;
  const uint64_t buckets = decap->fdb.buckets;
  const uint8_t *vtep_generations = decap->fdb.vtep_generations;
  const uint8_t *port_generations = decap->fdb.port_generations;
  const uint32_t vni_field = decap->vni_field;
  const int learns = decap->learns;
  const uint8_t general_flags = decap->general_flags;
  const uint64_t domain_bits = decap->domain_bits;
  const uint64_t port_pattern = decap->port_pattern;
  const uint64_t vtep_pattern = decap->vtep_pattern;
  const __m128i mask0 = _mm_loadu_si128((const __m128i *)decap->masks);
  const __m128i mask1 = _mm_loadu_si128((const __m128i *)(decap->masks + 16));
  const __m128i expected0 = _mm_loadu_si128((const __m128i *)decap->expected);
  const __m128i expected1 = _mm_loadu_si128((const __m128i *)(decap->expected + 16));
  const __m128i mask2 = _mm_loadu_si128((const __m128i *)(decap->masks + 32));
  const __m128i expected2 = _mm_loadu_si128((const __m128i *)(decap->expected + 32));
  const uint16_t *member_vlan = decap->member_vlan;
  const uint16_t *member_interface = decap->member_interface;
  struct vxr_source_entry *sources = decap->sources;
  const uint64_t source_tag_base = decap->source_tag_base;
  struct vxr_ring *rings = decap->rings;
  const uint64_t ring_count = decap->ring_count;
  uint64_t *tx_frames = decap->tx_frames;
  uint64_t *tx_bytes = decap->tx_bytes;
  uint64_t last_high = 0, last_low = 0;
  int64_t vtep = vtep_index(decap, 0, 0);
  size_t left = 0, full = 0;

  for (size_t index = 0; index < count; index++) {
    const uint8_t *frame = frames[index];
    const int64_t length = lengths[index];
    size_t ahead = index + VXR_PREFETCH_DISTANCE;
    if (ahead < count && lengths[ahead] >= outer_length + 14) {
      uint64_t key = domain_bits | __builtin_bswap64(load64(frames[ahead] + outer_length)) >> 16;
      __builtin_prefetch(words + home_bucket(key, buckets) * 8);
    }
    if ((uint64_t)(length - (outer_length + 14)) > (uint64_t)(longest_frame - (outer_length + 14)) ||
        (flags[index] & general_flags))
      goto other;
    // The outer header against the site's pattern: bytes 12-43 (IPv4), or 12-27, 38-53
    // and 54-69 (IPv6), compared under their masks.
    __m128i difference =
        _mm_or_si128(_mm_and_si128(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(frame + 12)), expected0), mask0),
                     _mm_and_si128(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(frame + (ipv6 ? 38 : 28))),
                                                 expected1),
                                   mask1));
    if (ipv6)
      difference = _mm_or_si128(
          difference, _mm_and_si128(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(frame + 54)), expected2), mask2));
    if ((uint64_t)_mm_cvtsi128_si64(difference) | (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(difference, difference)))
      goto other;
    if (ipv6) {
      // Payload and UDP lengths cover everything after the IPv6 header; the UDP checksum,
      // mandatory, verifies over the pseudo-header and the datagram.
      uint16_t udp_length = __builtin_bswap16((uint16_t)(length - 54));
      if (load16(frame + 18) != udp_length || load16(frame + 58) != udp_length || load16(frame + 60) == 0)
        goto other;
      if (!(flags[index] & VXR_CHECKSUM_VALID) &&
          fold16(native_sum(frame + 22, 32 + length - 54, native_order(17) + native_order((uint16_t)(length - 54)))) !=
              0xFFFF)
        goto other;
    } else {
      if (load16(frame + 16) != __builtin_bswap16((uint16_t)(length - 14)) ||
          load16(frame + 38) != __builtin_bswap16((uint16_t)(length - 34)))
        goto other;
      if (!(flags[index] & VXR_CHECKSUM_VALID) && !ipv4_header_checksum_is_valid(frame + 14)) goto other;
    }
    if ((load32(frame + outer_length - 4) & 0x00FFFFFF) != vni_field) goto other;
    uint64_t high = ipv6 ? load64(frame + 22) : 0, low = ipv6 ? load64(frame + 30) : load32(frame + 26);
    if (high != last_high || low != last_low) {
      last_high = high;
      last_low = low;
      vtep = ipv6 ? vtep_index(decap, __builtin_bswap64(high), __builtin_bswap64(low))
                  : vtep_index(decap, 0, __builtin_bswap32((uint32_t)low));
    }
    if (vtep < 0) goto other;

    const uint8_t *inner = frame + outer_length;
    if (load16(inner + 12) == 0x0081) goto other;
    uint64_t source_field = __builtin_bswap64(load64(inner + 6));
    uint64_t destination_field = __builtin_bswap64(load64(inner));
    if (((source_field | destination_field) & VXR_GROUP_BIT_OF_LOADED_MAC) || source_field < 0x10000) goto other;
    uint64_t key = domain_bits | destination_field >> 16;
    uint64_t value = home_value(words + home_bucket(key, buckets) * 8, key);
    if ((value & VXR_PATTERN_MASK) != port_pattern || port_generations[value & 0xFFFF] != (uint8_t)(value >> 28))
      goto other;
    uint64_t member = value & 0xFFFF;
    if (member_vlan[member] != 0) goto other;
    uint64_t interface = member_interface[member];

    if (learns && !source_is_known(words, buckets, sources, domain_bits | source_field >> 16,
                                   source_tag_base | (uint64_t)vtep, vtep_pattern, (uint64_t)vtep,
                                   vtep_generations))
      goto other;

    int64_t inner_length = length - outer_length;
    if (interface >= ring_count || !rings[interface].base) goto other;
    struct vxr_ring *ring = rings + interface;
    uint8_t *slot = ring->base + ring->next * ring->slot_size;
    if (__atomic_load_n((uint32_t *)slot, __ATOMIC_ACQUIRE) & 3) {
      full++;
      continue;
    }
    if ((uint64_t)inner_length > ring->max_frame_length) goto other;
    copy_frame(slot + ring->data_offset, inner, inner_length);
    store32(slot + 4, (uint32_t)inner_length);
    __atomic_store_n((uint32_t *)slot, 1, __ATOMIC_RELEASE);
    ring->next = (ring->next + 1) & (ring->slot_count - 1);
    ring->pending++;
    tx_frames[interface]++;
    tx_bytes[interface] += (uint64_t)inner_length;
    continue;
  other:
    left++;
  }
  *others += left;
  *ring_full += full;
  return count - left - full;
}

__attribute__((noinline)) static size_t decapsulate_ipv4(struct vxr_decap *decap, uint8_t *const *frames,
                                                         const int32_t *lengths, const uint8_t *flags, size_t count,
                                                         uint64_t *others, uint64_t *ring_full) {
  return decapsulate(decap, frames, lengths, flags, count, others, ring_full, 0);
}

__attribute__((noinline)) static size_t decapsulate_ipv6(struct vxr_decap *decap, uint8_t *const *frames,
                                                         const int32_t *lengths, const uint8_t *flags, size_t count,
                                                         uint64_t *others, uint64_t *ring_full) {
  return decapsulate(decap, frames, lengths, flags, count, others, ring_full, 1);
}

size_t vxr_decapsulate(struct vxr_decap *decap, uint8_t *const *frames, const int32_t *lengths,
                       const uint8_t *flags, size_t count, uint64_t *others, uint64_t *ring_full) {
  return decap->ipv6 ? decapsulate_ipv6(decap, frames, lengths, flags, count, others, ring_full)
                     : decapsulate_ipv4(decap, frames, lengths, flags, count, others, ring_full);
}
