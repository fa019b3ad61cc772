// rtnetlink through libnl-3: route and neighbour queries, NTF_USE resolution triggers,
// and link/neighbour/route notifications for the next-hop resolver.
//
// Two sockets: requests and their replies must never interleave with notifications, so
// queries use their own socket (sequence-checked, auto-ACK) and notifications arrive on
// a second, non-blocking one that the resolver polls.
#define _GNU_SOURCE
#include "CPacket.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <net/if.h>
#include <linux/rtnetlink.h>
#include <linux/neighbour.h>
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/socket.h>
#include <netlink/errno.h>

struct cp_nl {
  struct nl_sock *request;
  struct nl_sock *events;
};

// libnl reports -NLE_* codes; map the ones we meet to -errno so Swift sees one kind.
static int to_errno(int nle) {
  if (nle >= 0) return nle;
  switch (-nle) {
  case NLE_NOMEM: return -ENOMEM;
  case NLE_AGAIN: return -EAGAIN;
  case NLE_INTR: return -EINTR;
  case NLE_INVAL: return -EINVAL;
  case NLE_OBJ_NOTFOUND: return -ENOENT;
  case NLE_NODEV: return -ENODEV;
  case NLE_PERM: return -EPERM;
  case NLE_NOACCESS: return -EACCES;
  case NLE_NOADDR: return -EADDRNOTAVAIL;
  case NLE_OPNOTSUPP: return -EOPNOTSUPP;
  case NLE_AF_NOSUPPORT: return -EAFNOSUPPORT;
  case NLE_EXIST: return -EEXIST;
  case NLE_BUSY: return -EBUSY;
  case NLE_RANGE: return -ERANGE;
  case NLE_MSGSIZE: return -EMSGSIZE;
  default: return -EIO;
  }
}

const char *cp_nl_strerror(int error) { return strerror(error < 0 ? -error : error); }

int cp_nl_open(cp_nl **out) {
  cp_nl *nl = calloc(1, sizeof *nl);
  if (nl == NULL) return -ENOMEM;
  nl->request = nl_socket_alloc();
  nl->events = nl_socket_alloc();
  int err = -ENOMEM;
  if (nl->request == NULL || nl->events == NULL) goto fail;
  if ((err = nl_connect(nl->request, NETLINK_ROUTE)) < 0) goto fail_nle;
  if ((err = nl_connect(nl->events, NETLINK_ROUTE)) < 0) goto fail_nle;
  nl_socket_disable_seq_check(nl->events);
  if ((err = nl_socket_add_memberships(nl->events, RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_ROUTE,
                                       RTNLGRP_IPV6_ROUTE, 0)) < 0)
    goto fail_nle;
  if ((err = nl_socket_set_nonblocking(nl->events)) < 0) goto fail_nle;
  // A neighbour storm on a busy underlay must not overrun us silently; overruns are
  // still reported (CP_NL_EVENT_OVERRUN) and answered with a full refresh.
  nl_socket_set_buffer_size(nl->events, 1 << 20, 0);
  *out = nl;
  return 0;
fail_nle:
  err = to_errno(err);
fail:
  cp_nl_close(nl);
  return err;
}

void cp_nl_close(cp_nl *nl) {
  if (nl == NULL) return;
  if (nl->request) nl_socket_free(nl->request);
  if (nl->events) nl_socket_free(nl->events);
  free(nl);
}

int cp_nl_event_fd(const cp_nl *nl) { return nl_socket_get_fd(nl->events); }

struct event_state {
  int ifindex;
  int bits;
};

static int on_event(struct nl_msg *msg, void *arg) {
  struct event_state *state = arg;
  struct nlmsghdr *header = nlmsg_hdr(msg);
  switch (header->nlmsg_type) {
  case RTM_NEWLINK:
  case RTM_DELLINK: {
    struct ifinfomsg *info = nlmsg_data(header);
    if (header->nlmsg_len >= NLMSG_LENGTH(sizeof *info) && info->ifi_index == state->ifindex)
      state->bits |= CP_NL_EVENT_LINK;
    break;
  }
  case RTM_NEWNEIGH:
  case RTM_DELNEIGH: {
    struct ndmsg *neighbour = nlmsg_data(header);
    if (header->nlmsg_len >= NLMSG_LENGTH(sizeof *neighbour) && neighbour->ndm_ifindex == state->ifindex)
      state->bits |= CP_NL_EVENT_NEIGH;
    break;
  }
  case RTM_NEWROUTE:
  case RTM_DELROUTE:
    state->bits |= CP_NL_EVENT_ROUTE;
    break;
  default:
    break;
  }
  return NL_OK;
}

int cp_nl_read_events(cp_nl *nl, int ifindex) {
  struct event_state state = {ifindex, 0};
  struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
  if (cb == NULL) return CP_NL_EVENT_OVERRUN;
  nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_event, &state);
  nl_cb_set(cb, NL_CB_SEQ_CHECK, NL_CB_CUSTOM, NULL, NULL);
  for (int round = 0; round < 1024; round++) {
    int result = nl_recvmsgs(nl->events, cb);
    if (result == -NLE_AGAIN) break;
    if (result == -NLE_INTR) continue;
    if (result < 0) {
      // ENOBUFS (overrun) or a malformed message: the caller re-reads everything.
      state.bits |= CP_NL_EVENT_OVERRUN;
      if (result != -NLE_NOMEM && result != -NLE_MSG_OVERFLOW && result != -NLE_DUMP_INTR) break;
    }
  }
  nl_cb_put(cb);
  return state.bits;
}

// One request, one reply parsed by `parse`, then the ACK (or an NLMSG_ERROR instead).
struct reply {
  int (*parse)(struct nlmsghdr *, void *);
  void *arg;
  int found;
  int error;
  int done;
};

static int on_reply(struct nl_msg *msg, void *arg) {
  struct reply *reply = arg;
  int result = reply->parse(nlmsg_hdr(msg), reply->arg);
  if (result < 0) reply->error = result;
  else reply->found = 1;
  return NL_OK;
}

static int on_error(struct sockaddr_nl *who, struct nlmsgerr *err, void *arg) {
  (void)who;
  struct reply *reply = arg;
  reply->error = err->error;  // already -errno
  reply->done = 1;
  return NL_STOP;
}

static int on_ack(struct nl_msg *msg, void *arg) {
  (void)msg;
  ((struct reply *)arg)->done = 1;
  return NL_STOP;
}

static int transact(cp_nl *nl, struct nl_msg *msg, int (*parse)(struct nlmsghdr *, void *), void *arg) {
  struct reply reply = {parse, arg, 0, 0, 0};
  struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
  if (cb == NULL) {
    nlmsg_free(msg);
    return -ENOMEM;
  }
  if (parse) nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_reply, &reply);
  nl_cb_err(cb, NL_CB_CUSTOM, on_error, &reply);
  nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, &reply);
  int result = nl_send_auto(nl->request, msg);
  nlmsg_free(msg);
  if (result < 0) {
    nl_cb_put(cb);
    return to_errno(result);
  }
  // Read until the ACK or an error: the reply, if any, comes first, in its own
  // datagram; leaving the ACK queued would make the next request read it as its answer.
  for (int round = 0; round < 64 && !reply.done; round++) {
    result = nl_recvmsgs(nl->request, cb);
    if (result == -NLE_INTR) continue;
    if (result < 0) break;
  }
  nl_cb_put(cb);
  if (reply.error < 0) return reply.error;
  if (result < 0) return to_errno(result);
  if (parse && !reply.found) return -ENOENT;
  return 0;
}

// MARK: Link

struct link_out {
  int ifindex;
  uint8_t *mac;
  uint32_t *mtu;
  uint32_t *flags;
};

static int parse_link(struct nlmsghdr *header, void *arg) {
  struct link_out *out = arg;
  if (header->nlmsg_type != RTM_NEWLINK) return 0;
  struct ifinfomsg *info = nlmsg_data(header);
  if (info->ifi_index != out->ifindex) return 0;
  struct nlattr *tb[IFLA_MAX + 1];
  int err = nlmsg_parse(header, sizeof *info, tb, IFLA_MAX, NULL);
  if (err < 0) return to_errno(err);
  *out->flags = info->ifi_flags;
  if (tb[IFLA_MTU]) *out->mtu = nla_get_u32(tb[IFLA_MTU]);
  if (tb[IFLA_ADDRESS] && nla_len(tb[IFLA_ADDRESS]) == 6) memcpy(out->mac, nla_data(tb[IFLA_ADDRESS]), 6);
  return 0;
}

int cp_nl_link(cp_nl *nl, int ifindex, uint8_t mac[6], uint32_t *mtu, uint32_t *flags) {
  struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETLINK, 0);
  if (msg == NULL) return -ENOMEM;
  struct ifinfomsg info;
  memset(&info, 0, sizeof info);
  info.ifi_family = AF_UNSPEC;
  info.ifi_index = ifindex;
  if (nlmsg_append(msg, &info, sizeof info, NLMSG_ALIGNTO) < 0) {
    nlmsg_free(msg);
    return -ENOMEM;
  }
  memset(mac, 0, 6);
  *mtu = 0;
  *flags = 0;
  struct link_out out = {ifindex, mac, mtu, flags};
  return transact(nl, msg, parse_link, &out);
}

// MARK: Route

struct route_out {
  uint8_t *gateway;
  int *gateway_len;
  int *ifindex;
};

static int parse_route(struct nlmsghdr *header, void *arg) {
  struct route_out *out = arg;
  if (header->nlmsg_type != RTM_NEWROUTE) return 0;
  struct rtmsg *route = nlmsg_data(header);
  struct nlattr *tb[RTA_MAX + 1];
  int err = nlmsg_parse(header, sizeof *route, tb, RTA_MAX, NULL);
  if (err < 0) return to_errno(err);
  if (route->rtm_type == RTN_UNREACHABLE || route->rtm_type == RTN_BLACKHOLE ||
      route->rtm_type == RTN_PROHIBIT)
    return -ENETUNREACH;
  *out->gateway_len = 0;
  if (tb[RTA_GATEWAY]) {
    int length = nla_len(tb[RTA_GATEWAY]);
    if (length == 4 || length == 16) {
      memcpy(out->gateway, nla_data(tb[RTA_GATEWAY]), (size_t)length);
      *out->gateway_len = length;
    }
  }
  *out->ifindex = tb[RTA_OIF] ? (int)nla_get_u32(tb[RTA_OIF]) : 0;
  return 0;
}

int cp_nl_route_get(cp_nl *nl, int family, const uint8_t *destination, int oif, uint8_t gateway[16],
                    int *gateway_len, int *out_ifindex) {
  int length = family == AF_INET ? 4 : 16;
  struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETROUTE, 0);
  if (msg == NULL) return -ENOMEM;
  struct rtmsg route;
  memset(&route, 0, sizeof route);
  route.rtm_family = (unsigned char)family;
  route.rtm_dst_len = (unsigned char)(length * 8);
  if (nlmsg_append(msg, &route, sizeof route, NLMSG_ALIGNTO) < 0 ||
      nla_put(msg, RTA_DST, length, destination) < 0 || (oif > 0 && nla_put_u32(msg, RTA_OIF, (uint32_t)oif) < 0)) {
    nlmsg_free(msg);
    return -ENOMEM;
  }
  *gateway_len = 0;
  *out_ifindex = 0;
  struct route_out out = {gateway, gateway_len, out_ifindex};
  return transact(nl, msg, parse_route, &out);
}

// MARK: Neighbour

struct neigh_out {
  uint8_t *mac;
  int *has_mac;
  uint16_t *state;
};

static int parse_neigh(struct nlmsghdr *header, void *arg) {
  struct neigh_out *out = arg;
  if (header->nlmsg_type != RTM_NEWNEIGH) return 0;
  struct ndmsg *neighbour = nlmsg_data(header);
  struct nlattr *tb[NDA_MAX + 1];
  int err = nlmsg_parse(header, sizeof *neighbour, tb, NDA_MAX, NULL);
  if (err < 0) return to_errno(err);
  *out->state = neighbour->ndm_state;
  if (tb[NDA_LLADDR] && nla_len(tb[NDA_LLADDR]) == 6) {
    memcpy(out->mac, nla_data(tb[NDA_LLADDR]), 6);
    *out->has_mac = 1;
  }
  return 0;
}

static struct nl_msg *neigh_message(int type, int flags, int family, const uint8_t *destination,
                                    int ifindex, uint16_t state, uint8_t ndm_flags) {
  int length = family == AF_INET ? 4 : 16;
  struct nl_msg *msg = nlmsg_alloc_simple(type, flags);
  if (msg == NULL) return NULL;
  struct ndmsg neighbour;
  memset(&neighbour, 0, sizeof neighbour);
  neighbour.ndm_family = (unsigned char)family;
  neighbour.ndm_ifindex = ifindex;
  neighbour.ndm_state = state;
  neighbour.ndm_flags = ndm_flags;
  if (nlmsg_append(msg, &neighbour, sizeof neighbour, NLMSG_ALIGNTO) < 0 ||
      nla_put(msg, NDA_DST, length, destination) < 0) {
    nlmsg_free(msg);
    return NULL;
  }
  return msg;
}

int cp_nl_neigh_get(cp_nl *nl, int family, const uint8_t *destination, int ifindex, uint8_t mac[6],
                    int *has_mac, uint16_t *state) {
  struct nl_msg *msg = neigh_message(RTM_GETNEIGH, 0, family, destination, ifindex, 0, 0);
  if (msg == NULL) return -ENOMEM;
  *has_mac = 0;
  *state = 0;
  struct neigh_out out = {mac, has_mac, state};
  return transact(nl, msg, parse_neigh, &out);
}

int cp_nl_neigh_use(cp_nl *nl, int family, const uint8_t *destination, int ifindex) {
  // NUD_NONE + NTF_USE: create the entry if absent and let the kernel resolve it, exactly
  // as if the host itself had a packet for it (neigh_event_send).
  struct nl_msg *msg = neigh_message(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, family, destination,
                                     ifindex, NUD_NONE, NTF_USE);
  if (msg == NULL) return -ENOMEM;
  return transact(nl, msg, NULL, NULL);
}
