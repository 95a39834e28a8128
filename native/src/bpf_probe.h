// SPDX-License-Identifier: Apache-2.0
// BpfProbe: the JS-facing handle on bpf/tcp_probe.bpf.o.
//
// Lifecycle follows libbpf's open -> configure -> load -> attach -> poll:
//   new BpfProbe(objPath, tunables)  open + set .rodata tunables / ringbuf size
//   load()                           verify and create maps/programs
//   attachCgroup(path)               bpf_link at a cgroup-v2 directory (never pinned)
//   detachCgroups()                  destroy those links, keep the rest (re-attachable)
//   startDrain(onBatch, pollMs)      native thread: ringbuf -> one Buffer per batch
//   drainNow() / iterate()           synchronous reads (tests)
//   iterateAsync(cb)                 the periodic walk on a thread of its own
//   iteratorInfo()                   which iterator program load() settled on
//
// Ordering: every record consumed from the ringbuf, by whichever thread,
// is appended to one queue (ready_) under rbMutex_, so the queue is in
// ringbuf order; the JS side (drain callback, drainNow, iterate) only ever
// takes from the front of that queue. The iterator's reports travel through
// the same ringbuf, so a report and the close of the same socket reach JS in
// the order the kernel emitted them (see kmesh_conn_iter).
//   close()                          stop thread, destroy links, free everything
//
// Nothing is pinned in bpffs and every attachment is a bpf_link owned by this
// process, so a killed agent leaves nothing behind in the kernel.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <deque>
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
  Napi::Value DetachCgroups(const Napi::CallbackInfo& info);
  Napi::Value StartDrain(const Napi::CallbackInfo& info);
  Napi::Value StopDrain(const Napi::CallbackInfo& info);
  Napi::Value DrainNow(const Napi::CallbackInfo& info);
  Napi::Value Iterate(const Napi::CallbackInfo& info);
  Napi::Value IterateAsync(const Napi::CallbackInfo& info);
  Napi::Value IteratorInfo(const Napi::CallbackInfo& info);
  Napi::Value LostRecords(const Napi::CallbackInfo& info);
  Napi::Value IterFallbackRecords(const Napi::CallbackInfo& info);
  Napi::Value ProgramStats(const Napi::CallbackInfo& info);
  Napi::Value ProgramIds(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void RequireState(Napi::Env env, bool needLoaded, const char* what);
  void OpenObject(Napi::Env env);
  void PrepareWalk(Napi::Env env, const char* what);
  int WalkInto(std::vector<uint8_t>& all);
  void PushBackFront(std::vector<uint8_t>&& keep);
  int LoadWith(bpf_program* iter);
  const char* IterKind() const;
  void StopDrainThread();
  void DrainLoop(int pollTimeoutMs);
  // Consumes every record now in the ringbuf and appends them, as one batch,
  // to ready_ (unless none); returns records consumed or -errno. Does nothing
  // (returns 0) while ready_ holds kMaxReadyBytes or more: the ringbuf is
  // then the bounded buffer and overflow shows up in lost_records.
  int ConsumeToReady();
  // Takes every batch in ready_, concatenated, in order.
  std::vector<uint8_t> TakeReady();
  uint64_t SumPerCpu(Napi::Env env, bpf_map* map, const char* what);
  void Release();
  static int OnSample(void* ctx, void* data, size_t size);

  bpf_object* obj_ = nullptr;
  bpf_program* sockops_ = nullptr;
  bpf_program* iter_ = nullptr;  // the loaded one of mapIter_ / fileIter_
  bpf_program* mapIter_ = nullptr;
  bpf_program* fileIter_ = nullptr;
  bpf_map* events_ = nullptr;
  bpf_map* connState_ = nullptr;
  bpf_map* lost_ = nullptr;
  bpf_map* iterFallback_ = nullptr;
  bpf_map* walkGen_ = nullptr;
  uint64_t walkGenValue_ = 0;
  // Kept for a second open in load() (see OpenObject).
  std::string path_;
  uint64_t wakeupBytes_ = 0;
  uint32_t ringbufBytes_ = 0;
  // tunables.iterator: "auto", "sk_storage_map" or "task_file".
  std::string iterChoice_ = "auto";
  // Why the sk_storage map iterator did not load when "auto" fell back.
  std::string mapIterError_;
  std::vector<bpf_link*> cgroupLinks_;
  bpf_link* iterLink_ = nullptr;
  ring_buffer* rb_ = nullptr;
  int statsFd_ = -1;
  bool wantStats_ = false;
  bool loaded_ = false;
  bool closed_ = false;

  // Serialises ring_buffer__consume between the drain thread and drainNow():
  // libbpf's ring_buffer is not thread-safe.
  std::mutex rbMutex_;
  std::vector<uint8_t>* sink_ = nullptr;  // valid only under rbMutex_

  // Consumed batches not yet handed to JS, oldest first. Lock order:
  // rbMutex_ before readyMutex_.
  static constexpr size_t kMaxReadyBytes = 64u << 20;
  std::mutex readyMutex_;
  std::deque<std::vector<uint8_t>> ready_;
  size_t readyBytes_ = 0;
  // A drain callback is scheduled and has not yet taken ready_: no need for another.
  std::atomic<bool> notifyPending_{false};

  // iterateAsync(): the walk's thread, and "a walk is in flight" (set on the
  // JS thread before the thread starts, cleared on the JS thread when its
  // result is delivered).
  std::thread walkThread_;
  std::atomic<bool> walking_{false};

  std::thread drainThread_;
  std::atomic<bool> stopDrain_{false};
  Napi::ThreadSafeFunction tsfn_;
  bool draining_ = false;
};
