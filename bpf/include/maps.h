/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps user space finds by name (native/src/bpf_probe.cc), defined once
 * for every object the addon loads: the agent's bpf/tcp_probe.bpf.c and the
 * benchmark's floor probes (bench/lib/floor.bpf.c). Include once per object,
 * after vmlinux.h and bpf_helpers.h.
 */
#ifndef KMESH_OTEL_MAPS_H
#define KMESH_OTEL_MAPS_H

/* Per-socket state in socket-local storage (freed with the socket); each
 * object brings its own value type. */
#define KMESH_CONN_STATE_MAP(value_type)                                       \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_SK_STORAGE);                         \
		__uint(map_flags, BPF_F_NO_PREALLOC); /* required for sk_storage */ \
		__type(key, int);                                              \
		__type(value, value_type);                                     \
	} conn_state SEC(".maps")

/* Records to user space. Default 1 MiB; the addon may resize it before load
 * (power of two pages). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Failed bpf_ringbuf_reserve()s, per CPU so counting never contends. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_records SEC(".maps");

/*
 * RECORD_REPORTs an iterator wrote into the read() buffer (bpf_seq_write)
 * because the ringbuf was full: not lost, but each one brings back the
 * seq_file restart cost kmesh_conn_iter avoids. Per CPU, like lost_records.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} iter_fallback_records SEC(".maps");

#endif /* KMESH_OTEL_MAPS_H */
