// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A probe of Kmesh's design for the per-packet benchmark (bench/perpacket.ts),
 * not part of the agent: Kmesh counts a connection's bytes as they pass, with
 * a cgroup_skb program on every packet that finds the socket's state and
 * adds the packet's length, where this agent reads the kernel's own totals
 * (tcp_sock.bytes_acked / bytes_received) at events and periodic walks and
 * has no per-packet hook at all.
 *
 *   kmesh_sockops       (sockops): creates the socket's storage at the active
 *                       and passive establishment (STATE_CB on), deletes it
 *                       at the close;
 *   kmesh_skb_egress /  (cgroup_skb/egress, cgroup_skb/ingress): per packet,
 *   kmesh_skb_ingress   the full socket behind it, its storage, and the
 *                       packet length added to the sent or received total.
 *
 * The storage is created on a packet too (F_CREATE) when missing: the
 * benchmark attaches and detaches the probe under connections that are
 * already established, and a lookup that always missed would cost less than
 * the design does. The state map is the agent's (bpf/include/maps.h), with a
 * value type of its own; nothing is sent to user space per packet. Loaded and
 * attached by bench/lib/cgprobe.c (bpf_link per program, so nothing outlives
 * the benchmark), compiled at bench time against bpf/vmlinux.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "record.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define IPPROTO_TCP_ 6

struct kmesh_design_state {
	__u64 socket_cookie;
	__u64 sent_bytes;
	__u64 received_bytes;
	__u64 packets;
};

KMESH_CONN_STATE_MAP(struct kmesh_design_state);

/* Packets the skb programs accounted to a socket (per CPU), for the notes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} skb_counted SEC(".maps");

SEC("sockops")
int kmesh_sockops(struct bpf_sock_ops *ctx)
{
	struct kmesh_design_state *st;
	struct bpf_sock *bsk = ctx->sk;

	switch (ctx->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (!bsk)
			return 1;
		bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		st = bpf_sk_storage_get(&conn_state, bsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st)
			st->socket_cookie = bpf_get_socket_cookie(ctx);
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
		if (ctx->args[1] == TCP_CLOSE && bsk)
			bpf_sk_storage_delete(&conn_state, bsk);
		return 1;
	default:
		return 1;
	}
}

static __always_inline void account(struct __sk_buff *skb, int egress)
{
	struct kmesh_design_state *st;
	struct bpf_sock *sk = skb->sk;
	__u32 zero = 0;
	__u64 *n;

	if (!sk)
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != IPPROTO_TCP_)
		return;
	st = bpf_sk_storage_get(&conn_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return;
	/*
	 * Plain adds: the egress path runs with the socket owned by the sender
	 * and the ingress path under the socket's spinlock, so each total has
	 * one writer at a time (as Kmesh's own counters assume).
	 */
	if (egress)
		st->sent_bytes += skb->len;
	else
		st->received_bytes += skb->len;
	st->packets++;
	n = bpf_map_lookup_elem(&skb_counted, &zero);
	if (n)
		*n += 1;
}

SEC("cgroup_skb/egress")
int kmesh_skb_egress(struct __sk_buff *skb)
{
	account(skb, 1);
	return 1; /* never drops */
}

SEC("cgroup_skb/ingress")
int kmesh_skb_ingress(struct __sk_buff *skb)
{
	account(skb, 0);
	return 1;
}
