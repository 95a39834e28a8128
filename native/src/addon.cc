// SPDX-License-Identifier: Apache-2.0
// kmesh_bpf.node: N-API entry point. Exports { BpfProbe }; see native/index.d.ts.
#include <napi.h>

#include "bpf_probe.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("BpfProbe", BpfProbe::Init(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(kmesh_bpf, Init)
