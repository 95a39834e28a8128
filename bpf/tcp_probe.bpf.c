// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TCP connection telemetry straight from kernel sockets.
 *
 * The core, which every supported kernel must load:
 *   - kmesh_sockops   (SEC "sockops", attached at the cgroup-v2 root, so it sees
 *                      every TCP socket of the node, every network namespace):
 *                      emits RECORD_OPEN / RECORD_CLOSE / RECORD_FAIL through the
 *                      `events` ringbuf, and keeps per-socket state in the
 *                      `conn_state` sk_storage map.
 *
 * Periodic reports of long-lived connections come from one of a ladder of
 * sources that user space picks by really loading them (feature probes lie
 * on hardened builds); each program below is optional and loaded on its own,
 * sharing the core's maps (native/src/bpf_probe.cc, UseSource):
 *   - kmesh_conn_iter (SEC "iter/bpf_sk_storage_map"): one walk over
 *                      `conn_state`, tracked sockets only, every namespace;
 *   - kmesh_tcp_iter  (SEC "iter/tcp"): the TCP sockets of one network
 *                      namespace, run once per namespace (user space enters
 *                      each with setns());
 *   - sock_diag       (no BPF: user space dumps INET_DIAG per namespace and
 *                      joins the rows to the connections by socket cookie);
 *   - RTT_CB          (this sockops program itself, when user space sets
 *                      rtt_report_interval_ns: a report on an ACK with an RTT
 *                      sample at most once per interval; senders only).
 * Both iterators emit RECORD_REPORT records with running totals into the same
 * `events` ringbuf (falling back to the read() buffer only when the ringbuf
 * is full), see report() for why and for the ordering against closes.
 *
 * There is deliberately no per-packet hook: tracing programs (fentry/kprobe)
 * do not load on the target kernels, and per-packet sockops callbacks would
 * cost on the data path. Everything is CO-RE: fields are read through BTF
 * pointers (bpf_skc_to_tcp_sock / vmlinux.h's preserve_access_index), never at
 * hard-coded offsets, and there are no kernel-version #ifs.
 *
 * Addresses follow the record contract: src = initiator (client), dst =
 * acceptor (server) whatever the direction. orig_dst is left zero: with
 * kube-proxy (iptables/IPVS) DNAT happens on the packet path, after connect(),
 * so the client socket's own daddr already *is* the original destination (the
 * ClusterIP) and there is nothing better to report from a socket hook; on the
 * server side the pre-DNAT address is not visible to the socket at all.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "record.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Not in vmlinux.h (they are #defines in the uapi headers). */
#define AF_INET 2
#define AF_INET6 10

/*
 * Tunable, set by user space between open and load (it lives in .rodata, so
 * the verifier sees it as a constant). Submits do not wake the reader until
 * this many bytes wait in the ringbuf; user space drains on a short timer for
 * everything below. One wake-up per record slowed connection churn 4x.
 */
const volatile __u64 wakeup_bytes = 64 * 1024;

/*
 * The RTT_CB source (last rung of the ladder): non-zero turns on
 * BPF_SOCK_OPS_RTT_CB for sockets established from then on, and a socket
 * reports at most once per this many ns. Writable after load (in .bss, not
 * .rodata): the core is loaded before the ladder decides.
 */
volatile __u64 rtt_report_interval_ns = 0;

/* Per-socket state, kept in socket-local storage (freed with the socket). */
struct conn_state {
	__u64 socket_cookie;
	__u64 netns_cookie;
	__u64 connect_ns;      /* TCP_CONNECT_CB time (active opens only) */
	__u64 start_ns;        /* establishment time, 0 until established */
	/*
	 * tcp_sock.bytes_acked / bytes_received at establishment. Subtracting
	 * them removes whatever the handshake put there (the client's SYN is
	 * counted in bytes_acked on this kernel, see payload_totals()) without
	 * depending on which handshake path ran.
	 */
	__u64 acked_base;
	__u64 received_base;
	/*
	 * Set (atomically, before the RECORD_CLOSE is reserved) when the socket's
	 * final record is emitted; the iterator reads it after reserving a
	 * RECORD_REPORT, so a report is either ahead of the close in the ringbuf
	 * or not emitted at all. See kmesh_conn_iter. 64-bit: BPF atomics with
	 * fetch on 32-bit operands need -mcpu=v3.
	 */
	__u64 closing;
	/* RTT_CB source: time of this socket's last report. */
	__u64 last_report_ns;
	/* The connection's initial sequence numbers; see remember_isns(). */
	__u32 isn_client;
	__u32 isn_server;
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u16 src_port;
	__u16 dst_port;
	__u16 family;
	__u8 direction;
	__u8 established;
	__u8 isn_known;        /* enum record_isn_known bits */
};

KMESH_CONN_STATE_MAP(struct conn_state);

/* Keep the record type in the object's BTF even if the compiler would drop
 * it: user space checks its decoder offsets against this BTF. */
struct conn_record _conn_record_btf_anchor = {};

/* TCPF_* masks of the states in which our FIN has been queued (write_seq
 * already counts it): tcp_close_state() moves ESTABLISHED -> FIN_WAIT1 and
 * CLOSE_WAIT -> LAST_ACK before tcp_send_fin(). */
#define FIN_QUEUED_STATES ((1 << TCP_FIN_WAIT1) | (1 << TCP_FIN_WAIT2) | \
			   (1 << TCP_CLOSING) | (1 << TCP_LAST_ACK) | (1 << TCP_TIME_WAIT))

/*
 * Exact application payload totals, 64-bit.
 *
 * tcp_sock.bytes_acked (RFC 4898 tcpEStatsAppHCThruOctetsAcked) and
 * bytes_received (tcpEStatsAppHCThruOctetsReceived) are sums of sequence-space
 * advances, and SYN and FIN each occupy one sequence number:
 *   - tcp_snd_una_update() adds (ack - snd_una). The client's snd_una starts at
 *     its ISN (tcp_connect_init), so the SYN-ACK adds 1 for the SYN
 *     (tcp_rcv_synsent_state_process -> tcp_ack). The server's child starts
 *     with snd_una = ISN + 1 (tcp_create_openreq_child), so it does not.
 *     Both are removed by `acked_base`, sampled at *_ESTABLISHED_CB, which
 *     runs after that tcp_ack(). The ACK of our FIN adds 1 more: removed when
 *     a FIN was queued (state in FIN_QUEUED_STATES) and everything up to
 *     write_seq (which includes the FIN, tcp_send_fin) is acked.
 *   - tcp_rcv_nxt_update() adds (end_seq - rcv_nxt) when an in-order skb is
 *     queued (tcp_queue_rcv / tcp_ofo_queue), and end_seq includes the FIN,
 *     so a received FIN adds 1. The SYN does not (rcv_nxt is set directly in
 *     tcp_rcv_synsent_state_process / tcp_create_openreq_child), but the
 *     base is subtracted anyway. A received FIN is exactly when tcp_fin() ran,
 *     and tcp_fin() sets SOCK_DONE (sock_flag() = skc_flags bit); sk_shutdown cannot be used because
 *     close()/shutdown() set RCV_SHUTDOWN locally too.
 * test/kernel/bytes.test.ts checks this on both sides of real connections.
 */
static __always_inline void payload_totals(struct tcp_sock *tp, const struct conn_state *st,
					   struct conn_record *rec)
{
	struct sock *sk = (struct sock *)tp;
	__u64 acked = tp->bytes_acked - st->acked_base;
	__u64 received = tp->bytes_received - st->received_base;
	int state = sk->__sk_common.skc_state;

	if (((1 << state) & FIN_QUEUED_STATES) && tp->snd_una == tp->write_seq && acked > 0)
		acked -= 1;
	if ((sk->__sk_common.skc_flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))) &&
	    received > 0)
		received -= 1;
	rec->sent_bytes = acked;
	rec->received_bytes = received;
}

/* RTT, retransmission and segment counters, in real units. */
static __always_inline void tcp_stats(struct tcp_sock *tp, struct conn_record *rec)
{
	__u32 min_rtt = tp->rtt_min.s[0].v;

	/* srtt_us holds the smoothed RTT << 3 (tcp_rtt_estimator, RFC 6298 in fixed point). */
	rec->srtt_us = tp->srtt_us >> 3;
	/* minmax starts as ~0U ("no sample yet", tcp_init_sock -> minmax_reset). */
	rec->min_rtt_us = min_rtt == ~0U ? 0 : min_rtt;
	rec->total_retrans = tp->total_retrans;
	rec->lost_out = tp->lost_out;
	rec->segs_in = tp->segs_in;
	rec->segs_out = tp->segs_out;
}

static __always_inline void fill_from_state(const struct conn_state *st, struct conn_record *rec)
{
	rec->socket_cookie = st->socket_cookie;
	rec->netns_cookie = st->netns_cookie;
	rec->start_ns = st->start_ns;
	__builtin_memcpy(rec->src_addr, st->src_addr, sizeof(rec->src_addr));
	__builtin_memcpy(rec->dst_addr, st->dst_addr, sizeof(rec->dst_addr));
	rec->src_port = st->src_port;
	rec->dst_port = st->dst_port;
	rec->family = st->family;
	rec->direction = st->direction;
	/* Sampled at establishment; see record.h. */
	rec->acked_base = (__u32)st->acked_base;
	rec->received_base = (__u32)st->received_base;
	rec->isn_client = st->isn_client;
	rec->isn_server = st->isn_server;
	rec->isn_known = st->isn_known;
}

/*
 * The connection's two initial sequence numbers, at *_ESTABLISHED_CB: a
 * random secret both ends share (RFC 9293 section 3.4.1, RFC 6528) that NAT
 * does not rewrite, so user space can join the two ends of a connection -
 * on one node or on two - into one trace without any header.
 *
 * The local ISN is snd_una minus what bytes_acked counted of the handshake,
 * the remote one rcv_nxt minus the peer's SYN and what bytes_received counted
 * of it. Subtracting the RFC 4898 counters instead of a fixed 1 keeps TCP Fast
 * Open right: the SYN's data has moved snd_una (client) and rcv_nxt (server
 * child) past the SYN already, and the counters hold exactly that advance.
 *   - Client (ACTIVE_ESTABLISHED_CB, after tcp_ack() of the SYN-ACK): snd_una
 *     started at the ISN (tcp_connect_init) and bytes_acked counts the SYN
 *     and any SYN data, so ISN_c = snd_una - bytes_acked. rcv_nxt =
 *     ISN_s + 1 (tcp_rcv_synsent_state_process), bytes_received = 0.
 *   - Server (PASSIVE_ESTABLISHED_CB, still in SYN_RECV, before the third
 *     ACK's data is queued; for TFO from tcp_fastopen_create_child() before
 *     the SYN's data is added): the child starts with snd_una = ISN_s + 1
 *     and rcv_nxt = ISN_c + 1 (tcp_create_openreq_child) and the SYN-ACK's
 *     ACK advances neither counter, so ISN_s = snd_una - 1 - bytes_acked.
 * The same holds for a child made from a SYN cookie (cookie_v4_check ->
 * tcp_create_openreq_child). test/kernel/isn.test.ts checks both ends
 * against each other for these paths and through DNAT.
 *
 * A middlebox that rewrites sequence numbers (SYNPROXY, a sequence-
 * randomising firewall) makes the server's ISN differ between the ends;
 * nothing at a socket can see that.
 */
static __always_inline void remember_isns(struct conn_state *st, struct tcp_sock *tp, __u8 direction)
{
	__u32 local = tp->snd_una - (__u32)tp->bytes_acked;
	__u32 remote = tp->rcv_nxt - 1 - (__u32)tp->bytes_received;

	if (direction == DIRECTION_OUTBOUND) {
		st->isn_client = local;
		st->isn_server = remote;
	} else {
		st->isn_client = remote;
		st->isn_server = local - 1;
	}
	st->isn_known = ISN_CLIENT_KNOWN | ISN_SERVER_KNOWN;
}

/*
 * Records the tuple with src = initiator, dst = acceptor. Read from the socket
 * itself (sock_common) rather than the sock_ops context so one code path
 * serves both address families; IPv4 on an AF_INET6 socket shows up as
 * AF_INET6 with a v4-mapped address and user space normalises it.
 */
static __always_inline void remember_tuple(struct conn_state *st, struct sock *sk, __u8 direction)
{
	struct sock_common *skc = &sk->__sk_common;
	__u8 local[16] = {}, remote[16] = {};
	__u16 local_port = skc->skc_num;               /* host byte order */
	__u16 remote_port = bpf_ntohs(skc->skc_dport); /* network byte order */
	__u16 family = skc->skc_family;

	if (family == AF_INET) {
		__u32 l = skc->skc_rcv_saddr, r = skc->skc_daddr;
		__builtin_memcpy(local, &l, 4);
		__builtin_memcpy(remote, &r, 4);
	} else {
		/* Plain loads through the BTF pointer (CO-RE relocated), no
		 * bpf_probe_read_kernel() calls. */
		const __u32 *l6 = skc->skc_v6_rcv_saddr.in6_u.u6_addr32;
		const __u32 *r6 = skc->skc_v6_daddr.in6_u.u6_addr32;
		__u32 lw[4] = { l6[0], l6[1], l6[2], l6[3] };
		__u32 rw[4] = { r6[0], r6[1], r6[2], r6[3] };

		__builtin_memcpy(local, lw, 16);
		__builtin_memcpy(remote, rw, 16);
	}
	st->family = family;
	st->direction = direction;
	if (direction == DIRECTION_OUTBOUND) {
		__builtin_memcpy(st->src_addr, local, 16);
		__builtin_memcpy(st->dst_addr, remote, 16);
		st->src_port = local_port;
		st->dst_port = remote_port;
	} else {
		__builtin_memcpy(st->src_addr, remote, 16);
		__builtin_memcpy(st->dst_addr, local, 16);
		st->src_port = remote_port;
		st->dst_port = local_port;
	}
}

static __always_inline void count(void *percpu_counter)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(percpu_counter, &zero);

	if (n)
		*n += 1; /* per-CPU slot, no atomics needed */
}

/* Ringbuf space of one record: 8-byte header + record, rounded up to 8. */
#define RECORD_SLOT ((sizeof(struct conn_record) + 8 + 7) & ~7UL)

/*
 * Submits without waking the reader unless this record takes the unconsumed
 * data past a multiple of wakeup_bytes: user space polls with a short timeout
 * and drains on it, so a quiet node costs one wake-up per timer tick and a
 * busy one one per wakeup_bytes, never one per record.
 *
 * "Past a multiple", not "at least wakeup_bytes": until the reader gets to
 * run, every record above the threshold would force another wake-up, and a
 * forced wake-up whose irq_work already ran queues a new one - a self-IPI,
 * which exits to the hypervisor in a VM (bpf_ringbuf_notify via
 * irq_work_queue, kernel/bpf/ringbuf.c). A crossing missed under concurrency
 * (avail is read after other CPUs' reservations) is made up for at the next
 * multiple or by the reader's timer.
 */
static __always_inline void submit(struct conn_record *rec)
{
	/* Includes this record: it is reserved, producer_pos has moved past it. */
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	if (wakeup_bytes <= RECORD_SLOT ||
	    (avail >= RECORD_SLOT && avail / wakeup_bytes != (avail - RECORD_SLOT) / wakeup_bytes))
		bpf_ringbuf_submit(rec, BPF_RB_FORCE_WAKEUP);
	else
		bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

/*
 * One copy, called from the four places that emit (a BPF-to-BPF call), not
 * inlined into each: the record fill is most of the program, and inlined
 * four times it made the JITed sockops program 8.2 KB against 4.4 KB now (and
 * the floor probe's 1.4 KB, bench/lib/floor.bpf.c), all of it on the
 * connection path next to the TCP stack's own code (issue #18 item 5).
 */
static __noinline void emit(struct tcp_sock *tp, const struct conn_state *st, __u8 kind,
				 __u8 state, __u64 now)
{
	struct conn_record *rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);

	if (!rec) {
		count(&lost_records);
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	fill_from_state(st, rec);
	rec->event_ns = now;
	rec->kind = kind;
	rec->state = state;
	if (kind == RECORD_FAIL) {
		/*
		 * tcp_done_with_error() writes sk_err before tcp_done() moves the
		 * socket to TCP_CLOSE, so the reason is already there (ECONNREFUSED
		 * from tcp_reset in SYN_SENT, ETIMEDOUT from tcp_write_err, or the
		 * ICMP error). 0 when the application aborted the connect itself.
		 */
		rec->sk_err = tp->inet_conn.icsk_inet.sk.sk_err;
		rec->start_ns = st->connect_ns;
	} else {
		payload_totals(tp, st, rec);
		tcp_stats(tp, rec);
	}
	submit(rec);
}

/* Enables the callbacks in `want` for this socket, keeping flags other
 * programs attached to the same cgroup may have set. No helper call when they
 * are on already (an active socket had STATE_CB set at TCP_CONNECT_CB). */
static __always_inline void want_cbs(struct bpf_sock_ops *ctx, __u32 want)
{
	__u32 flags = ctx->bpf_sock_ops_cb_flags;

	if ((flags & want) != want)
		bpf_sock_ops_cb_flags_set(ctx, flags | want);
}

static __always_inline void on_established(struct bpf_sock_ops *ctx, struct bpf_sock *bsk,
					   struct tcp_sock *tp, __u8 direction)
{
	struct conn_state *st;

	st = bpf_sk_storage_get(&conn_state, bsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return; /* out of memory: the connection goes untracked */
	if (direction == DIRECTION_INBOUND || !st->connect_ns) {
		/* Passive side (fresh storage), or an active socket whose connect
		 * we did not see (e.g. the program attached in between). */
		st->socket_cookie = bpf_get_socket_cookie(ctx);
		st->netns_cookie = bpf_get_netns_cookie(ctx);
		remember_tuple(st, (struct sock *)tp, direction);
	}
	st->start_ns = bpf_ktime_get_ns();
	st->acked_base = tp->bytes_acked;
	st->received_base = tp->bytes_received;
	remember_isns(st, tp, direction);
	st->established = 1;
	st->last_report_ns = st->start_ns;
	/* RTT_CB only when that source is in use: it runs on most ACKs. */
	want_cbs(ctx, rtt_report_interval_ns ? BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTT_CB_FLAG
					     : BPF_SOCK_OPS_STATE_CB_FLAG);
	/* The open happens at establishment: one clock read for both. */
	emit(tp, st, RECORD_OPEN, TCP_ESTABLISHED, st->start_ns);
}

/*
 * The RTT_CB source: tcp_ack() -> tcp_rtt_estimator() runs this on an ACK
 * that carries an RTT sample, which only a socket that sends data gets (a
 * socket that only receives gets none, and so reports only at close: the
 * documented limit of this source). The socket is locked here, as at
 * TCP_CLOSE, so a report can never follow its close.
 */
static __always_inline void on_rtt(struct bpf_sock *bsk, struct tcp_sock *tp, __u64 interval)
{
	struct conn_state *st = bpf_sk_storage_get(&conn_state, bsk, 0, 0);
	__u64 now;

	if (!st || !st->established)
		return;
	now = bpf_ktime_get_ns();
	if (now - st->last_report_ns < interval)
		return;
	st->last_report_ns = now;
	emit(tp, st, RECORD_REPORT, ((struct sock *)tp)->__sk_common.skc_state, now);
}

SEC("sockops")
int kmesh_sockops(struct bpf_sock_ops *ctx)
{
	struct conn_state *st;
	struct bpf_sock *bsk;
	struct tcp_sock *tp;
	__u32 op = ctx->op;

	/*
	 * A loopback connection runs this program ~17 times (both sockets):
	 * TIMEOUT_INIT, RWND_INIT and NEEDS_ECN for each SYN / SYN-ACK (also
	 * with the listener as the socket), the connect and the two
	 * establishments, and every state change once STATE_CB is on. Five of
	 * them have work: TCP_CONNECT, ACTIVE_/PASSIVE_ESTABLISHED and the
	 * change to TCP_CLOSE. Decide from the op and the new state alone, before
	 * touching the socket, and leave the rest at a few loads.
	 */
	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[0] = old state, args[1] = new state; tcp_set_state() calls
		 * us before storing the new state, so sk_state is still the old. */
		if (ctx->args[1] == TCP_CLOSE)
			break;
		return 1;
	case BPF_SOCK_OPS_RTT_CB:
		if (rtt_report_interval_ns)
			break;
		return 1;
	default:
		return 1;
	}
	bsk = ctx->sk;
	if (!bsk)
		return 1;
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return 1;

	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/*
		 * Active open: SYN about to be sent. Remember start time and tuple
		 * (source port and address are bound by now, inet_hash_connect),
		 * and turn on the state callback so SYN_SENT -> CLOSE (refused,
		 * timed out, unreachable) is seen: ACTIVE_ESTABLISHED_CB never
		 * runs for a failed connect.
		 */
		st = bpf_sk_storage_get(&conn_state, bsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st)
			return 1;
		st->socket_cookie = bpf_get_socket_cookie(ctx);
		st->netns_cookie = bpf_get_netns_cookie(ctx);
		st->connect_ns = bpf_ktime_get_ns();
		remember_tuple(st, (struct sock *)tp, DIRECTION_OUTBOUND);
		/*
		 * The client's ISN, for a connect that fails (the pair replaces
		 * it at establishment): tcp_v4_connect / tcp_v6_connect set
		 * write_seq to it (secure_tcp_seq) before tcp_connect() runs this
		 * callback, ahead of tcp_connect_init() and of the SYN taking
		 * write_seq++.
		 */
		st->isn_client = tp->write_seq;
		st->isn_known = ISN_CLIENT_KNOWN;
		want_cbs(ctx, BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		on_established(ctx, bsk, tp, DIRECTION_OUTBOUND);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		on_established(ctx, bsk, tp, DIRECTION_INBOUND);
		break;
	case BPF_SOCK_OPS_RTT_CB:
		on_rtt(bsk, tp, rtt_report_interval_ns);
		break;
	case BPF_SOCK_OPS_STATE_CB: /* to TCP_CLOSE */
		st = bpf_sk_storage_get(&conn_state, bsk, 0, 0);
		if (!st)
			break; /* not ours (established before we attached) */
		if (st->established) {
			/* Before the reservation: see kmesh_conn_iter. */
			__sync_lock_test_and_set(&st->closing, 1);
			emit(tp, st, RECORD_CLOSE, TCP_CLOSE, bpf_ktime_get_ns());
		} else if (ctx->args[0] == TCP_SYN_SENT) {
			emit(tp, st, RECORD_FAIL, TCP_CLOSE, bpf_ktime_get_ns());
		}
		bpf_sk_storage_delete(&conn_state, bsk);
		break;
	}
	return 1;
}

/* A RECORD_REPORT of `sk` into `rec` (ringbuf slot or stack: zeroed here). */
static __always_inline void fill_report(const struct conn_state *st, struct sock *sk,
					struct tcp_sock *tp, struct conn_record *rec)
{
	__builtin_memset(rec, 0, sizeof(*rec));
	fill_from_state(st, rec);
	rec->event_ns = bpf_ktime_get_ns();
	rec->kind = RECORD_REPORT;
	rec->state = sk->__sk_common.skc_state;
	payload_totals(tp, st, rec);
	tcp_stats(tp, rec);
}

/*
 * Periodic report: one RECORD_REPORT per established tracked socket, any
 * namespace (sk_storage is keyed by socket, not by namespace). Runs in the
 * reader's read() call, under RCU.
 *
 * Why the ringbuf and not bpf_seq_write(): bpf_seq_read() (kernel/bpf/
 * bpf_iter.c) returns to user space whenever its seq_file buffer (8 pages,
 * ~240 records) is full, and the next read() restarts the walk through
 * bpf_sk_storage_map_seq_start() -> bpf_sk_storage_map_seq_find_next()
 * (net/core/bpf_sk_storage.c), which re-walks the current bucket from its
 * head to skip the elements already shown. The map has only
 * roundup_pow_of_two(possible CPUs) buckets (at least 2; bpf_local_storage_
 * map_alloc), so each restart costs O(bucket length) and a walk of n sockets
 * O(n^2 / 240): 100k sockets took 1.5 s on 2 CPUs. Writing nothing to the
 * seq_file lets one read() walk the whole map with a single start (it only
 * stops, with -EAGAIN, after MAX_ITER_OBJECTS = 1M elements).
 *
 * If the ringbuf is full the record goes to the read() buffer after all (no
 * report is lost; user space parses both) and iter_fallback_records counts it.
 *
 * Ordering against the close of the same socket: the sockops program sets
 * st->closing with a fully ordered xchg *before* reserving RECORD_CLOSE; here
 * the flag is read with a fully ordered atomic *after* reserving the report.
 * If the read sees 0, the close's reservation comes later, so the report is
 * ahead of the close in the ringbuf (user space applies records in ringbuf
 * order) - and a fallback report, taken before any ringbuf record consumed
 * after the walk started, is placed before those by user space. If it sees
 * 1, the report is dropped: RECORD_CLOSE carries the final totals. A report
 * after the close would count the whole connection a second time
 * (ConnectionTable treats an unknown cookie as new).
 */
/*
 * One RECORD_REPORT of a tracked, established socket (both iterators).
 * Returns non-zero only when the report went to the read() buffer and did not
 * fit: bpf_seq_read() then rolls the buffer back and shows this socket again
 * in the next read().
 */
static __always_inline long report(struct conn_state *st, struct sock *sk, struct tcp_sock *tp,
				   struct seq_file *seq)
{
	struct conn_record *rec;
	long err;

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (__sync_fetch_and_add(&st->closing, 0)) {
		if (rec)
			bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
		return 0;
	}
	if (rec) {
		fill_report(st, sk, tp, rec);
		/*
		 * Never a wake-up: the reader is the same read() call's caller, which
		 * consumes the ring while and after this walk runs. A forced wake-up
		 * per record past the threshold (as submit() would do until someone
		 * consumes) is an irq_work self-interrupt each, which cost ~4 us per
		 * record in a VM.
		 */
		bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
		return 0;
	}
	{
		struct conn_record fallback;

		fill_report(st, sk, tp, &fallback);
		err = bpf_seq_write(seq, &fallback, sizeof(fallback));
		if (err == 0)
			count(&iter_fallback_records);
		return err;
	}
}

SEC("iter/bpf_sk_storage_map")
int kmesh_conn_iter(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct conn_state *st = ctx->value;
	struct sock *sk = ctx->sk;
	struct tcp_sock *tp;

	if (!sk || !st || !st->established)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	report(st, sk, tp, ctx->meta->seq);
	return 0;
}

/*
 * The same periodic report from the TCP socket table of one network
 * namespace: an iter/tcp instance sees only the namespace that was current
 * when user space created it (bpf_iter_init_seq_net, seq_sk_match() in
 * net/ipv4/tcp_ipv4.c), so user space creates one per namespace, entering
 * each with setns() on a thread of its own. For kernels that refuse
 * map-element iterators (EPERM at load on some hardened builds) while socket
 * iterators load. Sockets of every state are shown; request and TIME_WAIT
 * minisocks are not full sockets (bpf_skc_to_tcp_sock returns NULL) and have
 * no state of ours anyway. Each socket is in exactly one namespace, so a walk
 * over every namespace reports it once.
 */
SEC("iter/tcp")
int kmesh_tcp_iter(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct conn_state *st;
	struct tcp_sock *tp;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	st = bpf_sk_storage_get(&conn_state, tp, 0, 0);
	if (!st || !st->established)
		return 0;
	report(st, (struct sock *)tp, tp, ctx->meta->seq);
	return 0;
}
