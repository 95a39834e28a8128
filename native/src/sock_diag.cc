// SPDX-License-Identifier: Apache-2.0
#include "sock_diag.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "record_c.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace {

// include/net/tcp_states.h
enum {
  kEstablished = 1,
  kFinWait1 = 4,
  kFinWait2 = 5,
  kTimeWait = 6,
  kCloseWait = 8,
  kLastAck = 9,
  kClosing = 11,
};

constexpr uint32_t kReportStates =
    (1u << kEstablished) | (1u << kFinWait1) | (1u << kFinWait2) | (1u << kCloseWait) | (1u << kLastAck) | (1u << kClosing);
// Our FIN is queued (write_seq counts it): tcp_close_state().
constexpr uint32_t kFinQueued = (1u << kFinWait1) | (1u << kFinWait2) | (1u << kClosing) | (1u << kLastAck) | (1u << kTimeWait);
// The peer's FIN arrived (tcp_fin(), which sets SOCK_DONE, moves the socket
// to one of these).
constexpr uint32_t kFinReceived = (1u << kCloseWait) | (1u << kClosing) | (1u << kLastAck) | (1u << kTimeWait);

}  // namespace

int OpenDiagSocket(uint64_t* netnsCookie) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return -errno;
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) cookie = 0;
  *netnsCookie = cookie;
  return fd;
}

int DumpTcp(int fd, std::vector<DiagRow>& rows) {
  struct {
    nlmsghdr nlh;
    inet_diag_req r;
  } req;
  memset(&req, 0, sizeof req);
  req.nlh.nlmsg_len = sizeof req;
  req.nlh.nlmsg_type = TCPDIAG_GETSOCK;
  req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nlh.nlmsg_seq = 1;
  req.r.idiag_family = AF_INET;  // ignored by the legacy dump: both families
  req.r.idiag_ext = 1u << (INET_DIAG_INFO - 1);
  req.r.idiag_states = kReportStates;
  req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) return errno;

  // The kernel fills each read with as many messages as fit (up to 32 KiB
  // per skb by default); a larger buffer would only be partly used.
  std::vector<uint8_t> buf(64 * 1024);
  for (int reads = 0; reads < (1 << 24); reads++) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EPIPE;
    int left = static_cast<int>(n);
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return e->error < 0 ? -e->error : EPROTO;
      }
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) continue;
      auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      DiagRow row = {};
      row.cookie = (static_cast<uint64_t>(m->id.idiag_cookie[1]) << 32) | m->id.idiag_cookie[0];
      row.state = m->idiag_state;
      // A kernel older (or newer) than these headers sends a shorter (or
      // longer) tcp_info: copy what both know, the rest stays zero.
      tcp_info ti = {};
      bool haveInfo = false;
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(inet_diag_msg)));
      for (rtattr* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type != INET_DIAG_INFO) continue;
        size_t len = RTA_PAYLOAD(a);
        memcpy(&ti, RTA_DATA(a), len < sizeof ti ? len : sizeof ti);
        haveInfo = true;
      }
      if (!haveInfo) continue;  // not a full socket (no tcp_info): nothing to report
      row.bytesAcked = ti.tcpi_bytes_acked;
      row.bytesReceived = ti.tcpi_bytes_received;
      row.srttUs = ti.tcpi_rtt;
      row.minRttUs = ti.tcpi_min_rtt == ~0u ? 0 : ti.tcpi_min_rtt;
      row.totalRetrans = ti.tcpi_total_retrans;
      row.lostOut = ti.tcpi_lost;
      row.segsIn = ti.tcpi_segs_in;
      row.segsOut = ti.tcpi_segs_out;
      row.packetsOut = ti.tcpi_unacked;
      row.notsent = ti.tcpi_notsent_bytes;
      rows.push_back(row);
    }
  }
  return EOVERFLOW;
}

void ApplyDiagRow(const DiagRow& row, conn_record* rec) {
  uint64_t acked = row.bytesAcked >= rec->acked_base ? row.bytesAcked - rec->acked_base : 0;
  uint64_t received = row.bytesReceived >= rec->received_base ? row.bytesReceived - rec->received_base : 0;
  uint32_t state = 1u << row.state;
  // Everything up to write_seq (which includes a queued FIN) is acked when
  // nothing is in flight and nothing is unsent: snd_una == write_seq, the
  // BPF side's test.
  if ((state & kFinQueued) && row.packetsOut == 0 && row.notsent == 0 && acked > 0) acked -= 1;
  if ((state & kFinReceived) && received > 0) received -= 1;
  rec->sent_bytes = acked;
  rec->received_bytes = received;
  rec->srtt_us = row.srttUs;
  rec->min_rtt_us = row.minRttUs;
  rec->total_retrans = row.totalRetrans;
  rec->lost_out = row.lostOut;
  rec->segs_in = row.segsIn;
  rec->segs_out = row.segsOut;
  rec->state = row.state;
}
