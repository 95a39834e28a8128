// SPDX-License-Identifier: Apache-2.0
/*
 * TCP peer for the handshake-variant kernel tests (test/kernel/isn.test.ts):
 * what Node's net module cannot do - TCP_DEFER_ACCEPT on either side and
 * TCP Fast Open (data in the SYN). Compiled by test/helpers/handshakePeer.ts
 * into a temporary directory (never committed as a binary). Bounded: it
 * serves or makes COUNT connections and gives up after 30 s (alarm).
 *
 *   handshake-peer serve ADDR COUNT REQ RESP [defer] [tfo]
 *     Listens on ADDR port 0 and prints {"port":P}. For each of COUNT
 *     connections, one after another: reads REQ bytes, writes RESP bytes,
 *     closes. Prints {"served":COUNT} and exits 0.
 *   handshake-peer connect ADDR PORT COUNT REQ RESP [defer] [tfo] [capture] [fail]
 *     COUNT connections one after another: connect (with `tfo`: sendto with
 *     MSG_FASTOPEN, the request in the SYN), write REQ bytes, read RESP
 *     bytes and the server's FIN, close. Prints {"ports":[local ports...],
 *     "syn_data_acked":N, "syn":[...], "synack":[...]} (N: connections whose
 *     SYN data the server acked, TCPI_OPT_SYN_DATA) and exits 0.
 *     With `capture`, an AF_PACKET socket in this namespace sees the packets
 *     on the wire, and "syn"/"synack" give each connection's SYN and SYN-ACK
 *     sequence numbers as sent (the ISNs, independent of any socket code;
 *     -1 where not seen). With `fail`, the connect is expected to fail:
 *     "errno" gives why, and the ports list the failed sockets' ports.
 * Any failure prints {"error":"..."} to stdout and exits 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef TCPI_OPT_SYN_DATA
#define TCPI_OPT_SYN_DATA 32
#endif

static void die(const char *what)
{
	/* On a line of its own, also in the middle of the ports list. */
	printf("\n{\"error\":\"%s: %s\"}\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

/* ADDR:PORT into a sockaddr of the right family; returns its length. */
static socklen_t parse_addr(const char *text, int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		return sizeof(*a4);
	}
	if (inet_pton(AF_INET6, text, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		return sizeof(*a6);
	}
	errno = EINVAL;
	die("address");
	return 0;
}

static int local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		die("getsockname");
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write");
		buf += w;
		n -= (size_t)w;
	}
}

/* Reads exactly n bytes (n = 0: nothing); with `to_eof`, then expects EOF. */
static void read_n(int fd, size_t n, int to_eof)
{
	char buf[4096];

	while (n > 0) {
		ssize_t r = read(fd, buf, n < sizeof(buf) ? n : sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EPIPE;
			die("read");
		}
		n -= (size_t)r;
	}
	if (to_eof) {
		ssize_t r;
		while ((r = read(fd, buf, sizeof(buf))) != 0) {
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				die("read eof");
			errno = EPROTO;
			die("more than expected");
		}
	}
}

/*
 * Reads every captured packet queued on `cap` and returns, for the TCP
 * connection whose client port is `port`, the sequence numbers of the SYN
 * (client to server) and the SYN-ACK (back). Plain IPv4 / IPv6 (no extension
 * headers), which is all the tests send. On loopback each packet is seen twice
 * (outgoing and incoming): the same numbers.
 */
static void drain_capture(int cap, int port, long long *syn, long long *synack)
{
	unsigned char pkt[2048];

	*syn = *synack = -1;
	for (;;) {
		ssize_t n = recv(cap, pkt, sizeof(pkt), MSG_DONTWAIT);
		const unsigned char *tcp;
		int sport, dport;
		unsigned char flags;
		unsigned int seq;

		if (n < 0)
			return;
		if (n >= 20 && (pkt[0] >> 4) == 4 && pkt[9] == IPPROTO_TCP)
			tcp = pkt + (pkt[0] & 15) * 4;
		else if (n >= 40 && (pkt[0] >> 4) == 6 && pkt[6] == IPPROTO_TCP)
			tcp = pkt + 40;
		else
			continue;
		if (tcp + 20 > pkt + n)
			continue;
		sport = tcp[0] << 8 | tcp[1];
		dport = tcp[2] << 8 | tcp[3];
		seq = (unsigned int)tcp[4] << 24 | tcp[5] << 16 | tcp[6] << 8 | tcp[7];
		flags = tcp[13];
		if (!(flags & 0x02)) /* SYN */
			continue;
		if (!(flags & 0x10) && sport == port)
			*syn = seq;
		else if ((flags & 0x10) && dport == port)
			*synack = seq;
	}
}

static void set_int(int fd, int level, int opt, int value, const char *what)
{
	if (setsockopt(fd, level, opt, &value, sizeof(value)) < 0)
		die(what);
}

int main(int argc, char **argv)
{
	static char payload[1 << 16];
	struct sockaddr_storage ss;
	int defer = 0, tfo = 0, capture = 0, fail = 0;

	alarm(30);
	memset(payload, 'x', sizeof(payload));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "defer") == 0)
			defer = 1;
		if (strcmp(argv[i], "tfo") == 0)
			tfo = 1;
		if (strcmp(argv[i], "capture") == 0)
			capture = 1;
		if (strcmp(argv[i], "fail") == 0)
			fail = 1;
	}
	if (argc >= 6 && strcmp(argv[1], "serve") == 0) {
		int count = atoi(argv[3]);
		size_t req = (size_t)atoi(argv[4]), resp = (size_t)atoi(argv[5]);
		socklen_t len = parse_addr(argv[2], 0, &ss);
		int lfd = socket(ss.ss_family, SOCK_STREAM, 0);

		if (lfd < 0)
			die("socket");
		if (resp > sizeof(payload) || req > sizeof(payload)) {
			errno = EINVAL;
			die("size");
		}
		if (bind(lfd, (struct sockaddr *)&ss, len) < 0)
			die("bind");
		/* The handshake completes only when data arrives (up to 10 s). */
		if (defer)
			set_int(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, 10, "TCP_DEFER_ACCEPT");
		if (tfo)
			set_int(lfd, IPPROTO_TCP, TCP_FASTOPEN, 16, "TCP_FASTOPEN");
		if (listen(lfd, 64) < 0)
			die("listen");
		printf("{\"port\":%d}\n", local_port(lfd));
		fflush(stdout);
		for (int i = 0; i < count; i++) {
			int fd = accept(lfd, NULL, NULL);
			if (fd < 0)
				die("accept");
			read_n(fd, req, 0);
			write_all(fd, payload, resp);
			close(fd);
		}
		printf("{\"served\":%d}\n", count);
		return 0;
	}
	if (argc >= 7 && strcmp(argv[1], "connect") == 0) {
		int port = atoi(argv[3]), count = atoi(argv[4]), acked = 0, cap = -1, err = 0;
		size_t req = (size_t)atoi(argv[5]), resp = (size_t)atoi(argv[6]);
		socklen_t len = parse_addr(argv[2], port, &ss);
		static long long syn[1024], synack[1024];

		if (resp > sizeof(payload) || req > sizeof(payload) || req == 0 || count > 1024) {
			errno = EINVAL;
			die("size");
		}
		if (capture) {
			cap = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL));
			if (cap < 0)
				die("AF_PACKET socket");
		}
		printf("{\"ports\":[");
		for (int i = 0; i < count; i++) {
			int fd = socket(ss.ss_family, SOCK_STREAM, 0);
			struct tcp_info ti;
			socklen_t tlen = sizeof(ti);

			if (fd < 0)
				die("socket");
			/* Client side: hold the third ACK back until there is data. */
			if (defer)
				set_int(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, 10, "TCP_DEFER_ACCEPT");
			if (fail) {
				/*
				 * Bound first: a failed connect releases a port it picked
				 * itself (tcp_set_state(TCP_CLOSE) -> inet_put_port), and
				 * the test needs to know which port the attempt used.
				 */
				struct sockaddr_storage any;
				socklen_t alen;

				memset(&any, 0, sizeof(any));
				any.ss_family = ss.ss_family;
				alen = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
				if (bind(fd, (struct sockaddr *)&any, alen) < 0)
					die("bind");
				if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
					errno = EISCONN;
					die("connect succeeded");
				}
				err = errno;
				if (cap >= 0) {
					/* The kernel answered (RST) before connect() returned. */
					drain_capture(cap, local_port(fd), &syn[i], &synack[i]);
				}
				printf("%s%d", i ? "," : "", local_port(fd));
				close(fd);
				continue;
			}
			if (tfo) {
				ssize_t w = sendto(fd, payload, req, MSG_FASTOPEN, (struct sockaddr *)&ss, len);
				if (w < 0)
					die("sendto MSG_FASTOPEN");
				if ((size_t)w < req)
					write_all(fd, payload, req - (size_t)w);
			} else {
				if (connect(fd, (struct sockaddr *)&ss, len) < 0)
					die("connect");
				write_all(fd, payload, req);
			}
			read_n(fd, resp, 1);
			if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen) == 0 &&
			    (ti.tcpi_options & TCPI_OPT_SYN_DATA))
				acked++;
			if (cap >= 0)
				drain_capture(cap, local_port(fd), &syn[i], &synack[i]);
			printf("%s%d", i ? "," : "", local_port(fd));
			close(fd);
		}
		printf("],\"syn_data_acked\":%d,\"errno\":\"%s\",\"syn\":[", acked, err ? strerrorname_np(err) : "");
		for (int i = 0; i < count && cap >= 0; i++)
			printf("%s%lld", i ? "," : "", syn[i]);
		printf("],\"synack\":[");
		for (int i = 0; i < count && cap >= 0; i++)
			printf("%s%lld", i ? "," : "", synack[i]);
		printf("]}\n");
		return 0;
	}
	fprintf(stderr, "usage: handshake-peer serve ADDR COUNT REQ RESP [defer] [tfo] | connect ADDR PORT COUNT REQ RESP [defer] [tfo]\n");
	return 2;
}
