/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of the record the kernel side hands to user space.
 * Included by the BPF programs; the TypeScript decoder's offsets are checked
 * against this struct through the compiled object's BTF (test/receiver/ebpf/
 * layout.test.ts), so the two can never drift apart silently.
 *
 * Fields are ordered widest first with explicit padding (libbpf-tools style),
 * so the layout is the same for BPF and any C consumer without packing pragmas.
 */
#ifndef KMESH_OTEL_RECORD_H
#define KMESH_OTEL_RECORD_H

/* What happened. Values are API: the decoder maps them to ConnectionEventKind. */
enum record_kind {
	RECORD_OPEN = 1,   /* handshake completed (ACTIVE_/PASSIVE_ESTABLISHED_CB) */
	RECORD_CLOSE = 2,  /* established socket reached TCP_CLOSE: final totals */
	RECORD_FAIL = 3,   /* active open went SYN_SENT -> CLOSE: sk_err says why */
	RECORD_REPORT = 4, /* periodic running totals (an iterator walk, sock_diag or RTT_CB) */
};

/* Bits of conn_record.isn_known: which initial sequence numbers the record carries. */
enum record_isn_known {
	ISN_CLIENT_KNOWN = 1, /* isn_client is valid (every established socket, and a failed connect) */
	ISN_SERVER_KNOWN = 2, /* isn_server is valid (established sockets only) */
};

enum record_direction {
	DIRECTION_OUTBOUND = 1, /* this socket connected (client side) */
	DIRECTION_INBOUND = 2,  /* this socket was accepted (server side) */
};

struct conn_record {
	__u64 socket_cookie;   /* bpf_get_socket_cookie(): connection identity */
	__u64 netns_cookie;    /* bpf_get_netns_cookie(): which namespace */
	__u64 start_ns;        /* CLOCK_MONOTONIC ns at establishment (at connect for failures) */
	__u64 event_ns;        /* CLOCK_MONOTONIC ns of this event */
	__u64 sent_bytes;      /* application payload bytes sent, 64-bit, no SYN/FIN */
	__u64 received_bytes;  /* application payload bytes received, 64-bit, no SYN/FIN */
	__u8 src_addr[16];     /* initiator (client) address; IPv4 in the first 4 bytes */
	__u8 dst_addr[16];     /* acceptor (server) address; IPv4 in the first 4 bytes */
	__u8 orig_dst_addr[16];/* original destination before DNAT where known, else zero */
	__u32 srtt_us;         /* smoothed RTT in microseconds (tcp_sock.srtt_us >> 3) */
	__u32 min_rtt_us;      /* minimum RTT seen, microseconds */
	__u32 total_retrans;   /* tcp_sock.total_retrans */
	__u32 lost_out;        /* tcp_sock.lost_out at the event */
	__u32 segs_in;         /* tcp_sock.segs_in */
	__u32 segs_out;        /* tcp_sock.segs_out */
	__u32 sk_err;          /* errno of a failed connect (ECONNREFUSED, ...), else 0 */
	/*
	 * tcp_sock.bytes_acked / bytes_received at establishment (what the
	 * handshake put there: the client's SYN, TCP Fast Open data), which
	 * sent_bytes / received_bytes already exclude. They let user space turn
	 * the raw RFC 4898 counters of a sock_diag row into the same payload
	 * totals. 32-bit: sampled at establishment, they never exceed one
	 * handshake's worth of sequence space.
	 */
	__u32 acked_base;
	__u32 received_base;
	/*
	 * The connection's two initial sequence numbers (RFC 9293 section 3.4.1),
	 * the same on both ends and untouched by NAT: the client's (ISS of the
	 * active opener) and the server's. Sampled at establishment (at connect
	 * for the client's alone) and kept in the per-socket state, so every
	 * record of the socket carries them. User space derives the trace id of
	 * the connection from the pair. `isn_known` says which are valid: a
	 * sequence number of 0 is a legal value.
	 */
	__u32 isn_client;
	__u32 isn_server;
	__u16 src_port;        /* host byte order */
	__u16 dst_port;        /* host byte order */
	__u16 orig_dst_port;   /* host byte order, 0 when unknown */
	__u16 family;          /* AF_INET (2) or AF_INET6 (10) */
	__u8 kind;             /* enum record_kind */
	__u8 direction;        /* enum record_direction */
	__u8 state;            /* TCP state (TCP_ESTABLISHED = 1, ... TCP_CLOSE = 7) at the event */
	__u8 isn_known;        /* enum record_isn_known bits */
};

#endif /* KMESH_OTEL_RECORD_H */
