// AF_XDP bindings, apart from CPacket.h: xdp.c includes libbpf's <linux/bpf.h>, whose
// struct bpf_insn (eBPF) clashes with libpcap's (classic BPF) that CPacket.h brings in.
#ifndef CPACKET_XDP_H
#define CPACKET_XDP_H

#include <stdint.h>
#include <stddef.h>

// MARK: - AF_XDP (libxdp for the UMEM and socket, libbpf for the program and map)

/// A UMEM with its fill and completion rings (libxdp handle), opaque to Swift.
typedef struct cp_xsk_umem cp_xsk_umem;
/// One AF_XDP socket (libxdp handle), opaque to Swift.
typedef struct cp_xsk cp_xsk;

/// A ring shared with the kernel, as Swift walks it (mirrors libxdp's xsk_ring_prod/cons):
/// `producer` and `consumer` are the kernel-shared indices, `ring` the entries (64-bit UMEM
/// addresses for fill and completion, `cp_xdp_desc` for RX and TX), `flags` holds
/// XDP_RING_NEED_WAKEUP.
typedef struct {
  uint32_t *producer;
  uint32_t *consumer;
  void *ring;
  uint32_t *flags;
  uint32_t mask;
  uint32_t size;
} cp_xsk_ring;

/// struct xdp_desc (linux/if_xdp.h).
typedef struct {
  uint64_t addr;
  uint32_t len;
  uint32_t options;
} cp_xdp_desc;

/// struct xdp_statistics (linux/if_xdp.h).
typedef struct {
  uint64_t rx_dropped;
  uint64_t rx_invalid_descs;
  uint64_t tx_invalid_descs;
  uint64_t rx_ring_full;
  uint64_t rx_fill_ring_empty_descs;
  uint64_t tx_ring_empty_descs;
} cp_xdp_statistics;

enum { CP_XDP_RING_NEED_WAKEUP = 1 };

/// Registers `area` (`size` bytes, page-aligned, chunks of `frame_size`) as a UMEM with a
/// fill ring of `fill_size` and a completion ring of `completion_size` entries (powers of
/// two). Returns 0 or -errno.
int cp_xsk_umem_create(void *area, uint64_t size, uint32_t frame_size, uint32_t fill_size,
                       uint32_t completion_size, cp_xsk_umem **out, cp_xsk_ring *fill,
                       cp_xsk_ring *completion);
/// Releases the UMEM: -EBUSY while a socket still uses it (close those first).
int cp_xsk_umem_delete(cp_xsk_umem *umem);
/// Most (interface, queue) pairs one UMEM is bound to (`context` of `cp_xsk_open`).
enum { CP_XSK_MAX_CONTEXTS = 64 };

/// Binds an AF_XDP socket to queue `queue` of `ifname` on `umem`, without loading any XDP
/// program (the caller attaches its own and puts the socket in its map). The kernel keeps
/// one fill and one completion ring per (interface, queue) a UMEM is bound to: `context`
/// (0 ..< CP_XSK_MAX_CONTEXTS) names that pair on our side, 0 being the UMEM's own rings.
/// The first socket of a context creates the context's rings (except context 0's, made
/// with the UMEM); later sockets on the same interface and queue share them, and every
/// socket after the UMEM's first binds with XDP_SHARED_UMEM, so that all of them may send
/// from any chunk of the UMEM. `*fill` and `*completion` receive the context's rings. RX
/// and TX have `ring_size` entries. Returns the socket's fd, or -errno; `*zero_copy` says
/// which mode the kernel chose.
int cp_xsk_open(const char *ifname, uint32_t queue, cp_xsk_umem *umem, uint32_t context, uint32_t ring_size,
                cp_xsk **out, cp_xsk_ring *rx, cp_xsk_ring *tx, cp_xsk_ring *fill, cp_xsk_ring *completion,
                int *zero_copy);
void cp_xsk_close(cp_xsk *xsk);
/// How many receive queues `ifname` has (ethtool channels), or -errno (-EOPNOTSUPP from a
/// driver that does not say).
int cp_interface_rx_queues(const char *ifname);
int cp_xsk_statistics(int fd, cp_xdp_statistics *statistics);
/// Asks the kernel to process the TX ring (copy mode transmits in this call).
long cp_xsk_kick(int fd);

/// Creates an XSKMAP of `entries` sockets and loads the XDP program `instructions` (`count`
/// 8-byte BPF instructions) after writing the map's fd into every instruction at the
/// indices `map_slots` (BPF_LD_IMM64 with BPF_PSEUDO_MAP_FD). Returns the program's fd and
/// sets `*map_fd`, or -errno with the verifier's log in `log`.
int cp_xdp_load(uint64_t *instructions, size_t count, const size_t *map_slots, size_t map_slot_count,
                uint32_t entries, int *map_fd, char *log, size_t log_size);
/// Attaches `prog_fd` to `ifindex` in native (driver) mode through a BPF link, after
/// removing a program attached there the old way. Returns the link's fd (closing it, or
/// the process ending, detaches the program, whatever namespace the closer is in), or
/// -errno.
int cp_xdp_attach(int ifindex, int prog_fd);
/// Detaches whatever XDP program `ifindex` has in native mode (none is not an error).
int cp_xdp_detach(int ifindex);
/// The id of the native-mode XDP program on `ifindex`, 0 for none.
int cp_xdp_attached_id(int ifindex, uint32_t *id);
int cp_xdp_map_set(int map_fd, uint32_t key, int socket_fd);

/// Loads the tc program `instructions` (`count` 8-byte BPF instructions, type
/// BPF_PROG_TYPE_SCHED_CLS, no maps) under `name` (at most 15 characters). Returns the
/// program's fd, or -errno with the verifier's log in `log`.
int cp_tc_program_load(uint64_t *instructions, size_t count, const char *name, char *log, size_t log_size);
/// Attaches `prog_fd` to the ingress of `ifindex` through a tcx BPF link (Linux 6.6 on; no
/// qdisc, no netlink). Returns the link's fd (closing it, or the process ending, detaches
/// the program), or -errno (EINVAL or EOPNOTSUPP from a kernel without tcx).
int cp_tcx_attach_ingress(int ifindex, int prog_fd);
/// Attaches `egress_fd` and `ingress_fd` (direct action; -1 for none) to the clsact qdisc
/// of `ifindex` (created when missing) through netlink: unlike a BPF link, a tc filter
/// holds its program and stays with the interface after the process ends. Returns 0 or
/// -errno.
int cp_tc_attach_clsact(int ifindex, int egress_fd, int ingress_fd);

#endif
