// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Lower bounds for the churn benchmark (bench/kernel.ts), not part of the
 * agent. Each FLOOR_LEVEL is the least that any probe built the way issue 3
 * asks for (sockops at the cgroup root, state callback to see the close,
 * per-socket state an sk_storage iterator can walk, records through a
 * ringbuf) has to do per connection:
 *
 *   1  dispatch: only turns on BPF_SOCK_OPS_STATE_CB, so the kernel runs the
 *      program as often as it runs ours (~17 times per loopback connection)
 *      and every run returns at once;
 *   2  + storage: creates the socket's sk_storage at the connect and the
 *      passive establishment and deletes it at the close;
 *   3  + records: one ringbuf record per establishment and per close (both
 *      sockets: 4 per connection), cookie and kind only, waking the reader
 *      only when the unread data crosses a multiple of wakeup_bytes (as
 *      the agent does; without any wake-up the 100 ms drain timer lets a
 *      1 MiB ringbuf overflow at these rates).
 *
 * The maps are the agent's (bpf/include/maps.h) and the program names too, so the
 * agent's addon loads, attaches, drains and detaches these objects exactly
 * like the real one; the iterators do nothing (the benchmark never walks).
 * Built at bench time: clang -target bpf -DFLOOR_LEVEL=N (bench/lib/floor.ts).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "record.h"
#include "maps.h"

#ifndef FLOOR_LEVEL
#error "build with -DFLOOR_LEVEL=1|2|3"
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the addon before load, as for the agent's probe. */
const volatile __u64 wakeup_bytes = 64 * 1024;

struct floor_state {
	__u64 socket_cookie;
};

KMESH_CONN_STATE_MAP(struct floor_state);

#if FLOOR_LEVEL >= 3
/* Ringbuf space of one record: 8-byte header + record, rounded up to 8. */
#define SLOT ((sizeof(struct conn_record) + 8 + 7) & ~7UL)

static __always_inline void emit(__u64 cookie, __u8 kind)
{
	struct conn_record *rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	__u32 zero = 0;
	__u64 *lost, avail;

	if (!rec) {
		lost = bpf_map_lookup_elem(&lost_records, &zero);
		if (lost)
			*lost += 1;
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->socket_cookie = cookie;
	rec->kind = kind;
	avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (avail >= SLOT && avail / wakeup_bytes != (avail - SLOT) / wakeup_bytes)
		bpf_ringbuf_submit(rec, BPF_RB_FORCE_WAKEUP);
	else
		bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}
#endif

SEC("sockops")
int kmesh_sockops(struct bpf_sock_ops *ctx)
{
	__u32 op = ctx->op;
#if FLOOR_LEVEL >= 2
	struct floor_state *st;
	struct bpf_sock *bsk;
#endif

	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (!(ctx->bpf_sock_ops_cb_flags & BPF_SOCK_OPS_STATE_CB_FLAG))
			bpf_sock_ops_cb_flags_set(ctx, ctx->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
#if FLOOR_LEVEL >= 2
		bsk = ctx->sk;
		if (!bsk)
			return 1;
		st = bpf_sk_storage_get(&conn_state, bsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!st)
			return 1;
		st->socket_cookie = bpf_get_socket_cookie(ctx);
#if FLOOR_LEVEL >= 3
		if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
			emit(st->socket_cookie, RECORD_OPEN);
#endif
#endif
		return 1;
#if FLOOR_LEVEL >= 3
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		bsk = ctx->sk;
		if (!bsk)
			return 1;
		st = bpf_sk_storage_get(&conn_state, bsk, 0, 0);
		if (st)
			emit(st->socket_cookie, RECORD_OPEN);
		return 1;
#endif
#if FLOOR_LEVEL >= 2
	case BPF_SOCK_OPS_STATE_CB:
		if (ctx->args[1] != TCP_CLOSE)
			return 1;
		bsk = ctx->sk;
		if (!bsk)
			return 1;
		st = bpf_sk_storage_get(&conn_state, bsk, 0, 0);
		if (!st)
			return 1;
#if FLOOR_LEVEL >= 3
		emit(st->socket_cookie, RECORD_CLOSE);
#endif
		bpf_sk_storage_delete(&conn_state, bsk);
		return 1;
#endif
	default:
		return 1;
	}
}

SEC("iter/bpf_sk_storage_map")
int kmesh_conn_iter(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	return 0;
}

SEC("iter/tcp")
int kmesh_tcp_iter(struct bpf_iter__tcp *ctx)
{
	return 0;
}
