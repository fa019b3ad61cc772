// AF_PACKET, BPF, ethtool and thread helpers. Each returns -errno on failure and does
// not retry: the Swift side (Syscall.swift) retries EINTR and turns errors into types.
#define _GNU_SOURCE
#include "CPacket.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <linux/filter.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <linux/neighbour.h>

// The mirrors in CPacket.h must match the kernel ABI exactly.
_Static_assert(CP_SOL_PACKET == SOL_PACKET, "SOL_PACKET");
_Static_assert(CP_ETH_P_ALL == ETH_P_ALL, "ETH_P_ALL");
_Static_assert(CP_PACKET_ADD_MEMBERSHIP == PACKET_ADD_MEMBERSHIP, "");
_Static_assert(CP_PACKET_MR_PROMISC == PACKET_MR_PROMISC, "");
_Static_assert(CP_PACKET_RX_RING == PACKET_RX_RING, "");
_Static_assert(CP_PACKET_TX_RING == PACKET_TX_RING, "");
_Static_assert(CP_PACKET_STATISTICS == PACKET_STATISTICS, "");
_Static_assert(CP_PACKET_VERSION == PACKET_VERSION, "");
_Static_assert(CP_PACKET_LOSS == PACKET_LOSS, "");
_Static_assert(CP_PACKET_FANOUT == PACKET_FANOUT, "");
_Static_assert(CP_PACKET_QDISC_BYPASS == PACKET_QDISC_BYPASS, "");
_Static_assert(CP_PACKET_IGNORE_OUTGOING == PACKET_IGNORE_OUTGOING, "");
_Static_assert(CP_TPACKET_V2 == TPACKET_V2 && CP_TPACKET_V3 == TPACKET_V3, "");
_Static_assert(CP_PACKET_FANOUT_HASH == PACKET_FANOUT_HASH, "");
_Static_assert(CP_PACKET_FANOUT_FLAG_UNIQUEID == PACKET_FANOUT_FLAG_UNIQUEID, "");
_Static_assert(CP_TPACKET_ALIGNMENT == TPACKET_ALIGNMENT, "");
_Static_assert(CP_TP_STATUS_USER == TP_STATUS_USER && CP_TP_STATUS_COPY == TP_STATUS_COPY, "");
_Static_assert(CP_TP_STATUS_LOSING == TP_STATUS_LOSING, "");
_Static_assert(CP_TP_STATUS_CSUMNOTREADY == TP_STATUS_CSUMNOTREADY, "");
_Static_assert(CP_TP_STATUS_VLAN_VALID == TP_STATUS_VLAN_VALID, "");
_Static_assert(CP_TP_STATUS_BLK_TMO == TP_STATUS_BLK_TMO, "");
_Static_assert(CP_TP_STATUS_VLAN_TPID_VALID == TP_STATUS_VLAN_TPID_VALID, "");
_Static_assert(CP_TP_STATUS_CSUM_VALID == TP_STATUS_CSUM_VALID, "");
_Static_assert(CP_TP_STATUS_SEND_REQUEST == TP_STATUS_SEND_REQUEST, "");
_Static_assert(CP_TP_STATUS_SENDING == TP_STATUS_SENDING, "");
_Static_assert(CP_TP_STATUS_WRONG_FORMAT == TP_STATUS_WRONG_FORMAT, "");
_Static_assert(CP_NUD_REACHABLE == NUD_REACHABLE && CP_NUD_STALE == NUD_STALE, "");
_Static_assert(CP_NUD_PERMANENT == NUD_PERMANENT && CP_NUD_FAILED == NUD_FAILED, "");
_Static_assert(CP_NUD_NOARP == NUD_NOARP && CP_NUD_PROBE == NUD_PROBE && CP_NUD_DELAY == NUD_DELAY, "");

#define SAME(a, b, f) _Static_assert(offsetof(a, f) == offsetof(b, f), #a "." #f)
_Static_assert(sizeof(cp_tpacket3_hdr) == sizeof(struct tpacket3_hdr), "tpacket3_hdr size");
SAME(cp_tpacket3_hdr, struct tpacket3_hdr, tp_next_offset);
SAME(cp_tpacket3_hdr, struct tpacket3_hdr, tp_snaplen);
SAME(cp_tpacket3_hdr, struct tpacket3_hdr, tp_len);
SAME(cp_tpacket3_hdr, struct tpacket3_hdr, tp_status);
SAME(cp_tpacket3_hdr, struct tpacket3_hdr, tp_mac);
SAME(cp_tpacket3_hdr, struct tpacket3_hdr, tp_net);
_Static_assert(offsetof(cp_tpacket3_hdr, tp_vlan_tci) ==
                   offsetof(struct tpacket3_hdr, hv1) + offsetof(struct tpacket_hdr_variant1, tp_vlan_tci),
               "tp_vlan_tci");
_Static_assert(offsetof(cp_tpacket3_hdr, tp_vlan_tpid) ==
                   offsetof(struct tpacket3_hdr, hv1) + offsetof(struct tpacket_hdr_variant1, tp_vlan_tpid),
               "tp_vlan_tpid");
_Static_assert(offsetof(cp_tpacket_block_desc, block_status) ==
                   offsetof(struct tpacket_block_desc, hdr) + offsetof(struct tpacket_hdr_v1, block_status),
               "block_status");
_Static_assert(offsetof(cp_tpacket_block_desc, num_pkts) ==
                   offsetof(struct tpacket_block_desc, hdr) + offsetof(struct tpacket_hdr_v1, num_pkts),
               "num_pkts");
_Static_assert(offsetof(cp_tpacket_block_desc, offset_to_first_pkt) ==
                   offsetof(struct tpacket_block_desc, hdr) +
                       offsetof(struct tpacket_hdr_v1, offset_to_first_pkt),
               "offset_to_first_pkt");
_Static_assert(sizeof(cp_tpacket2_hdr) == sizeof(struct tpacket2_hdr), "tpacket2_hdr size");
SAME(cp_tpacket2_hdr, struct tpacket2_hdr, tp_status);
SAME(cp_tpacket2_hdr, struct tpacket2_hdr, tp_len);
SAME(cp_tpacket2_hdr, struct tpacket2_hdr, tp_vlan_tci);

size_t cp_tpacket2_tx_data_offset(void) { return TPACKET2_HDRLEN - sizeof(struct sockaddr_ll); }
size_t cp_tpacket3_tx_data_offset(void) { return TPACKET3_HDRLEN - sizeof(struct sockaddr_ll); }
size_t cp_tpacket2_status_offset(void) { return offsetof(struct tpacket2_hdr, tp_status); }
size_t cp_tpacket2_len_offset(void) { return offsetof(struct tpacket2_hdr, tp_len); }
size_t cp_tpacket3_status_offset(void) { return offsetof(struct tpacket3_hdr, tp_status); }
size_t cp_tpacket3_len_offset(void) { return offsetof(struct tpacket3_hdr, tp_len); }

#define RETURN_ERRNO(expr) \
  do { if ((expr) < 0) return -errno; } while (0)

int cp_packet_socket(void) {
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  return fd < 0 ? -errno : fd;
}

int cp_packet_bind(int fd, int ifindex, uint16_t protocol) {
  struct sockaddr_ll address;
  memset(&address, 0, sizeof address);
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(protocol);
  address.sll_ifindex = ifindex;
  RETURN_ERRNO(bind(fd, (struct sockaddr *)&address, sizeof address));
  return 0;
}

int cp_setsockopt_int(int fd, int level, int option, int value) {
  RETURN_ERRNO(setsockopt(fd, level, option, &value, sizeof value));
  return 0;
}

int cp_packet_set_ring(int fd, int option, int version, unsigned block_size, unsigned block_nr,
                       unsigned frame_size, unsigned frame_nr, unsigned retire_blk_tov_ms) {
  if (version == TPACKET_V3) {
    struct tpacket_req3 request;
    memset(&request, 0, sizeof request);
    request.tp_block_size = block_size;
    request.tp_block_nr = block_nr;
    request.tp_frame_size = frame_size;
    request.tp_frame_nr = frame_nr;
    // A TX ring must leave the RX-only fields zero (the kernel rejects it otherwise).
    // No TP_FT_REQ_FILL_RXHASH: nothing reads tp_rxhash, and asking for it makes the
    // kernel dissect and siphash every received frame (about 3% of a sending site's
    // samples in a TCP run, under tpacket_rcv).
    if (option == PACKET_RX_RING) request.tp_retire_blk_tov = retire_blk_tov_ms;
    RETURN_ERRNO(setsockopt(fd, SOL_PACKET, option, &request, sizeof request));
  } else {
    struct tpacket_req request = {block_size, block_nr, frame_size, frame_nr};
    RETURN_ERRNO(setsockopt(fd, SOL_PACKET, option, &request, sizeof request));
  }
  return 0;
}

int cp_packet_add_promisc(int fd, int ifindex) {
  struct packet_mreq request;
  memset(&request, 0, sizeof request);
  request.mr_ifindex = ifindex;
  request.mr_type = PACKET_MR_PROMISC;
  RETURN_ERRNO(setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &request, sizeof request));
  return 0;
}

int cp_packet_fanout(int fd, uint16_t id, uint16_t type_flags) {
  int value = (int)id | ((int)type_flags << 16);
  RETURN_ERRNO(setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &value, sizeof value));
  return 0;
}

int cp_packet_fanout_id(int fd) {
  int value = 0;
  socklen_t length = sizeof value;
  RETURN_ERRNO(getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &value, &length));
  return value & 0xFFFF;
}

int cp_packet_statistics(int fd, uint32_t *packets, uint32_t *drops, uint32_t *freeze_q_cnt) {
  struct tpacket_stats_v3 stats;
  memset(&stats, 0, sizeof stats);
  socklen_t length = sizeof stats;
  RETURN_ERRNO(getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &stats, &length));
  *packets = stats.tp_packets;
  *drops = stats.tp_drops;
  *freeze_q_cnt = length >= sizeof stats ? stats.tp_freeze_q_cnt : 0;
  return 0;
}

long cp_packet_tx_kick(int fd) {
  ssize_t sent = sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
  return sent < 0 ? -errno : (long)sent;
}

int cp_attach_pcap_filter(int fd, const char *expression, char *error, size_t error_size) {
  pcap_t *dead = pcap_open_dead(DLT_EN10MB, 65535);
  if (dead == NULL) {
    snprintf(error, error_size, "pcap_open_dead failed");
    return -ENOMEM;
  }
  struct bpf_program program;
  if (pcap_compile(dead, &program, expression, 1, PCAP_NETMASK_UNKNOWN) != 0) {
    snprintf(error, error_size, "%s", pcap_geterr(dead));
    pcap_close(dead);
    return -EINVAL;
  }
  // struct bpf_insn and struct sock_filter have the same layout (code, jt, jf, k).
  _Static_assert(sizeof(struct bpf_insn) == sizeof(struct sock_filter), "bpf_insn");
  struct sock_fprog fprog = {(unsigned short)program.bf_len, (struct sock_filter *)program.bf_insns};
  int result = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0 ? -errno : 0;
  pcap_freecode(&program);
  pcap_close(dead);
  return result;
}

int cp_attach_drop_all_filter(int fd) {
  struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  struct sock_fprog fprog = {1, code};
  RETURN_ERRNO(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog));
  return 0;
}

static int ethtool_command(int feature, int set) {
  switch (feature) {
  case CP_FEATURE_GRO: return set ? ETHTOOL_SGRO : ETHTOOL_GGRO;
  case CP_FEATURE_GSO: return set ? ETHTOOL_SGSO : ETHTOOL_GGSO;
  case CP_FEATURE_TSO: return set ? ETHTOOL_STSO : ETHTOOL_GTSO;
  case CP_FEATURE_LRO: return set ? ETHTOOL_SFLAGS : ETHTOOL_GFLAGS;
  default: return -1;
  }
}

static int ethtool_ioctl(int fd, const char *ifname, struct ethtool_value *value) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", ifname);
  request.ifr_data = (void *)value;
  RETURN_ERRNO(ioctl(fd, SIOCETHTOOL, &request));
  return 0;
}

int cp_ethtool_get_feature(int fd, const char *ifname, int feature) {
  struct ethtool_value value = {(uint32_t)ethtool_command(feature, 0), 0};
  int result = ethtool_ioctl(fd, ifname, &value);
  if (result < 0) return result;
  if (feature == CP_FEATURE_LRO) return (value.data & ETH_FLAG_LRO) ? 1 : 0;
  return value.data ? 1 : 0;
}

int cp_ethtool_set_feature(int fd, const char *ifname, int feature, int on) {
  struct ethtool_value value = {(uint32_t)ethtool_command(feature, 1), on ? 1u : 0u};
  if (feature == CP_FEATURE_LRO) {
    // LRO is one bit of the flags word: read, flip, write back.
    struct ethtool_value flags = {ETHTOOL_GFLAGS, 0};
    int result = ethtool_ioctl(fd, ifname, &flags);
    if (result < 0) return result;
    value.data = on ? (flags.data | ETH_FLAG_LRO) : (flags.data & ~(uint32_t)ETH_FLAG_LRO);
  }
  return ethtool_ioctl(fd, ifname, &value);
}

int cp_interface_mtu(int fd, const char *ifname) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", ifname);
  RETURN_ERRNO(ioctl(fd, SIOCGIFMTU, &request));
  return request.ifr_mtu;
}

int cp_interface_hwaddr(int fd, const char *ifname, uint8_t mac[6]) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", ifname);
  RETURN_ERRNO(ioctl(fd, SIOCGIFHWADDR, &request));
  memcpy(mac, request.ifr_hwaddr.sa_data, 6);
  return 0;
}

int cp_pin_current_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  int result = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  return result == 0 ? 0 : -result;
}

int cp_gettid(void) { return (int)syscall(SYS_gettid); }

int cp_setns_net(int fd) { return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno; }

int cp_eventfd(void) {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd < 0 ? -errno : fd;
}

void cp_set_thread_name(const char *name) {
  char truncated[16];
  snprintf(truncated, sizeof truncated, "%s", name);
  pthread_setname_np(pthread_self(), truncated);
}

/* tap devices (linux/if_tun.h); the tunnel offload bits are newer than some libc headers */
#include <fcntl.h>
#include <linux/if_tun.h>

int cp_tap_open(const char *ifname, int vnet_header_size, unsigned offloads) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -errno;
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", ifname);
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  int size = vnet_header_size;
  if (ioctl(fd, TUNSETIFF, &request) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 ||
      ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads) < 0) {
    int saved = errno;
    close(fd);
    return -saved;
  }
  return fd;
}

int cp_interface_set_up(int fd, const char *ifname) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", ifname);
  RETURN_ERRNO(ioctl(fd, SIOCGIFFLAGS, &request));
  request.ifr_flags |= IFF_UP;
  RETURN_ERRNO(ioctl(fd, SIOCSIFFLAGS, &request));
  return 0;
}
