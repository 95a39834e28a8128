// SPDX-License-Identifier: Apache-2.0
/*
 * Loads a BPF object with libbpf and attaches every program in it to one
 * cgroup-v2 directory, on command, for the benchmarks whose probes the
 * agent's addon does not load (bench/lib/kmesh_design.bpf.c: sockops +
 * cgroup_skb). Compiled by bench/lib/cgprobe.ts into a temporary directory at
 * bench time (never committed as a binary).
 *
 *   cgprobe OBJECT CGROUP_DIR
 *     Opens and loads OBJECT (every program), then prints `loaded` (or
 *     `error <libbpf's message>` and exits 3) and reads commands from stdin,
 *     one per line, answering each with one line:
 *       attach  -> `attached`   one bpf_link per program at CGROUP_DIR
 *       detach  -> `detached`   every link destroyed
 *       count   -> `<n>`        sum over CPUs of the per-CPU array
 *                               `skb_counted` (0 if the object has none)
 *       stats-on  -> `stats on`  kernel BPF run-time stats on (BPF_ENABLE_STATS,
 *                               machine-wide while held: every program counts)
 *       stats-off -> `stats off`
 *       stats   -> `<runs> <ns>`  run_cnt and run_time_ns summed over the
 *                               object's programs
 *     At EOF on stdin (the parent closed the pipe or died) it exits; links
 *     are never pinned, so the kernel detaches everything with the process.
 *     PR_SET_PDEATHSIG kills it with its parent.
 */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_LINKS 16

static char g_log[4096];
static size_t g_log_len;

/* Keeps libbpf's (and the verifier's) last messages for the error line. */
static int capture(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	if (level == LIBBPF_DEBUG)
		return 0;
	n = vsnprintf(line, sizeof line, fmt, ap);
	if (n <= 0)
		return 0;
	if (g_log_len + (size_t)n >= sizeof g_log)
		g_log_len = 0; /* keep the tail */
	memcpy(g_log + g_log_len, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
	g_log_len += (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
	g_log[g_log_len] = 0;
	return 0;
}

static void fail(const char *what, int err)
{
	/* One line: newlines of the verifier log become " | ". */
	for (char *p = g_log; *p; p++)
		if (*p == '\n')
			*p = '|';
	printf("error %s: %s (errno %d)%s%s\n", what, strerror(err), err, g_log_len ? " | " : "", g_log);
	fflush(stdout);
	exit(3);
}

int main(int argc, char **argv)
{
	struct bpf_link *links[MAX_LINKS];
	struct bpf_program *prog;
	struct bpf_object *obj;
	struct bpf_map *counted;
	int nlinks = 0, cg, err, stats_fd = -1;
	char cmd[64];

	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 3) {
		fprintf(stderr, "usage: cgprobe OBJECT CGROUP_DIR\n");
		return 2;
	}
	libbpf_set_print(capture);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		fail("open", errno);
	err = bpf_object__load(obj);
	if (err)
		fail("load", -err);
	cg = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0)
		fail("open cgroup", errno);
	counted = bpf_object__find_map_by_name(obj, "skb_counted");
	printf("loaded\n");
	while (fgets(cmd, sizeof cmd, stdin)) {
		if (strcmp(cmd, "attach\n") == 0) {
			bpf_object__for_each_program(prog, obj) {
				struct bpf_link *l;

				if (nlinks == MAX_LINKS)
					fail("attach: too many programs", E2BIG);
				l = bpf_program__attach_cgroup(prog, cg);
				if (!l)
					fail(bpf_program__name(prog), errno);
				links[nlinks++] = l;
			}
			printf("attached\n");
		} else if (strcmp(cmd, "detach\n") == 0) {
			while (nlinks > 0)
				bpf_link__destroy(links[--nlinks]);
			printf("detached\n");
		} else if (strcmp(cmd, "count\n") == 0) {
			unsigned long long sum = 0;
			int ncpu = libbpf_num_possible_cpus();
			__u64 *v = ncpu > 0 ? calloc((size_t)ncpu, sizeof *v) : NULL;
			__u32 zero = 0;

			if (counted && v && bpf_map_lookup_elem(bpf_map__fd(counted), &zero, v) == 0)
				for (int i = 0; i < ncpu; i++)
					sum += v[i];
			free(v);
			printf("%llu\n", sum);
		} else if (strcmp(cmd, "stats-on\n") == 0) {
			if (stats_fd < 0)
				stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
			if (stats_fd < 0)
				printf("error stats: %s\n", strerror(errno));
			else
				printf("stats on\n");
		} else if (strcmp(cmd, "stats-off\n") == 0) {
			if (stats_fd >= 0)
				close(stats_fd);
			stats_fd = -1;
			printf("stats off\n");
		} else if (strcmp(cmd, "stats\n") == 0) {
			unsigned long long runs = 0, ns = 0;

			bpf_object__for_each_program(prog, obj) {
				struct bpf_prog_info pi = {};
				__u32 len = sizeof pi;

				if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &pi, &len) == 0) {
					runs += pi.run_cnt;
					ns += pi.run_time_ns;
				}
			}
			printf("%llu %llu\n", runs, ns);
		} else {
			printf("error unknown command\n");
		}
	}
	while (nlinks > 0)
		bpf_link__destroy(links[--nlinks]);
	bpf_object__close(obj);
	return 0;
}
