// SPDX-License-Identifier: Apache-2.0
/*
 * Bounded loopback TCP load generator for the kernel benchmarks. Compiled by
 * bench/lib/loadgen.ts into a temporary directory at bench time (never
 * committed as a binary). Talks to 127.0.0.1, or (sink/send) to addresses of
 * namespaces the benchmark created, and stops on its own.
 *
 *   loadgen churn SECONDS MAX_CONNS CLIENTS SERVERS PORTS REQ RESP [RATE]
 *     Listens on PORTS ephemeral ports of 127.0.0.1 (SERVERS accept threads,
 *     rounded up to a multiple of PORTS, the same number on every port) and runs CLIENTS threads that each loop:
 *     connect -> write REQ bytes -> read RESP bytes -> close (the client
 *     closes first; the server reads EOF, then closes). Stops after SECONDS
 *     or MAX_CONNS completed connections (0 = no count bound), whichever
 *     comes first. RATE > 0 paces the clients to RATE connections/s in total.
 *     Prints one JSON line: {"connections":..,"seconds":..,"errors":..,
 *     "ports":[..],"cpu_user_s":..,"cpu_sys_s":..}
 *
 *   loadgen hold COUNT
 *     Raises RLIMIT_NOFILE (2 * COUNT + 256 descriptors), opens COUNT idle established loopback
 *     connections (both ends in this process, 1 byte written each way), prints
 *     {"ready":COUNT,"ports":[..]} and holds them until stdin reaches EOF
 *     (the parent exits or closes the pipe), then closes everything.
 *
 *   loadgen sink ADDR
 *     Listens on an ephemeral port of IPv4 ADDR (127.0.0.1, or a test
 *     namespace's own address), prints {"port":N}, and reads and discards
 *     everything every accepted connection sends (one thread each, at most
 *     MAX_THREADS) until stdin reaches EOF.
 *
 *   loadgen send ADDR PORT SECONDS STREAMS
 *     Bulk transfer: STREAMS threads each connect to ADDR:PORT and write
 *     128 KiB at a time for SECONDS. Prints {"bytes":..,"seconds":..,
 *     "cpu_user_s":..,"cpu_sys_s":..}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 64
#define MAX_THREADS 256

static int g_ports[MAX_PORTS];
static int g_listen[MAX_PORTS];
static int g_nports;
static size_t g_req, g_resp;
static double g_rate_per_client;
static uint64_t g_max_conns;
static double g_deadline;
static atomic_int g_stop;
static atomic_uint_fast64_t g_done;
static atomic_uint_fast64_t g_errors;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int listen_on_ephemeral(int *port_out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("bind 127.0.0.1");
	if (listen(fd, 4096) < 0)
		die("listen");
	socklen_t len = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &len);
	*port_out = ntohs(a.sin_port);
	return fd;
}

static int read_full(int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int write_full(int fd, const char *buf, size_t n)
{
	size_t put = 0;
	while (put < n) {
		ssize_t w = write(fd, buf + put, n - put);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		put += (size_t)w;
	}
	return 0;
}

static void *server_thread(void *arg)
{
	int lfd = g_listen[(intptr_t)arg % g_nports];
	char *buf = calloc(1, g_req > g_resp ? g_req + 1 : g_resp + 1);
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break; /* listener shut down: done */
		}
		struct timeval tmo = { .tv_sec = 2 };
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
		if (read_full(c, buf, g_req) == 0 && write_full(c, buf, g_resp) == 0) {
			char eof;
			(void)read(c, &eof, 1); /* wait for the client's FIN: client closes first */
		}
		close(c);
	}
	free(buf);
	return NULL;
}

static void *client_thread(void *arg)
{
	intptr_t id = (intptr_t)arg;
	char *buf = calloc(1, g_req > g_resp ? g_req + 1 : g_resp + 1);
	memset(buf, 'x', g_req);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	uint64_t i = (uint64_t)id;
	double start = now_s();
	uint64_t mine = 0;
	while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
		if (g_rate_per_client > 0) {
			double due = start + mine / g_rate_per_client;
			double t = now_s();
			if (due > t) {
				struct timespec ts = { .tv_sec = (time_t)(due - t),
						       .tv_nsec = (long)(((due - t) - (time_t)(due - t)) * 1e9) };
				nanosleep(&ts, NULL);
			}
		}
		if (now_s() >= g_deadline)
			break;
		a.sin_port = htons(g_ports[i++ % g_nports]);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			atomic_fetch_add(&g_errors, 1);
			usleep(1000);
			continue;
		}
		/* Never hang: a stuck exchange counts as an error after 2 s. */
		struct timeval tmo = { .tv_sec = 2 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
		int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write_full(fd, buf, g_req) == 0 &&
			 read_full(fd, buf, g_resp) == 0;
		close(fd);
		mine++;
		if (!ok) {
			atomic_fetch_add(&g_errors, 1);
			continue;
		}
		uint64_t n = atomic_fetch_add(&g_done, 1) + 1;
		if (g_max_conns && n >= g_max_conns)
			atomic_store(&g_stop, 1);
	}
	free(buf);
	return NULL;
}

static void print_ports(void)
{
	printf("\"ports\":[");
	for (int p = 0; p < g_nports; p++)
		printf("%s%d", p ? "," : "", g_ports[p]);
	printf("]");
}

static int churn(int argc, char **argv)
{
	if (argc < 9) {
		fprintf(stderr, "usage: loadgen churn SECONDS MAX_CONNS CLIENTS SERVERS PORTS REQ RESP [RATE]\n");
		return 2;
	}
	double seconds = atof(argv[2]);
	g_max_conns = strtoull(argv[3], NULL, 10);
	int clients = atoi(argv[4]), servers = atoi(argv[5]);
	g_nports = atoi(argv[6]);
	g_req = (size_t)atol(argv[7]);
	g_resp = (size_t)atol(argv[8]);
	double rate = argc > 9 ? atof(argv[9]) : 0;
	if (seconds <= 0 || seconds > 600 || clients < 1 || clients > MAX_THREADS || servers < 1 ||
	    servers > MAX_THREADS || g_nports < 1 || g_nports > MAX_PORTS || g_req < 1 || g_resp < 1 ||
	    g_req > (1 << 20) || g_resp > (1 << 20)) {
		fprintf(stderr, "loadgen: arguments out of range\n");
		return 2;
	}
	g_rate_per_client = rate > 0 ? rate / clients : 0;
	if (servers % g_nports) /* every port needs the same number of accept threads */
		servers += g_nports - servers % g_nports;
	if (servers > MAX_THREADS) {
		fprintf(stderr, "loadgen: too many server threads\n");
		return 2;
	}
	for (int p = 0; p < g_nports; p++)
		g_listen[p] = listen_on_ephemeral(&g_ports[p]);

	pthread_t st[MAX_THREADS], ct[MAX_THREADS];
	for (intptr_t s = 0; s < servers; s++)
		pthread_create(&st[s], NULL, server_thread, (void *)s);
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	double t0 = now_s();
	g_deadline = t0 + seconds;
	for (intptr_t c = 0; c < clients; c++)
		pthread_create(&ct[c], NULL, client_thread, (void *)c);
	for (int c = 0; c < clients; c++)
		pthread_join(ct[c], NULL);
	double t1 = now_s();
	getrusage(RUSAGE_SELF, &r1);
	for (int p = 0; p < g_nports; p++)
		shutdown(g_listen[p], SHUT_RDWR); /* wakes the accept() calls */
	for (int s = 0; s < servers; s++)
		pthread_join(st[s], NULL);
	for (int p = 0; p < g_nports; p++)
		close(g_listen[p]);
	double us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6;
	double ss = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
	printf("{\"connections\":%llu,\"seconds\":%.6f,\"errors\":%llu,", (unsigned long long)atomic_load(&g_done),
	       t1 - t0, (unsigned long long)atomic_load(&g_errors));
	print_ports();
	printf(",\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f}\n", us, ss);
	fflush(stdout);
	return 0;
}

static int hold(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: loadgen hold COUNT\n");
		return 2;
	}
	long count = atol(argv[2]);
	if (count < 1 || count > 100000) {
		fprintf(stderr, "loadgen: COUNT must be within 1..100000\n");
		return 2;
	}
	rlim_t need = (rlim_t)count * 2 + 256;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < need) {
		struct rlimit want = rl;
		want.rlim_cur = need;
		if (want.rlim_max < need)
			want.rlim_max = need; /* needs CAP_SYS_RESOURCE */
		if (setrlimit(RLIMIT_NOFILE, &want) < 0) {
			rl.rlim_cur = rl.rlim_max; /* the soft limit up to the hard one is always allowed */
			if (rl.rlim_max < need || setrlimit(RLIMIT_NOFILE, &rl) < 0) {
				fprintf(stderr, "loadgen: hold %ld needs %llu file descriptors, the hard limit is %llu\n", count,
					(unsigned long long)need, (unsigned long long)rl.rlim_max);
				return 3;
			}
		}
	}
	/* One listener per 16k connections keeps well inside the ephemeral port range. */
	g_nports = (int)((count + 16383) / 16384);
	for (int p = 0; p < g_nports; p++)
		g_listen[p] = listen_on_ephemeral(&g_ports[p]);
	int *fds = malloc(sizeof(int) * (size_t)count * 2);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char b = 'x';
	for (long i = 0; i < count; i++) {
		int p = (int)(i % g_nports);
		a.sin_port = htons(g_ports[p]);
		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c < 0)
			die("socket");
		if (connect(c, (struct sockaddr *)&a, sizeof a) < 0)
			die("connect");
		int s = accept4(g_listen[p], NULL, NULL, SOCK_CLOEXEC);
		if (s < 0)
			die("accept");
		if (write_full(c, &b, 1) || read_full(s, &b, 1) || write_full(s, &b, 1) || read_full(c, &b, 1))
			die("exchange");
		fds[2 * i] = c;
		fds[2 * i + 1] = s;
	}
	printf("{\"ready\":%ld,", count);
	print_ports();
	printf("}\n");
	fflush(stdout);
	char sink[256];
	while (read(0, sink, sizeof sink) > 0) {
	}
	for (long i = 0; i < count * 2; i++)
		close(fds[i]);
	free(fds);
	return 0;
}

static void *sink_thread(void *arg)
{
	int c = (int)(intptr_t)arg;
	char *buf = malloc(1 << 18);
	if (buf)
		while (read(c, buf, 1 << 18) > 0) {
		}
	free(buf);
	close(c);
	return NULL;
}

static void *accept_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (int n = 0; n < MAX_THREADS; n++) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		pthread_t t;
		if (pthread_create(&t, NULL, sink_thread, (void *)(intptr_t)c) != 0)
			close(c);
		else
			pthread_detach(t);
	}
	return NULL;
}

static int sink(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: loadgen sink ADDR\n");
		return 2;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET };
	if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) {
		fprintf(stderr, "loadgen: bad IPv4 address %s\n", argv[2]);
		return 2;
	}
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("bind");
	if (listen(fd, 64) < 0)
		die("listen");
	socklen_t len = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &len);
	printf("{\"port\":%d}\n", ntohs(a.sin_port));
	fflush(stdout);
	pthread_t t;
	if (pthread_create(&t, NULL, accept_thread, (void *)(intptr_t)fd) != 0)
		die("pthread_create");
	char b[256];
	while (read(0, b, sizeof b) > 0) {
	}
	return 0; /* exit closes every connection */
}

static struct sockaddr_in g_send_to;
static atomic_uint_fast64_t g_sent;

static void *send_thread(void *arg)
{
	(void)arg;
	size_t n = 1 << 17;
	char *buf = malloc(n);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!buf || fd < 0 || connect(fd, (struct sockaddr *)&g_send_to, sizeof g_send_to) < 0) {
		atomic_fetch_add(&g_errors, 1);
		goto out;
	}
	memset(buf, 'x', n);
	/* A stalled peer must not hold the run past its deadline. */
	struct timeval tmo = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
	while (now_s() < g_deadline) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			atomic_fetch_add(&g_errors, 1);
			break;
		}
		atomic_fetch_add(&g_sent, (uint64_t)w);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static int send_bulk(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: loadgen send ADDR PORT SECONDS STREAMS\n");
		return 2;
	}
	g_send_to.sin_family = AF_INET;
	if (inet_pton(AF_INET, argv[2], &g_send_to.sin_addr) != 1) {
		fprintf(stderr, "loadgen: bad IPv4 address %s\n", argv[2]);
		return 2;
	}
	g_send_to.sin_port = htons((uint16_t)atoi(argv[3]));
	double seconds = atof(argv[4]);
	int streams = atoi(argv[5]);
	if (seconds <= 0 || seconds > 600 || streams < 1 || streams > MAX_THREADS) {
		fprintf(stderr, "loadgen: SECONDS within (0, 600], STREAMS within 1..%d\n", MAX_THREADS);
		return 2;
	}
	double t0 = now_s();
	g_deadline = t0 + seconds;
	pthread_t th[MAX_THREADS];
	for (int i = 0; i < streams; i++)
		if (pthread_create(&th[i], NULL, send_thread, NULL) != 0)
			die("pthread_create");
	for (int i = 0; i < streams; i++)
		pthread_join(th[i], NULL);
	double t1 = now_s();
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"bytes\":%llu,\"seconds\":%.3f,\"errors\":%llu,\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f}\n",
	       (unsigned long long)atomic_load(&g_sent), t1 - t0, (unsigned long long)atomic_load(&g_errors),
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (argc >= 2 && strcmp(argv[1], "churn") == 0)
		return churn(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "hold") == 0)
		return hold(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "sink") == 0)
		return sink(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "send") == 0)
		return send_bulk(argc, argv);
	fprintf(stderr, "usage: loadgen churn ... | loadgen hold COUNT | loadgen sink ADDR | loadgen send ADDR PORT SECONDS STREAMS\n");
	return 2;
}
