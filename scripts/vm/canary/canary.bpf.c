// SPDX-License-Identifier: GPL-2.0
// The kernel matrix's canary (scripts/vm/canary/canary.test.mjs): a program
// that only newer kernels load. It calls the open-coded numeric iterator
// kfuncs bpf_iter_num_new/next/destroy, added in Linux 6.4 (commit
// 6018e1f407cc, "bpf: implement numbers iterator") and registered for every
// program type, so 6.18 loads it and 6.1 refuses it (libbpf finds no BTF for
// the kfunc). The test that asserts it loads is this repository's stand-in
// for a real kernel-specific regression: the matrix must fail on exactly the
// kernel that refuses it. Not part of the product.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;

SEC("socket")
int kmx_canary(struct __sk_buff *skb)
{
	struct bpf_iter_num it;
	int *v, sum = 0;

	bpf_iter_num_new(&it, 0, 4);
	while ((v = bpf_iter_num_next(&it)))
		sum += *v;
	bpf_iter_num_destroy(&it);
	return sum > 0 ? skb->len : 0;
}

char LICENSE[] SEC("license") = "GPL";
