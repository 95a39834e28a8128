// SPDX-License-Identifier: Apache-2.0
// The sock_diag periodic-report source: one NETLINK_SOCK_DIAG dump of the
// TCP sockets of the namespace the socket was created in, with tcp_info
// (INET_DIAG_INFO). Works on every kernel with no BPF program at all; the
// rows are joined to the tracked connections by socket cookie
// (idiag_cookie == bpf_get_socket_cookie()) in bpf_probe.cc.
#pragma once

#include <cstdint>
#include <vector>

struct conn_record;

// What one row contributes to a RECORD_REPORT.
struct DiagRow {
  uint64_t cookie;
  uint64_t bytesAcked;     // raw tcp_sock.bytes_acked (counts SYN and FIN)
  uint64_t bytesReceived;  // raw tcp_sock.bytes_received (counts FIN)
  uint32_t srttUs;         // tcpi_rtt: srtt_us >> 3, like the BPF side
  uint32_t minRttUs;       // ~0U (no sample) as 0, like the BPF side
  uint32_t totalRetrans;
  uint32_t lostOut;
  uint32_t segsIn;
  uint32_t segsOut;
  uint32_t packetsOut;  // tcpi_unacked
  uint32_t notsent;     // tcpi_notsent_bytes
  uint8_t state;
};

// A NETLINK_SOCK_DIAG socket in the calling thread's namespace (-errno on
// failure) and that namespace's cookie (0 when the kernel cannot say:
// SO_NETNS_COOKIE is Linux 5.14+).
int OpenDiagSocket(uint64_t* netnsCookie);

// Appends the namespace's TCP sockets in the states a tracked connection can
// report from (ESTABLISHED through LAST_ACK, no LISTEN/SYN_RECV/TIME_WAIT) to
// `rows`. One dump asks for IPv4 and IPv6 in one walk of the kernel's table
// (the legacy TCPDIAG_GETSOCK request is family-agnostic; SOCK_DIAG_BY_FAMILY
// would walk the whole table once per family). Returns 0 or an errno.
int DumpTcp(int fd, std::vector<DiagRow>& rows);

// Fills the totals and TCP counters of a RECORD_REPORT from a row, with the
// corrections the BPF side's payload_totals() applies (SYN and FIN take one
// sequence number each; `rec` carries the establishment bases).
void ApplyDiagRow(const DiagRow& row, conn_record* rec);
