// AF_XDP and XDP helpers: libxdp creates the UMEM and the socket (its rings' layout is
// handed to Swift, which walks them itself), libbpf loads the steering program and its
// XSKMAP and attaches them. Each returns -errno on failure and does not retry.
#define _GNU_SOURCE
#include "CPacketXDP.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <xdp/xsk.h>

_Static_assert(sizeof(cp_xdp_desc) == sizeof(struct xdp_desc), "xdp_desc");
_Static_assert(offsetof(cp_xdp_desc, len) == offsetof(struct xdp_desc, len), "xdp_desc.len");
_Static_assert(sizeof(cp_xdp_statistics) == sizeof(struct xdp_statistics), "xdp_statistics");
_Static_assert(CP_XDP_RING_NEED_WAKEUP == XDP_RING_NEED_WAKEUP, "XDP_RING_NEED_WAKEUP");
_Static_assert(sizeof(struct bpf_insn) == 8, "bpf_insn");

/// linux/bpf.h from kernel 6.6 on (`enum bpf_attach_type`); the installed headers may be
/// older, and the value is part of the kernel's ABI.
#define CP_BPF_TCX_INGRESS 46

/// linux/if_xdp.h from kernel 6.17 on; the installed headers may be older.
#define CP_XDP_MAX_TX_SKB_BUDGET 9

/// The fill and completion rings of one (interface, queue) the UMEM is bound to. libxdp
/// keeps pointers to them until the context's last socket is deleted, so they live as long
/// as the UMEM.
struct cp_xsk_context_rings {
  struct xsk_ring_prod fill;
  struct xsk_ring_cons completion;
};

struct cp_xsk_umem {
  struct xsk_umem *umem;
  struct cp_xsk_context_rings contexts[CP_XSK_MAX_CONTEXTS];
};

struct cp_xsk {
  struct xsk_socket *socket;
  struct xsk_ring_cons rx;
  struct xsk_ring_prod tx;
};

#define CP_EXPORT_RING(out, r)                                                                   \
  do {                                                                                           \
    (out)->producer = (r).producer;                                                              \
    (out)->consumer = (r).consumer;                                                              \
    (out)->ring = (r).ring;                                                                      \
    (out)->flags = (r).flags;                                                                    \
    (out)->mask = (r).mask;                                                                      \
    (out)->size = (r).size;                                                                      \
  } while (0)

int cp_xsk_umem_create(void *area, uint64_t size, uint32_t frame_size, uint32_t fill_size,
                       uint32_t completion_size, cp_xsk_umem **out, cp_xsk_ring *fill,
                       cp_xsk_ring *completion) {
  cp_xsk_umem *umem = calloc(1, sizeof(*umem));
  if (umem == NULL) return -ENOMEM;
  struct xsk_umem_config config = {
      .fill_size = fill_size,
      .comp_size = completion_size,
      .frame_size = frame_size,
      .frame_headroom = 0,
      .flags = 0,
  };
  int result = xsk_umem__create(&umem->umem, area, size, &umem->contexts[0].fill,
                                &umem->contexts[0].completion, &config);
  if (result != 0) {
    free(umem);
    return result < 0 ? result : -result;
  }
  CP_EXPORT_RING(fill, umem->contexts[0].fill);
  CP_EXPORT_RING(completion, umem->contexts[0].completion);
  *out = umem;
  return 0;
}

int cp_xsk_umem_delete(cp_xsk_umem *umem) {
  if (umem == NULL) return 0;
  int result = xsk_umem__delete(umem->umem);
  if (result != 0) return result < 0 ? result : -result;
  free(umem);
  return 0;
}

int cp_xsk_open(const char *ifname, uint32_t queue, cp_xsk_umem *umem, uint32_t context, uint32_t ring_size,
                cp_xsk **out, cp_xsk_ring *rx, cp_xsk_ring *tx, cp_xsk_ring *fill, cp_xsk_ring *completion,
                int *zero_copy) {
  if (context >= CP_XSK_MAX_CONTEXTS) return -EINVAL;
  cp_xsk *xsk = calloc(1, sizeof(*xsk));
  if (xsk == NULL) return -ENOMEM;
  struct xsk_socket_config socket_config = {
      .rx_size = ring_size,
      .tx_size = ring_size,
      .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
      .xdp_flags = XDP_FLAGS_DRV_MODE,
      .bind_flags = XDP_USE_NEED_WAKEUP,
  };
  // libxdp creates a context's rings on the first socket bound to its (ifname, queue)
  // (context 0's were made with the UMEM) and binds every socket after the UMEM's first
  // with XDP_SHARED_UMEM.
  struct cp_xsk_context_rings *rings = &umem->contexts[context];
  int result = xsk_socket__create_shared(&xsk->socket, ifname, queue, umem->umem, &xsk->rx, &xsk->tx,
                                         &rings->fill, &rings->completion, &socket_config);
  if (result != 0) {
    free(xsk);
    return result < 0 ? result : -result;
  }
  int fd = xsk_socket__fd(xsk->socket);
  // Copy mode builds at most 32 skbs per sendto() unless told otherwise (kernel 6.17+;
  // older kernels answer ENOPROTOOPT and keep 32).
  unsigned budget = ring_size;
  (void)setsockopt(fd, SOL_XDP, CP_XDP_MAX_TX_SKB_BUDGET, &budget, sizeof(budget));
  struct xdp_options options = {0};
  socklen_t length = sizeof(options);
  *zero_copy = getsockopt(fd, SOL_XDP, XDP_OPTIONS, &options, &length) == 0 &&
               (options.flags & XDP_OPTIONS_ZEROCOPY) != 0;
  CP_EXPORT_RING(rx, xsk->rx);
  CP_EXPORT_RING(tx, xsk->tx);
  CP_EXPORT_RING(fill, rings->fill);
  CP_EXPORT_RING(completion, rings->completion);
  *out = xsk;
  return fd;
}

void cp_xsk_close(cp_xsk *xsk) {
  if (xsk == NULL) return;
  xsk_socket__delete(xsk->socket);
  free(xsk);
}

int cp_interface_rx_queues(const char *ifname) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct ethtool_channels channels = {.cmd = ETHTOOL_GCHANNELS};
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", ifname);
  request.ifr_data = (void *)&channels;
  int result = ioctl(fd, SIOCETHTOOL, &request);
  int error = errno;
  close(fd);
  if (result < 0) return -error;
  // Drivers count their queues either as combined channels or as RX channels (a veth
  // reports both, combined being the smaller of its RX and TX counts).
  uint32_t queues = channels.combined_count > channels.rx_count ? channels.combined_count : channels.rx_count;
  return queues > 0 ? (int)queues : -EOPNOTSUPP;
}

int cp_xsk_statistics(int fd, cp_xdp_statistics *statistics) {
  struct xdp_statistics kernel = {0};
  socklen_t length = sizeof(kernel);
  if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &kernel, &length) != 0) return -errno;
  memcpy(statistics, &kernel, sizeof(kernel));
  return 0;
}

long cp_xsk_kick(int fd) {
  ssize_t sent = sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
  return sent < 0 ? -errno : (long)sent;
}

int cp_xdp_load(uint64_t *instructions, size_t count, const size_t *map_slots, size_t map_slot_count,
                uint32_t entries, int *map_fd, char *log, size_t log_size) {
  int map = bpf_map_create(BPF_MAP_TYPE_XSKMAP, "vxs_xsks", sizeof(uint32_t), sizeof(int), entries, NULL);
  if (map < 0) return map;
  struct bpf_insn *program = (struct bpf_insn *)instructions;
  for (size_t i = 0; i < map_slot_count; i++) {
    program[map_slots[i]].src_reg = BPF_PSEUDO_MAP_FD;
    program[map_slots[i]].imm = map;
  }
  if (log_size > 0) log[0] = 0;
  LIBBPF_OPTS(bpf_prog_load_opts, options, .log_buf = log, .log_size = (uint32_t)log_size,
              .log_level = log_size > 0 ? 1 : 0);
  int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "vxs_steer", "GPL", program, count, &options);
  if (fd < 0) {
    int error = fd;
    close(map);
    return error;
  }
  *map_fd = map;
  return fd;
}

int cp_xdp_attach(int ifindex, int prog_fd) {
  // A program attached the old way (netlink) would make the link fail with EBUSY: one
  // left by a daemon killed before the links existed, or by another tool.
  (void)bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL);
  LIBBPF_OPTS(bpf_link_create_opts, options, .flags = XDP_FLAGS_DRV_MODE);
  int link = bpf_link_create(prog_fd, ifindex, BPF_XDP, &options);
  return link;
}

int cp_xdp_attached_id(int ifindex, uint32_t *id) {
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  int result = bpf_xdp_query(ifindex, XDP_FLAGS_DRV_MODE, &query);
  if (result < 0) return result;
  *id = query.drv_prog_id;
  return 0;
}

int cp_xdp_map_set(int map_fd, uint32_t key, int socket_fd) {
  int result = bpf_map_update_elem(map_fd, &key, &socket_fd, 0);
  return result < 0 ? -errno : 0;
}

int cp_tc_program_load(uint64_t *instructions, size_t count, const char *name, char *log, size_t log_size) {
  if (log_size > 0) log[0] = 0;
  LIBBPF_OPTS(bpf_prog_load_opts, options, .log_buf = log, .log_size = (uint32_t)log_size,
              .log_level = log_size > 0 ? 1 : 0);
  int fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, name, "GPL", (struct bpf_insn *)instructions,
                         count, &options);
  return fd < 0 ? -errno : fd;
}

int cp_tcx_attach_ingress(int ifindex, int prog_fd) {
  int link = bpf_link_create(prog_fd, ifindex, (enum bpf_attach_type)CP_BPF_TCX_INGRESS, NULL);
  return link < 0 ? -errno : link;
}

int cp_tc_attach_clsact(int ifindex, int egress_fd, int ingress_fd) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
  int result = bpf_tc_hook_create(&hook);
  if (result < 0 && result != -EEXIST) return result;
  int fds[2] = {egress_fd, ingress_fd};
  enum bpf_tc_attach_point points[2] = {BPF_TC_EGRESS, BPF_TC_INGRESS};
  for (int i = 0; i < 2; i++) {
    if (fds[i] < 0) continue;
    hook.attach_point = points[i];
    LIBBPF_OPTS(bpf_tc_opts, options, .prog_fd = fds[i]);
    result = bpf_tc_attach(&hook, &options);
    if (result < 0) return result;
  }
  return 0;
}
