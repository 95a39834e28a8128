// SPDX-License-Identifier: Apache-2.0
// struct conn_record for the addon: the BPF side's own header
// (bpf/include/record.h, the one definition), with the kernel's __u* types.
#pragma once

#include <linux/types.h>

#include "record.h"
