// SPDX-License-Identifier: Apache-2.0
// BpfProbe: the JS-facing handle on bpf/tcp_probe.bpf.o.
//
// Lifecycle follows libbpf's open -> configure -> load -> attach -> poll:
//   new BpfProbe(objPath, tunables)  open + set .rodata tunables / ringbuf size
//   load()                           verify and create maps/programs
//   attachCgroup(path)               bpf_link at a cgroup-v2 directory (never pinned)
//   startDrain(onBatch, pollMs)      native thread: ringbuf -> one Buffer per batch
//   drainNow() / iterate()           synchronous reads (tests, periodic reports)
//   close()                          stop thread, destroy links, free everything
//
// Nothing is pinned in bpffs and every attachment is a bpf_link owned by this
// process, so a killed agent leaves nothing behind in the kernel.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct ring_buffer;

class BpfProbe : public Napi::ObjectWrap<BpfProbe> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit BpfProbe(const Napi::CallbackInfo& info);
  ~BpfProbe() override;

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
  Napi::Value StartDrain(const Napi::CallbackInfo& info);
  Napi::Value StopDrain(const Napi::CallbackInfo& info);
  Napi::Value DrainNow(const Napi::CallbackInfo& info);
  Napi::Value Iterate(const Napi::CallbackInfo& info);
  Napi::Value LostRecords(const Napi::CallbackInfo& info);
  Napi::Value ProgramStats(const Napi::CallbackInfo& info);
  Napi::Value ProgramIds(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void RequireState(Napi::Env env, bool needLoaded, const char* what);
  void StopDrainThread();
  void DrainLoop(int pollTimeoutMs);
  // Appends every record now in the ringbuf to `out`; returns records consumed or -errno.
  int ConsumeInto(std::vector<uint8_t>* out);
  void Release();
  static int OnSample(void* ctx, void* data, size_t size);

  bpf_object* obj_ = nullptr;
  bpf_program* sockops_ = nullptr;
  bpf_program* iter_ = nullptr;
  bpf_map* events_ = nullptr;
  bpf_map* connState_ = nullptr;
  bpf_map* lost_ = nullptr;
  std::vector<bpf_link*> cgroupLinks_;
  bpf_link* iterLink_ = nullptr;
  ring_buffer* rb_ = nullptr;
  int statsFd_ = -1;
  bool loaded_ = false;
  bool closed_ = false;

  // Serialises ring_buffer__consume between the drain thread and drainNow():
  // libbpf's ring_buffer is not thread-safe.
  std::mutex rbMutex_;
  std::vector<uint8_t>* sink_ = nullptr;  // valid only under rbMutex_

  std::thread drainThread_;
  std::atomic<bool> stopDrain_{false};
  Napi::ThreadSafeFunction tsfn_;
  bool draining_ = false;
};
