// SPDX-License-Identifier: Apache-2.0
// BpfProbe: the JS-facing handle on bpf/tcp_probe.bpf.o.
//
// Lifecycle follows libbpf's open -> configure -> load -> attach -> poll:
//   new BpfProbe(objPath, tunables)  open + set .rodata tunables / ringbuf size
//   load()                           verify and create the core: kmesh_sockops
//                                    and the maps (fatal when it fails)
//   useSource(kind, options)         the periodic-report source, tried by
//                                    really loading (attaching, walking) it;
//                                    throws the kernel's reason, never fatal
//                                    for the probe (see UseSource)
//   attachCgroup(path)               bpf_link at a cgroup-v2 directory (never pinned)
//   detachCgroups()                  destroy those links, keep the rest (re-attachable)
//   startDrain(onBatch, pollMs)      native thread: ringbuf -> one Buffer per batch
//   drainNow() / iterate()           synchronous reads (tests)
//   iterateAsync(cb[, onRecords])    the periodic walk on a thread of its own
//                                    (with onRecords: streamed in chunks of one
//                                    reused buffer while it runs)
//   close()                          stop thread, destroy links, free everything
//
// Ordering: every record consumed from the ringbuf, by whichever thread,
// is appended to one queue (ready_) under rbMutex_, so the queue is in
// ringbuf order; the JS side (drain callback, drainNow, iterate) only ever
// takes from the front of that queue. The iterators' reports travel through
// the same ringbuf, and sock_diag's reports are appended to ready_ under the
// same lock after every close consumed so far (see JoinDiagRows), so a report
// and the close of the same socket reach JS in the order they happened.
//
// Nothing is pinned in bpffs and every attachment is a bpf_link owned by this
// process, so a killed agent leaves nothing behind in the kernel.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <functional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "netns.h"
#include "sock_diag.h"
#include "record_c.h"

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
  Napi::Value UseSource(const Napi::CallbackInfo& info);
  Napi::Value Source(const Napi::CallbackInfo& info);
  Napi::Value LastWalk(const Napi::CallbackInfo& info);
  static Napi::Value ListNamespaces(const Napi::CallbackInfo& info);
  Napi::Value LostRecords(const Napi::CallbackInfo& info);
  Napi::Value IterFallbackRecords(const Napi::CallbackInfo& info);
  Napi::Value ProgramStats(const Napi::CallbackInfo& info);
  Napi::Value ProgramIds(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  // Packed runs of conn_record, in order (each piece whole records).
  using Pieces = std::deque<std::vector<uint8_t>>;

  enum class SourceKind { None, SkStorageIter, TcpIter, SockDiag, RttCb };
  static const char* SourceName(SourceKind k);

  // What one walk did, for the walk's callback and lastWalk().
  struct WalkStats {
    double durationMs = 0;
    uint32_t namespaces = 0;  // walked (per-namespace sources; 1 for the map iterator)
    uint64_t reported = 0;    // RECORD_REPORTs this walk produced
    // Namespaces that could not be entered or read this walk: path, reason,
    // and whether it is the first failure of that namespace (log once).
    struct Failure {
      std::string path;
      std::string reason;
      bool first;
    };
    std::vector<Failure> failures;
  };

  void RequireState(Napi::Env env, bool needLoaded, const char* what);
  bpf_object* OpenObject(Napi::Env env, const char* onlyProgram);
  void LoadIterator(Napi::Env env, SourceKind kind);
  void EnableRttReports(Napi::Env env, uint64_t intervalNs);
  void PrepareWalk(Napi::Env env, const char* what);
  // The walk of the current source (any thread but the JS one for the
  // per-namespace sources: they setns()). Returns 0 or an errno.
  // The result is the walk's batches in order, never concatenated: a walk
  // over 100k sockets is 14 MB, and joining its pieces into one block held
  // two copies at once (see DeliverChunks).
  // `stream` (iterateAsync with onRecords): called on the walk's helper
  // thread whenever a chunk's worth of records waits in ready_; the records
  // then stay in ready_ for the JS thread to deliver during the walk
  // (StreamReady), and `all` gets only the reports read() returned.
  int WalkInto(Pieces& all, WalkStats& stats, const std::function<void()>& stream = nullptr);
  // Runs WalkInto on a thread of its own and waits (synchronous callers).
  int WalkOnThread(Pieces& all, WalkStats& stats);
  int ReadIterFd(int fd, std::vector<uint8_t>& fallback, Pieces& after);
  int WalkNamespaces(std::vector<uint8_t>& fallback, Pieces& after, WalkStats& stats);
  // Appends RECORD_REPORTs for the rows of tracked connections to ready_,
  // after consuming the ring (see the ordering note at the top).
  uint64_t JoinDiagRows(const std::vector<std::pair<uint64_t, std::vector<DiagRow>>>& perNs, uint64_t walkNo);
  void NoteFailure(WalkStats& stats, const NetnsRef& ns, const std::string& what, int err);
  void PushBackFront(Pieces&& keep);
  // iterateAsync(cb, onRecords): hands `pieces` to onRecords in views of at
  // most kWalkChunkBytes of one ArrayBuffer reused by every chunk and walk,
  // freeing each piece once copied. JS thread.
  // With `drop`, RECORD_REPORTs of sockets in it are left out; CLOSE and
  // FAIL cookies delivered are added to `closed` when given.
  // Returns the RECORD_REPORTs delivered.
  uint64_t DeliverChunks(Napi::Env env, Napi::Function onRecords, Pieces& pieces,
                         const std::unordered_set<uint64_t>* drop = nullptr, std::unordered_set<uint64_t>* closed = nullptr);
  void StopDrainThread();
  void DrainLoop(int pollTimeoutMs);
  // Consumes every record now in the ringbuf and appends them, as one batch,
  // to ready_ (unless none); returns records consumed or -errno. Does nothing
  // (returns 0) while ready_ holds kMaxReadyBytes or more: the ringbuf is
  // then the bounded buffer and overflow shows up in lost_records.
  int ConsumeToReady();
  int ConsumeToReadyLocked();  // the same, rbMutex_ already held
  // Takes every batch in ready_, concatenated, in order.
  std::vector<uint8_t> TakeReady();
  // Moves every batch in ready_, in order, to the end of `dst` (no copy).
  void TakeReadyPieces(Pieces& dst);
  uint64_t SumPerCpu(Napi::Env env, bpf_map* map, const char* what);
  void Release();
  static int OnSample(void* ctx, void* data, size_t size);

  bpf_object* obj_ = nullptr;      // the core: kmesh_sockops and every map
  bpf_object* iterObj_ = nullptr;  // the iterator source's program, sharing the core's maps
  bpf_program* sockops_ = nullptr;
  bpf_program* iter_ = nullptr;
  bpf_map* events_ = nullptr;
  bpf_map* connState_ = nullptr;
  bpf_map* lost_ = nullptr;
  bpf_map* iterFallback_ = nullptr;
  SourceKind source_ = SourceKind::None;
  // Per-namespace sources: where namespaces are found.
  std::string procRoot_ = "/proc";
  std::vector<std::string> netnsDirs_{"/run/netns"};
  // Namespaces whose failure was already reported (walk threads only; walks
  // never overlap).
  std::set<std::pair<dev_t, ino_t>> failedNs_;
  // sock_diag: the OPEN record of every tracked connection by cookie, kept
  // from the ring's records (OnSample, under rbMutex_) until its close, so a
  // diag row can become a full RECORD_REPORT; seenWalk is the last walk that
  // saw it (pruning of connections whose close was lost).
  struct Tracked {
    conn_record open;
    uint64_t seenWalk;
  };
  std::unordered_map<uint64_t, Tracked> tracked_;  // under rbMutex_
  uint64_t walkNo_ = 0;                             // under rbMutex_
  bool trackOpens_ = false;                         // under rbMutex_: source_ is sock_diag
  WalkStats lastWalk_;                              // JS thread
  std::string path_;
  uint64_t wakeupBytes_ = 0;
  uint32_t ringbufBytes_ = 0;
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
  // iterateAsync(cb, onRecords): the chunk buffer, created on first use and
  // kept for the probe's life, so a walk leaves no walk-sized Buffer for the
  // garbage collector (which freed each one only at a later major GC: one
  // 14 MB walk buffer was always resident at 100k tracked sockets). Whole
  // records: 7,280 of 144 bytes.
  static constexpr size_t kWalkChunkBytes = 1u << 20;
  Napi::Reference<Napi::ArrayBuffer> chunkBuf_;  // JS thread
  // Streaming walks: a delivery of ready_ is scheduled on the JS thread and
  // has not run yet (at most one at a time); cookies of the closes and
  // failures delivered during the walk in flight (JS thread), so a report
  // read() returned for such a socket is dropped instead of delivered after
  // its close (the close carries the final totals).
  std::atomic<bool> streamPending_{false};
  std::unordered_set<uint64_t> streamedCloses_;
  uint64_t streamedReports_ = 0;  // JS thread: reports delivered during the walk in flight
  bool walkStreaming_ = false;    // walk thread: the walk in progress streams

  std::thread drainThread_;
  std::atomic<bool> stopDrain_{false};
  Napi::ThreadSafeFunction tsfn_;
  bool draining_ = false;
};
