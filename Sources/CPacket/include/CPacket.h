// CPacket: C bindings for vxswitch. Only what Swift cannot express lives here:
// kernel ABI structures and constants (AF_PACKET, TPACKET_V2/V3), libpcap and libnl entry
// points, and a few inline helpers (prefetch). Every symbol of our own is prefixed `cp_`.
//
// The kernel structures are mirrored here (cp_*) rather than included, so that Swift
// never sees <linux/if_packet.h> next to glibc's <netpacket/packet.h> (they define the
// same types); packet.c includes the kernel headers and _Static_asserts that every
// mirrored offset and constant matches.
#ifndef CPACKET_H
#define CPACKET_H

#include <stdint.h>
#include <stddef.h>
#include <pcap/pcap.h>

/// Hints the CPU to pull the cache line at `p` into L1 ahead of a read.
static inline void cp_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Hints the CPU to pull the cache line at `p` ahead of a write.
static inline void cp_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

// MARK: - AF_PACKET constants (linux/if_packet.h, linux/if_ether.h)

enum {
  CP_SOL_PACKET = 263,
  CP_ETH_P_ALL = 0x0003,
  CP_PACKET_ADD_MEMBERSHIP = 1,
  CP_PACKET_MR_PROMISC = 1,
  CP_PACKET_RX_RING = 5,
  CP_PACKET_STATISTICS = 6,
  CP_PACKET_VERSION = 10,
  CP_PACKET_LOSS = 14,
  CP_PACKET_VNET_HDR = 15,
  CP_PACKET_TX_RING = 13,
  CP_PACKET_FANOUT = 18,
  CP_PACKET_QDISC_BYPASS = 20,
  CP_PACKET_IGNORE_OUTGOING = 23,
  CP_TPACKET_V2 = 1,
  CP_TPACKET_V3 = 2,
  CP_PACKET_FANOUT_HASH = 0,
  CP_PACKET_FANOUT_FLAG_UNIQUEID = 0x2000,
  CP_TPACKET_ALIGNMENT = 16,
};

// tp_status bits (RX: block and frame; TX: slot).
enum {
  CP_TP_STATUS_KERNEL = 0,
  CP_TP_STATUS_USER = 1 << 0,
  CP_TP_STATUS_COPY = 1 << 1,
  CP_TP_STATUS_LOSING = 1 << 2,
  CP_TP_STATUS_CSUMNOTREADY = 1 << 3,
  CP_TP_STATUS_VLAN_VALID = 1 << 4,
  CP_TP_STATUS_BLK_TMO = 1 << 5,
  CP_TP_STATUS_VLAN_TPID_VALID = 1 << 6,
  CP_TP_STATUS_CSUM_VALID = 1 << 7,
  CP_TP_STATUS_AVAILABLE = 0,
  CP_TP_STATUS_SEND_REQUEST = 1 << 0,
  CP_TP_STATUS_SENDING = 1 << 1,
  CP_TP_STATUS_WRONG_FORMAT = 1 << 2,
};

// MARK: - Ring layouts (mirrors of the kernel's, checked in packet.c)

/// `struct tpacket3_hdr`: one received frame in a V3 block (also a V3 TX slot header).
typedef struct {
  uint32_t tp_next_offset;
  uint32_t tp_sec;
  uint32_t tp_nsec;
  uint32_t tp_snaplen;
  uint32_t tp_len;
  uint32_t tp_status;
  uint16_t tp_mac;
  uint16_t tp_net;
  uint32_t tp_rxhash;
  uint32_t tp_vlan_tci;
  uint16_t tp_vlan_tpid;
  uint8_t tp_padding_hv1[2];
  uint8_t tp_padding[8];
} cp_tpacket3_hdr;

/// `struct tpacket_block_desc` with its `tpacket_hdr_v1` (version 1 block header).
typedef struct {
  uint32_t version;
  uint32_t offset_to_priv;
  uint32_t block_status;
  uint32_t num_pkts;
  uint32_t offset_to_first_pkt;
  uint32_t blk_len;
  uint64_t seq_num;
  uint32_t ts_first_sec, ts_first_nsec;
  uint32_t ts_last_sec, ts_last_nsec;
} cp_tpacket_block_desc;

/// `struct tpacket2_hdr`: one V2 TX (or RX) slot header.
typedef struct {
  uint32_t tp_status;
  uint32_t tp_len;
  uint32_t tp_snaplen;
  uint16_t tp_mac;
  uint16_t tp_net;
  uint32_t tp_sec;
  uint32_t tp_nsec;
  uint16_t tp_vlan_tci;
  uint16_t tp_vlan_tpid;
  uint8_t tp_padding[4];
} cp_tpacket2_hdr;

/// Where the kernel reads a TX frame's bytes when PACKET_TX_HAS_OFF is off:
/// `tp_hdrlen - sizeof(struct sockaddr_ll)`, i.e. TPACKET_ALIGN(sizeof(header)).
size_t cp_tpacket2_tx_data_offset(void);
size_t cp_tpacket3_tx_data_offset(void);
/// Offsets of the status and length words in a TX slot of each version.
size_t cp_tpacket2_status_offset(void);
size_t cp_tpacket2_len_offset(void);
size_t cp_tpacket3_status_offset(void);
size_t cp_tpacket3_len_offset(void);

// MARK: - Socket helpers (return 0 / a value, or -errno; never retry themselves)

/// socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, protocol 0): receives nothing until bound
/// with a protocol, so no frame from another interface slips in before bind().
int cp_packet_socket(void);
/// bind() to an interface; `protocol` is host order (ETH_P_ALL to receive, 0 to only send).
int cp_packet_bind(int fd, int ifindex, uint16_t protocol);
int cp_setsockopt_int(int fd, int level, int option, int value);
/// PACKET_RX_RING / PACKET_TX_RING with a tpacket_req3 (V3) or tpacket_req (V2).
int cp_packet_set_ring(int fd, int option, int version, unsigned block_size, unsigned block_nr,
                       unsigned frame_size, unsigned frame_nr, unsigned retire_blk_tov_ms);
/// PACKET_ADD_MEMBERSHIP PACKET_MR_PROMISC on `ifindex` (dropped when the socket closes).
int cp_packet_add_promisc(int fd, int ifindex);
/// PACKET_FANOUT; with CP_PACKET_FANOUT_FLAG_UNIQUEID the kernel picks the id, which
/// cp_packet_fanout_id reads back for the other members.
int cp_packet_fanout(int fd, uint16_t id, uint16_t type_flags);
int cp_packet_fanout_id(int fd);
/// PACKET_STATISTICS (tpacket_stats_v3; the kernel resets its counters on each read).
int cp_packet_statistics(int fd, uint32_t *packets, uint32_t *drops, uint32_t *freeze_q_cnt);
/// The TX kick: sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0). Bytes queued or -errno.
long cp_packet_tx_kick(int fd);

/// Compiles `expression` with libpcap for Ethernet (pcap_open_dead + pcap_compile) and
/// attaches it with SO_ATTACH_FILTER. On a compile error returns -EINVAL and writes
/// libpcap's message to `error`.
int cp_attach_pcap_filter(int fd, const char *expression, char *error, size_t error_size);
/// Attaches a one-instruction classic BPF program `ret #0`: every datagram is dropped
/// before it is queued (used on the UDP socket that only holds the VXLAN port).
int cp_attach_drop_all_filter(int fd);

/// Legacy ethtool feature switches through SIOCETHTOOL on an AF_INET socket `fd`.
enum {
  CP_FEATURE_GRO = 1,
  CP_FEATURE_GSO = 2,
  CP_FEATURE_TSO = 3,
  CP_FEATURE_LRO = 4,
};
/// Reads a feature: 0/1, or -errno (-EOPNOTSUPP when the driver has no such switch).
int cp_ethtool_get_feature(int fd, const char *ifname, int feature);
int cp_ethtool_set_feature(int fd, const char *ifname, int feature, int on);
/// SIOCGIFMTU / SIOCGIFHWADDR helpers.
int cp_interface_mtu(int fd, const char *ifname);
int cp_interface_hwaddr(int fd, const char *ifname, uint8_t mac[6]);
/// Sets IFF_UP on an interface (SIOCGIFFLAGS / SIOCSIFFLAGS). 0 or -errno.
int cp_interface_set_up(int fd, const char *ifname);

/// Creates (or attaches to) the tap device `ifname` with IFF_NO_PI and IFF_VNET_HDR, a
/// `virtio_net_hdr` of `vnet_header_size` bytes, and TUNSETOFFLOAD `offloads`; opened
/// non-blocking. The fd (the device lives as long as it is open) or -errno.
int cp_tap_open(const char *ifname, int vnet_header_size, unsigned offloads);

/// Pins the calling thread to one CPU (pthread_setaffinity_np).
int cp_pin_current_thread(int cpu);
/// Linux thread id of the calling thread.
int cp_gettid(void);
/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): fd or -errno.
int cp_eventfd(void);
/// Names the calling thread (15 characters at most are kept).
void cp_set_thread_name(const char *name);
/// setns(fd, CLONE_NEWNET) for the calling thread. 0 or -errno.
int cp_setns_net(int fd);

#include "CPacketXDP.h"

// MARK: - libnl (route/neighbour/link), all calls on the thread that owns the handle

typedef struct cp_nl cp_nl;

/// Bits cp_nl_read_events reports.
enum {
  CP_NL_EVENT_LINK = 1,
  CP_NL_EVENT_NEIGH = 2,
  CP_NL_EVENT_ROUTE = 4,
  /// Notifications were lost (socket overrun) or unreadable: refresh everything.
  CP_NL_EVENT_OVERRUN = 8,
};

/// Opens two rtnetlink sockets: one for requests, one subscribed to link, neighbour and
/// IPv4/IPv6 route notifications (non-blocking; poll cp_nl_event_fd). -errno on failure.
int cp_nl_open(cp_nl **out);
void cp_nl_close(cp_nl *nl);
int cp_nl_event_fd(const cp_nl *nl);
/// Reads every pending notification. Link and neighbour events count only for
/// `ifindex`. Returns the CP_NL_EVENT_* bits seen (0 if none).
int cp_nl_read_events(cp_nl *nl, int ifindex);
/// RTM_GETLINK: MAC, MTU and flags (IFF_UP, IFF_RUNNING, IFF_LOWER_UP) of `ifindex`.
int cp_nl_link(cp_nl *nl, int ifindex, uint8_t mac[6], uint32_t *mtu, uint32_t *flags);
/// RTM_GETROUTE for `destination` (4 or 16 bytes) out of `oif` (0 = any), like
/// `ip route get`: the gateway (gateway_len 0 when on-link) and the output interface.
int cp_nl_route_get(cp_nl *nl, int family, const uint8_t *destination, int oif, uint8_t gateway[16],
                    int *gateway_len, int *out_ifindex);
/// RTM_GETNEIGH for one entry: its MAC (when it has one) and NUD state. -ENOENT if none.
int cp_nl_neigh_get(cp_nl *nl, int family, const uint8_t *destination, int ifindex, uint8_t mac[6],
                    int *has_mac, uint16_t *state);
/// RTM_NEWNEIGH with NTF_USE (`ip neigh replace ADDR dev DEV use`): the kernel creates the
/// entry if needed and starts resolution (ARP / ND) or re-validates a stale one.
int cp_nl_neigh_use(cp_nl *nl, int family, const uint8_t *destination, int ifindex);
/// libnl's text for its error code, or strerror for an -errno.
const char *cp_nl_strerror(int error);

/// NUD state bits (linux/neighbour.h).
enum {
  CP_NUD_INCOMPLETE = 0x01,
  CP_NUD_REACHABLE = 0x02,
  CP_NUD_STALE = 0x04,
  CP_NUD_DELAY = 0x08,
  CP_NUD_PROBE = 0x10,
  CP_NUD_FAILED = 0x20,
  CP_NUD_NOARP = 0x40,
  CP_NUD_PERMANENT = 0x80,
};

#endif
