// SPDX-License-Identifier: Apache-2.0
#include "bpf_probe.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <malloc.h>
#include <stdarg.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <memory>
#include <set>
#include <tuple>

namespace {

// libbpf reports details (verifier log, missing BTF, ...) through one global
// print callback. Keep the tail of it so a failure can be explained in the
// thrown Error instead of being sprayed on stderr.
std::mutex gLogMutex;
std::string gLibbpfLog;
constexpr size_t kLogKeep = 16 * 1024;

int CaptureLibbpfLog(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof line, fmt, args);
  if (n <= 0) return 0;
  std::lock_guard<std::mutex> lock(gLogMutex);
  gLibbpfLog.append(line, std::min<size_t>(static_cast<size_t>(n), sizeof line - 1));
  if (gLibbpfLog.size() > kLogKeep) gLibbpfLog.erase(0, gLibbpfLog.size() - kLogKeep);
  return 0;
}

void ClearLibbpfLog() {
  std::lock_guard<std::mutex> lock(gLogMutex);
  gLibbpfLog.clear();
}

std::string LibbpfLogTail(size_t max = 4096) {
  std::lock_guard<std::mutex> lock(gLogMutex);
  if (gLibbpfLog.empty()) return "";
  size_t start = gLibbpfLog.size() > max ? gLibbpfLog.size() - max : 0;
  return "\nlibbpf: " + gLibbpfLog.substr(start);
}

// What to do about an errno, in the caller's terms.
std::string Advice(int err) {
  switch (err) {
    case EPERM:
      // As root, EPERM before the verifier runs is the kernel's own "no":
      // lockdown, a hardened build or a program type turned off.
      if (geteuid() == 0)
        return "the kernel refuses it although this process is root (lockdown, a hardened build, or a disabled program "
               "type)";
      return "run as root or grant CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN";
    case EACCES:
      return "the verifier rejected it, or this process lacks CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN (see the libbpf log "
             "below)";
    case ENOENT:
      return "check that the path exists (build the object with `npm run build:bpf`)";
    case ENOSYS:
    case EOPNOTSUPP:
    case EINVAL:
      return "the kernel may lack sockops/sk_storage/ringbuf/bpf_iter support or BTF "
             "(/sys/kernel/btf/vmlinux); see the libbpf log below";
    case EBUSY:
      return "the resource is in use";
    default:
      return "see the libbpf log below";
  }
}

[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& what, int err) {
  if (err < 0) err = -err;
  std::string msg = what + ": " + strerror(err) + " (errno " + std::to_string(err) + "); " +
                    Advice(err) + LibbpfLogTail();
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, err));
  throw e;
}

[[noreturn]] void Throw(Napi::Env env, const std::string& msg) {
  throw Napi::Error::New(env, msg);
}

// Finds a global variable of one of the object's data sections (".rodata"
// for `const volatile` tunables, ".bss" for values user space changes after
// load) through the object's own BTF (its DATASEC) rather than a generated
// skeleton, so the addon works with any build of the object.
struct GlobalVar {
  bpf_map* map;
  uint32_t offset;
  uint32_t size;
};

GlobalVar FindGlobal(Napi::Env env, bpf_object* obj, const char* section, const char* name) {
  bpf_map* sec_map = nullptr;
  bpf_map* m;
  size_t slen = strlen(section);
  bpf_object__for_each_map(m, obj) {
    const char* mn = bpf_map__name(m);
    size_t len = strlen(mn);
    if (bpf_map__is_internal(m) && len >= slen && strcmp(mn + len - slen, section) == 0) sec_map = m;
  }
  const btf* b = bpf_object__btf(obj);
  if (!sec_map || !b) Throw(env, std::string("BPF object has no ") + section + "/BTF for " + name);
  int sec_id = btf__find_by_name_kind(b, section, BTF_KIND_DATASEC);
  if (sec_id < 0) Throw(env, std::string("BPF object BTF has no ") + section + " DATASEC");
  const btf_type* sec = btf__type_by_id(b, sec_id);
  const btf_var_secinfo* vs = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); i++, vs++) {
    const btf_type* var = btf__type_by_id(b, vs->type);
    if (strcmp(btf__name_by_offset(b, var->name_off), name) == 0) return GlobalVar{sec_map, vs->offset, vs->size};
  }
  Throw(env, std::string("BPF object has no global ") + name + " in " + section);
}

// Sets a `const volatile` tunable before load.
void SetRodataU64(Napi::Env env, bpf_object* obj, const char* name, uint64_t value) {
  GlobalVar v = FindGlobal(env, obj, ".rodata", name);
  if (v.size != sizeof(uint64_t)) Throw(env, std::string("tunable ") + name + " is not 64-bit");
  size_t size = 0;
  auto* cur = static_cast<const uint8_t*>(bpf_map__initial_value(v.map, &size));
  if (!cur || v.offset + v.size > size) Throw(env, "cannot read .rodata before load");
  std::vector<uint8_t> image(cur, cur + size);
  memcpy(image.data() + v.offset, &value, sizeof value);
  int err = bpf_map__set_initial_value(v.map, image.data(), image.size());
  if (err) ThrowErrno(env, std::string("cannot set tunable ") + name, err);
}

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// RECORD_REPORTs in a packed run of records.
uint64_t CountReports(const std::vector<uint8_t>& buf) {
  uint64_t n = 0;
  for (size_t off = 0; off + sizeof(conn_record) <= buf.size(); off += sizeof(conn_record))
    if (buf[off + offsetof(conn_record, kind)] == RECORD_REPORT) n++;
  return n;
}

// One block of all the pieces (the synchronous front ends, and iterateAsync
// without onRecords).
std::vector<uint8_t> Concat(std::deque<std::vector<uint8_t>>&& pieces) {
  if (pieces.size() == 1) return std::move(pieces.front());
  std::vector<uint8_t> out;
  size_t total = 0;
  for (const auto& p : pieces) total += p.size();
  out.reserve(total);
  for (auto& p : pieces) {
    out.insert(out.end(), p.begin(), p.end());
    std::vector<uint8_t>().swap(p);
  }
  pieces.clear();
  return out;
}

std::string ErrnoText(int err) { return std::string(strerror(err)) + " (errno " + std::to_string(err) + ")"; }

// Hands a batch to JS without copying it: the Buffer owns the vector. V8
// is told about the memory (as it is for a Buffer it allocates itself), so a
// few large batches still bring the GC round to free them.
Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, std::vector<uint8_t>&& bytes) {
  if (bytes.empty()) return Napi::Buffer<uint8_t>::New(env, 0);
  auto* owned = new std::vector<uint8_t>(std::move(bytes));
  int64_t size = static_cast<int64_t>(owned->capacity());
  Napi::MemoryManagement::AdjustExternalMemory(env, size);
  return Napi::Buffer<uint8_t>::New(env, owned->data(), owned->size(), [size](Napi::Env e, uint8_t*, std::vector<uint8_t>* v) {
    delete v;
    Napi::MemoryManagement::AdjustExternalMemory(e, -size);
  }, owned);
}

uint32_t ProgId(bpf_program* p) {
  bpf_prog_info info = {};
  uint32_t len = sizeof info;
  if (!p || bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) != 0) return 0;
  return info.id;
}

}  // namespace

Napi::Function BpfProbe::Init(Napi::Env env) {
  libbpf_set_print(CaptureLibbpfLog);
  // Batches and walk buffers are megabytes (a walk over 100k sockets is
  // 14 MB) and short-lived. glibc raises its mmap threshold to the size of
  // each such block freed, after which blocks of that size come from the heap
  // and stay resident when freed; a fixed threshold keeps them mmap()ed,
  // returned to the kernel on free(). Process-wide, but only for blocks of
  // 1 MiB and more, which Node itself rarely allocates.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  return DefineClass(env, "BpfProbe",
                     {
                         InstanceMethod("load", &BpfProbe::Load),
                         InstanceMethod("useSource", &BpfProbe::UseSource),
                         InstanceMethod("source", &BpfProbe::Source),
                         InstanceMethod("attachCgroup", &BpfProbe::AttachCgroup),
                         InstanceMethod("detachCgroups", &BpfProbe::DetachCgroups),
                         InstanceMethod("startDrain", &BpfProbe::StartDrain),
                         InstanceMethod("stopDrain", &BpfProbe::StopDrain),
                         InstanceMethod("drainNow", &BpfProbe::DrainNow),
                         InstanceMethod("iterate", &BpfProbe::Iterate),
                         InstanceMethod("iterateAsync", &BpfProbe::IterateAsync),
                         InstanceMethod("lastWalk", &BpfProbe::LastWalk),
                         InstanceMethod("lostRecords", &BpfProbe::LostRecords),
                         InstanceMethod("iterFallbackRecords", &BpfProbe::IterFallbackRecords),
                         InstanceMethod("programStats", &BpfProbe::ProgramStats),
                         InstanceMethod("programIds", &BpfProbe::ProgramIds),
                         InstanceMethod("close", &BpfProbe::Close),
                         StaticMethod("listNetworkNamespaces", &BpfProbe::ListNamespaces),
                     });
}

BpfProbe::BpfProbe(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfProbe>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString())
    Throw(env, "BpfProbe(objPath, tunables): objPath must be a string");
  std::string path = info[0].As<Napi::String>();
  uint64_t wakeupBytes = 64 * 1024;
  uint32_t ringbufBytes = 0;
  if (info.Length() >= 2 && info[1].IsObject()) {
    Napi::Object t = info[1].As<Napi::Object>();
    if (t.Has("wakeupBytes")) {
      Napi::Value v = t.Get("wakeupBytes");
      if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0)
        Throw(env, "tunables.wakeupBytes must be a non-negative number");
      wakeupBytes = static_cast<uint64_t>(v.As<Napi::Number>().DoubleValue());
    }
    if (t.Has("runTimeStats") && !t.Get("runTimeStats").IsUndefined()) {
      Napi::Value v = t.Get("runTimeStats");
      if (!v.IsBoolean()) Throw(env, "tunables.runTimeStats must be a boolean");
      wantStats_ = v.As<Napi::Boolean>().Value();
    }
    if (t.Has("ringbufBytes") && !t.Get("ringbufBytes").IsUndefined()) {
      Napi::Value v = t.Get("ringbufBytes");
      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      long page = sysconf(_SC_PAGESIZE);
      uint64_t n = static_cast<uint64_t>(d);
      if (d < page || d > (1u << 30) || (n & (n - 1)) != 0)
        Throw(env, "tunables.ringbufBytes must be a power of two between the page size and 1 GiB");
      ringbufBytes = static_cast<uint32_t>(n);
    }
  }
  path_ = path;
  wakeupBytes_ = wakeupBytes;
  ringbufBytes_ = ringbufBytes;
  ClearLibbpfLog();
  if (access(path.c_str(), R_OK) != 0)
    ThrowErrno(env, "cannot read BPF object " + path, errno);
  obj_ = OpenObject(env, "kmesh_sockops");
  sockops_ = bpf_object__find_program_by_name(obj_, "kmesh_sockops");
  events_ = bpf_object__find_map_by_name(obj_, "events");
  connState_ = bpf_object__find_map_by_name(obj_, "conn_state");
  lost_ = bpf_object__find_map_by_name(obj_, "lost_records");
  iterFallback_ = bpf_object__find_map_by_name(obj_, "iter_fallback_records");
  try {
    SetRodataU64(env, obj_, "wakeup_bytes", wakeupBytes_);
    if (ringbufBytes_ != 0) {
      int err = bpf_map__set_max_entries(events_, ringbufBytes_);
      if (err) ThrowErrno(env, "cannot size the events ringbuf", err);
    }
  } catch (...) {
    Release();
    throw;
  }
}

// Opens the object with only `onlyProgram` to be loaded (no kernel state
// yet). Each optional program is loaded from an object of its own, so that a
// program the kernel refuses costs nothing but that program: the core is
// loaded once, and a candidate source's program reuses the core's maps.
bpf_object* BpfProbe::OpenObject(Napi::Env env, const char* onlyProgram) {
  bpf_object* obj = bpf_object__open_file(path_.c_str(), nullptr);
  if (!obj) ThrowErrno(env, "cannot open BPF object " + path_, errno);
  const char* needed[] = {"kmesh_sockops", "kmesh_conn_iter", "kmesh_tcp_iter"};
  const char* maps[] = {"events", "conn_state", "lost_records", "iter_fallback_records"};
  bool ok = true;
  for (const char* n : needed) ok = ok && bpf_object__find_program_by_name(obj, n) != nullptr;
  for (const char* n : maps) ok = ok && bpf_object__find_map_by_name(obj, n) != nullptr;
  if (!ok) {
    bpf_object__close(obj);
    Throw(env, path_ + " lacks kmesh_sockops/kmesh_conn_iter/kmesh_tcp_iter/events/conn_state/lost_records/"
                       "iter_fallback_records: wrong or stale object, rebuild with `npm run build:bpf`");
  }
  bpf_program* p;
  bpf_object__for_each_program(p, obj) bpf_program__set_autoload(p, strcmp(bpf_program__name(p), onlyProgram) == 0);
  return obj;
}

BpfProbe::~BpfProbe() { Release(); }

void BpfProbe::RequireState(Napi::Env env, bool needLoaded, const char* what) {
  if (closed_) Throw(env, std::string("BpfProbe.") + what + "(): probe is closed");
  if (needLoaded && !loaded_) Throw(env, std::string("BpfProbe.") + what + "(): call load() first");
}

const char* BpfProbe::SourceName(SourceKind k) {
  switch (k) {
    case SourceKind::SkStorageIter:
      return "sk_storage_iter";
    case SourceKind::TcpIter:
      return "tcp_iter";
    case SourceKind::SockDiag:
      return "sock_diag";
    case SourceKind::RttCb:
      return "rtt_cb";
    default:
      return "none";
  }
}

Napi::Value BpfProbe::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, false, "load");
  if (loaded_) Throw(env, "BpfProbe.load(): already loaded");
  ClearLibbpfLog();
  int err = bpf_object__load(obj_);
  if (err) ThrowErrno(env, "cannot load the core BPF program (kmesh_sockops and its maps)", err);
  rb_ = ring_buffer__new(bpf_map__fd(events_), &BpfProbe::OnSample, this, nullptr);
  if (!rb_) ThrowErrno(env, "cannot set up the events ringbuf reader", errno);
  // Kernel-side run time accounting for programStats(), only when asked for:
  // it is global (every BPF program on the node) and costs two clock reads
  // per program run, ~17 runs per connection for sockops
  // (bpf_prog_run_array_cg -> __bpf_prog_run with bpf_stats_enabled_key).
  // Stays on while this fd is open. Best effort.
  if (wantStats_) statsFd_ = bpf_enable_stats(BPF_STATS_RUN_TIME);
  loaded_ = true;
  return env.Undefined();
}

// Loads one iterator program in an object of its own whose maps are the
// core's (bpf_map__reuse_fd), and creates its iterator link.
void BpfProbe::LoadIterator(Napi::Env env, SourceKind kind) {
  const char* prog = kind == SourceKind::SkStorageIter ? "kmesh_conn_iter" : "kmesh_tcp_iter";
  ClearLibbpfLog();
  bpf_object* obj = OpenObject(env, prog);
  bpf_map* m;
  bpf_object__for_each_map(m, obj) {
    if (bpf_map__is_internal(m)) continue;  // its own .rodata/.bss: the iterators read none of it
    bpf_map* core = bpf_object__find_map_by_name(obj_, bpf_map__name(m));
    int err = core ? bpf_map__reuse_fd(m, bpf_map__fd(core)) : -ENOENT;
    if (err) {
      bpf_object__close(obj);
      ThrowErrno(env, std::string("cannot share map ") + bpf_map__name(m) + " with " + prog, err);
    }
  }
  int err = bpf_object__load(obj);
  if (err) {
    bpf_object__close(obj);
    ThrowErrno(env, std::string("the kernel refused ") + prog + " (" + SourceName(kind) + ")", err);
  }
  bpf_program* p = bpf_object__find_program_by_name(obj, prog);
  bpf_link* link;
  if (kind == SourceKind::SkStorageIter) {
    // The sk_storage map iterator needs to know which map to walk.
    union bpf_iter_link_info linfo = {};
    linfo.map.map_fd = bpf_map__fd(connState_);
    LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &linfo, .link_info_len = sizeof linfo);
    link = bpf_program__attach_iter(p, &opts);
  } else {
    // No link info: the namespace is the one current at bpf_iter_create().
    link = bpf_program__attach_iter(p, nullptr);
  }
  if (!link) {
    int saved = errno;
    bpf_object__close(obj);
    ThrowErrno(env, std::string("cannot attach ") + prog + " (" + SourceName(kind) + ")", saved);
  }
  iterObj_ = obj;
  iter_ = p;
  iterLink_ = link;
}

// Turns on the RTT_CB source: kmesh_sockops reads rtt_report_interval_ns (in
// .bss, writable after load) at every establishment.
void BpfProbe::EnableRttReports(Napi::Env env, uint64_t intervalNs) {
  GlobalVar v = FindGlobal(env, obj_, ".bss", "rtt_report_interval_ns");
  if (v.size != sizeof(uint64_t)) Throw(env, "rtt_report_interval_ns is not 64-bit");
  std::vector<uint8_t> image(bpf_map__value_size(v.map));
  uint32_t zero = 0;
  int fd = bpf_map__fd(v.map);
  if (bpf_map_lookup_elem(fd, &zero, image.data()) != 0) ThrowErrno(env, "cannot read .bss", errno);
  memcpy(image.data() + v.offset, &intervalNs, sizeof intervalNs);
  if (bpf_map_update_elem(fd, &zero, image.data(), BPF_ANY) != 0) ThrowErrno(env, "cannot set rtt_report_interval_ns", errno);
}

// useSource(kind, { procPath, netnsDirs, rttIntervalMs }): tries one
// periodic-report source the way the agent will use it, by loading,
// attaching and walking it for real (`bpftool feature probe` says "tracing
// NOT available" on kernels where iterators load fine, and a hardened build
// can refuse one iterator type and allow another). Throws an Error with the
// kernel's reason (errno property set) and leaves the probe as it was, so the
// caller can go on down its ladder; on success the source is the one
// iterate() and iterateAsync() walk. Once per probe.
Napi::Value BpfProbe::UseSource(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "useSource");
  if (source_ != SourceKind::None) Throw(env, std::string("BpfProbe.useSource(): already using ") + SourceName(source_));
  if (info.Length() < 1 || !info[0].IsString()) Throw(env, "useSource(kind, options): kind must be a string");
  std::string name = info[0].As<Napi::String>();
  SourceKind kind;
  if (name == "sk_storage_iter") kind = SourceKind::SkStorageIter;
  else if (name == "tcp_iter") kind = SourceKind::TcpIter;
  else if (name == "sock_diag") kind = SourceKind::SockDiag;
  else if (name == "rtt_cb") kind = SourceKind::RttCb;
  else Throw(env, "useSource(): kind must be \"sk_storage_iter\", \"tcp_iter\", \"sock_diag\" or \"rtt_cb\"");
  double rttIntervalMs = 5000;
  if (info.Length() >= 2 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (o.Has("procPath") && o.Get("procPath").IsString()) procRoot_ = o.Get("procPath").As<Napi::String>();
    if (o.Has("netnsDirs") && o.Get("netnsDirs").IsArray()) {
      Napi::Array a = o.Get("netnsDirs").As<Napi::Array>();
      netnsDirs_.clear();
      for (uint32_t i = 0; i < a.Length(); i++)
        if (a.Get(i).IsString()) netnsDirs_.push_back(a.Get(i).As<Napi::String>());
    }
    if (o.Has("rttIntervalMs") && o.Get("rttIntervalMs").IsNumber()) rttIntervalMs = o.Get("rttIntervalMs").As<Napi::Number>().DoubleValue();
  }
  if (walking_.load()) Throw(env, "BpfProbe.useSource(): a walk is in progress");

  if (kind == SourceKind::RttCb) {
    if (!(rttIntervalMs >= 1 && rttIntervalMs <= 1e9)) Throw(env, "useSource(): rttIntervalMs must be within 1..1e9");
    EnableRttReports(env, static_cast<uint64_t>(rttIntervalMs * 1e6));
    source_ = kind;
    return env.Undefined();
  }
  if (kind == SourceKind::TcpIter || kind == SourceKind::SockDiag) {
    // The per-namespace sources must be able to enter namespaces: setns()
    // into our own namespace is the cheapest real test (CAP_SYS_ADMIN).
    int err = 0;
    std::thread t([&err] {
      NetnsVisitor v;
      err = v.Error();
      if (err == 0) err = v.Visit(NetnsRef{"/proc/thread-self/ns/net", 0, 0, false}, [] {});
    });
    t.join();
    if (err) {
      Napi::Error e = Napi::Error::New(env, std::string("cannot enter network namespaces (setns: ") + ErrnoText(err) +
                                                "); the per-namespace sources need CAP_SYS_ADMIN");
      e.Set("errno", Napi::Number::New(env, err));
      throw e;
    }
  }
  if (kind == SourceKind::SkStorageIter || kind == SourceKind::TcpIter) LoadIterator(env, kind);
  if (kind == SourceKind::SockDiag) {
    std::lock_guard<std::mutex> lock(rbMutex_);
    trackOpens_ = true;
  }
  source_ = kind;
  // A first walk, kept: its records (none before the probe is attached) stay
  // in ready_ for the next drain, in order.
  Pieces all;
  WalkStats stats;
  int err = WalkOnThread(all, stats);
  if (err == 0 && kind != SourceKind::SkStorageIter && stats.namespaces == 0) err = ENOENT;
  if (err) {
    std::string why = stats.failures.empty() ? ErrnoText(err) : stats.failures.front().reason;
    if (iterLink_) bpf_link__destroy(iterLink_);
    iterLink_ = nullptr;
    if (iterObj_) bpf_object__close(iterObj_);
    iterObj_ = nullptr;
    iter_ = nullptr;
    source_ = SourceKind::None;
    {
      std::lock_guard<std::mutex> lock(rbMutex_);
      tracked_.clear();
      trackOpens_ = false;
    }
    Napi::Error e = Napi::Error::New(env, std::string("a trial walk of ") + SourceName(kind) + " failed: " + why);
    e.Set("errno", Napi::Number::New(env, err));
    throw e;
  }
  PushBackFront(std::move(all));
  lastWalk_ = stats;
  return env.Undefined();
}

Napi::Value BpfProbe::Source(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), SourceName(source_));
}

// listNetworkNamespaces(procPath, netnsDirs): what a per-namespace walk
// would visit (doctor, tests).
Napi::Value BpfProbe::ListNamespaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string proc = info.Length() >= 1 && info[0].IsString() ? std::string(info[0].As<Napi::String>()) : "/proc";
  std::vector<std::string> dirs;
  if (info.Length() >= 2 && info[1].IsArray()) {
    Napi::Array a = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++)
      if (a.Get(i).IsString()) dirs.push_back(a.Get(i).As<Napi::String>());
  } else {
    dirs.push_back("/run/netns");
  }
  std::vector<NetnsRef> list = ListNetns(proc, dirs);
  Napi::Array out = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("path", list[i].path);
    o.Set("inode", Napi::Number::New(env, static_cast<double>(list[i].ino)));
    o.Set("fromDir", Napi::Boolean::New(env, list[i].fromDir));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value BpfProbe::AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "attachCgroup");
  if (info.Length() < 1 || !info[0].IsString()) Throw(env, "attachCgroup(path): path must be a string");
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "cannot open cgroup directory " + path, errno);
  struct statfs sfs = {};
  if (fstatfs(fd, &sfs) != 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
    close(fd);
    char magic[32];
    snprintf(magic, sizeof magic, "0x%lx", static_cast<unsigned long>(sfs.f_type));
    Throw(env, path + " is not a cgroup v2 directory (filesystem magic " + magic +
                   "); sockops attaches to cgroup v2 only: pass the cgroup2 mount, e.g. "
                   "/sys/fs/cgroup/unified (see `mount -t cgroup2`)");
  }
  ClearLibbpfLog();
  // A bpf_link (BPF_LINK_CREATE): always multi-attach, so it coexists with
  // other programs at the root, and detached when the last fd closes — which
  // includes the process dying. Deliberately never pinned.
  bpf_link* link = bpf_program__attach_cgroup(sockops_, fd);
  int saved = errno;
  close(fd);  // the link holds its own reference to the cgroup
  if (!link) ThrowErrno(env, "cannot attach kmesh_sockops to cgroup " + path, saved);
  cgroupLinks_.push_back(link);
  return env.Undefined();
}

// Destroys the cgroup links only: maps, the ringbuf reader and the drain
// thread stay, so attachCgroup() can attach again (the churn benchmark
// toggles the probe under a running load this way). Sockets that got state
// while attached keep it until they close.
Napi::Value BpfProbe::DetachCgroups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "detachCgroups");
  size_t n = cgroupLinks_.size();
  for (bpf_link* l : cgroupLinks_) bpf_link__destroy(l);
  cgroupLinks_.clear();
  return Napi::Number::New(env, static_cast<double>(n));
}

int BpfProbe::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BpfProbe*>(ctx);
  auto* bytes = static_cast<const uint8_t*>(data);
  if (self->sink_) self->sink_->insert(self->sink_->end(), bytes, bytes + size);
  // sock_diag: remember each tracked connection from its OPEN to its close
  // (runs under rbMutex_, in ring order, so the join sees every close
  // consumed so far).
  if (self->trackOpens_ && size == sizeof(conn_record)) {
    const auto* rec = static_cast<const conn_record*>(data);
    if (rec->kind == RECORD_OPEN) {
      self->tracked_[rec->socket_cookie] = Tracked{*rec, self->walkNo_};
    } else if (rec->kind == RECORD_CLOSE || rec->kind == RECORD_FAIL) {
      self->tracked_.erase(rec->socket_cookie);
    }
  }
  return 0;
}

int BpfProbe::ConsumeToReady() {
  std::lock_guard<std::mutex> lock(rbMutex_);
  return ConsumeToReadyLocked();
}

int BpfProbe::ConsumeToReadyLocked() {
  if (!rb_) return -EBADF;
  {
    std::lock_guard<std::mutex> rl(readyMutex_);
    if (readyBytes_ >= kMaxReadyBytes) return 0;
  }
  std::vector<uint8_t> batch;
  sink_ = &batch;
  int n = ring_buffer__consume(rb_);
  sink_ = nullptr;
  if (!batch.empty()) {
    // Still under rbMutex_: batches enter ready_ in the order they left the ring.
    std::lock_guard<std::mutex> rl(readyMutex_);
    readyBytes_ += batch.size();
    ready_.push_back(std::move(batch));
  }
  return n;
}

std::vector<uint8_t> BpfProbe::TakeReady() {
  std::deque<std::vector<uint8_t>> taken;
  {
    std::lock_guard<std::mutex> rl(readyMutex_);
    taken.swap(ready_);
    readyBytes_ = 0;
  }
  if (taken.size() == 1) return std::move(taken.front());
  std::vector<uint8_t> out;
  size_t total = 0;
  for (const auto& b : taken) total += b.size();
  out.reserve(total);
  for (const auto& b : taken) out.insert(out.end(), b.begin(), b.end());
  return out;
}

void BpfProbe::TakeReadyPieces(Pieces& dst) {
  Pieces taken;
  {
    std::lock_guard<std::mutex> rl(readyMutex_);
    taken.swap(ready_);
    readyBytes_ = 0;
  }
  for (auto& b : taken) dst.push_back(std::move(b));
}

// Drain thread. It sleeps in epoll on the ring's fd until the kernel forces a
// wake-up (fill threshold passed, see submit() in tcp_probe.bpf.c) or the
// poll timeout expires. Records submitted with BPF_RB_NO_WAKEUP raise no epoll
// event, and ring_buffer__poll() only consumes rings that reported one, so
// every wake-up or timeout is followed by an explicit consume: that is the
// short drain timer. epoll_wait runs outside rbMutex_, so drainNow() never
// waits for a whole timeout.
//
// Hand-off: consumed batches go to ready_ and at most one JS call is
// scheduled at a time (notifyPending_); that call takes everything in ready_.
// Back-pressure: ready_ is bounded (kMaxReadyBytes); past it nothing more is
// consumed, so the ringbuf itself is the bounded buffer and overflow shows up
// in lost_records instead of in this process's memory.
void BpfProbe::DrainLoop(int pollTimeoutMs) {
  const int epfd = ring_buffer__epoll_fd(rb_);  // rb_ outlives this thread (Release joins first)
  while (!stopDrain_.load(std::memory_order_acquire)) {
    bool full;
    {
      std::lock_guard<std::mutex> rl(readyMutex_);
      full = readyBytes_ >= kMaxReadyBytes;
    }
    if (full) {
      // The ring's epoll fd is level-triggered: waiting on it would spin.
      std::this_thread::sleep_for(std::chrono::milliseconds(pollTimeoutMs));
    } else {
      struct epoll_event ev[1];
      (void)epoll_wait(epfd, ev, 1, pollTimeoutMs);
      if (ConsumeToReady() <= 0) continue;
    }
    bool empty;
    {
      std::lock_guard<std::mutex> rl(readyMutex_);
      empty = ready_.empty();
    }
    if (empty || notifyPending_.exchange(true)) continue;
    napi_status st = tsfn_.NonBlockingCall(this, [](Napi::Env env, Napi::Function cb, BpfProbe* self) {
      if (env == nullptr || cb == nullptr) return;  // environment finalizing: drop
      // Cleared before taking, so a batch pushed after the take schedules a new call.
      self->notifyPending_.store(false);
      // An iterateAsync() walk collects ready_ when it is delivered (ordering).
      if (self->walking_.load()) return;
      std::vector<uint8_t> d = self->TakeReady();
      if (d.empty()) return;  // drainNow()/iterate() took it first
      Napi::Buffer<uint8_t> buf = ToBuffer(env, std::move(d));
      try {
        cb.Call({buf});
      } catch (const Napi::Error& e) {
        // Same as an event listener throwing: surfaces as uncaughtException.
        napi_fatal_exception(env, e.Value());
      }
    });
    if (st != napi_ok) {
      notifyPending_.store(false);
      if (st == napi_closing) break;  // the environment is going away
    }
  }
}

Napi::Value BpfProbe::StartDrain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "startDrain");
  if (draining_) Throw(env, "BpfProbe.startDrain(): already draining");
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsNumber())
    Throw(env, "startDrain(onBatch, pollTimeoutMs): onBatch must be a function, pollTimeoutMs a number");
  int timeoutMs = info[1].As<Napi::Number>().Int32Value();
  if (timeoutMs < 1 || timeoutMs > 60000) Throw(env, "startDrain(): pollTimeoutMs must be within 1..60000");
  // The scheduled call uses `this`: keep the JS object alive until the
  // thread-safe function is finalized (after its last call).
  Ref();
  tsfn_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "kmesh_bpf_drain", 0, 1, this,
                                        [](Napi::Env, BpfProbe* self) { self->Unref(); });
  stopDrain_.store(false, std::memory_order_release);
  notifyPending_.store(false);
  drainThread_ = std::thread([this, timeoutMs] { DrainLoop(timeoutMs); });
  draining_ = true;
  return env.Undefined();
}

void BpfProbe::StopDrainThread() {
  if (!draining_) return;
  stopDrain_.store(true, std::memory_order_release);
  if (drainThread_.joinable()) drainThread_.join();  // wakes within one poll timeout
  tsfn_.Release();  // lets the event loop exit once a scheduled call has run
  draining_ = false;
}

Napi::Value BpfProbe::StopDrain(const Napi::CallbackInfo& info) {
  StopDrainThread();
  return info.Env().Undefined();
}

Napi::Value BpfProbe::DrainNow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "drainNow");
  if (walking_.load()) Throw(env, "BpfProbe.drainNow(): a walk is in progress (iterateAsync)");
  int n = ConsumeToReady();
  if (n < 0) ThrowErrno(env, "cannot read the events ringbuf", n);
  return ToBuffer(env, TakeReady());
}

// One walk of the current source. Iterator reports arrive through the
// events ringbuf (kmesh_conn_iter / kmesh_tcp_iter), so while this thread
// sits in the read() that walks a map or a namespace, a helper thread
// consumes the ring into ready_ (the drain thread, if running, may too:
// ready_ keeps ring order either way); only reports the ring had no room for
// come back through read(). sock_diag's reports are built here and appended
// to ready_ (JoinDiagRows).
//
// Returned, in this order: (1) whatever was consumed before the walk started,
// (2) the reports read() returned, (3) everything consumed from the ring
// since the walk started (reports and events). (2) goes before (3) because a
// close that follows a fallback report in time was reserved after the report
// was taken (see kmesh_conn_iter), hence consumed in (3).
//
// Streaming (iterateAsync with onRecords): (1) and (3) stay in ready_ and
// the JS thread delivers them while the walk runs; `all` returns (2) only,
// delivered after what was streamed, minus reports of sockets whose close
// was streamed already (what the iterator does when it sees the close).
//
// Split in three: PrepareWalk (JS thread: checks; throws), WalkInto (a
// thread of its own: the walk; returns 0 or an errno) and the two front
// ends, iterate() (synchronous) and iterateAsync() (result delivered to a
// callback; the agent's event loop keeps running meanwhile).
void BpfProbe::PrepareWalk(Napi::Env env, const char* what) {
  RequireState(env, true, what);
  if (walking_.load()) Throw(env, std::string("BpfProbe.") + what + "(): a walk is in progress");
}

int BpfProbe::WalkOnThread(Pieces& all, WalkStats& stats) {
  int err = 0;
  std::thread t([&] { err = WalkInto(all, stats); });
  t.join();
  return err;
}

int BpfProbe::WalkInto(Pieces& all, WalkStats& stats, const std::function<void()>& stream) {
  double t0 = NowMs();
  int n = ConsumeToReady();
  if (n < 0) return -n;
  const bool streaming = static_cast<bool>(stream);
  walkStreaming_ = streaming;
  Pieces out;
  if (!streaming) {
    TakeReadyPieces(out);
  } else {
    // (1) stays at the front of ready_; a delivery scheduled now takes it
    // before anything read() may return (and every delivery runs before the
    // walk's result: one queue).
    bool any;
    {
      std::lock_guard<std::mutex> rl(readyMutex_);
      any = !ready_.empty();
    }
    if (any && !streamPending_.exchange(true)) stream();
  }
  std::vector<uint8_t> fallback;
  Pieces after;
  int err = 0;
  const bool iterates = source_ == SourceKind::SkStorageIter || source_ == SourceKind::TcpIter;
  {
    // Stops and joins the helper on every way out of this scope (an exception
    // with a joinable std::thread alive would terminate the process).
    struct Helper {
      std::atomic<bool> walking{true};
      std::thread thread;
      void Stop() {
        walking.store(false, std::memory_order_release);
        if (thread.joinable()) thread.join();
      }
      ~Helper() { Stop(); }
    } helper;
    if (iterates) {
      helper.thread = std::thread([this, &helper, &stream, streaming] {
        // The programs submit their reports without wake-ups (each one would
        // be an irq_work interrupt), so poll; a walk takes milliseconds.
        while (helper.walking.load(std::memory_order_acquire)) {
          if (ConsumeToReady() <= 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
          if (!streaming) continue;
          bool chunk;
          {
            std::lock_guard<std::mutex> rl(readyMutex_);
            chunk = readyBytes_ >= kWalkChunkBytes;
          }
          if (chunk && !streamPending_.exchange(true)) stream();
        }
      });
    }
    if (source_ == SourceKind::SkStorageIter) {
      int fd = bpf_iter_create(bpf_link__fd(iterLink_));
      if (fd < 0) {
        err = errno;
      } else {
        err = ReadIterFd(fd, fallback, after);
        close(fd);
        if (err == 0) stats.namespaces = 1;  // every namespace at once
      }
    } else if (source_ == SourceKind::TcpIter || source_ == SourceKind::SockDiag) {
      err = WalkNamespaces(fallback, after, stats);
    }
    helper.Stop();
  }
  (void)ConsumeToReady();
  // Streaming: (3) stays in ready_, behind what was delivered already.
  if (!streaming) TakeReadyPieces(after);
  if (source_ != SourceKind::RttCb && source_ != SourceKind::None) {
    stats.reported = CountReports(fallback);
    for (const auto& p : after) stats.reported += CountReports(p);
  }
  // (1), (2), (3), moved, not copied.
  all.clear();
  for (auto& p : out) all.push_back(std::move(p));
  if (!fallback.empty()) all.push_back(std::move(fallback));
  for (auto& p : after) all.push_back(std::move(p));
  if (err) {
    // Records already taken from the ring would be lost with the error:
    // hand them back to the front of ready_ for the next drain.
    PushBackFront(std::move(all));
    all.clear();
  }
  // A walk of n tracked sockets passes n * sizeof(conn_record) bytes through
  // several buffers (14 MB for 100k), in this and the consuming thread's
  // malloc arenas; trimming returns what the fixed mmap threshold (Init) does
  // not already give back.
  malloc_trim(0);
  walkStreaming_ = false;
  stats.durationMs = NowMs() - t0;
  return err;
}

// Reads one iterator instance to its end. -EAGAIN: bpf_seq_read() stops
// after MAX_ITER_OBJECTS (1M) elements when nothing was written to the
// seq_file; the next read() resumes the walk.
int BpfProbe::ReadIterFd(int fd, std::vector<uint8_t>& fallback, Pieces& after) {
  std::vector<uint8_t> chunk(64 * 1024);
  for (int again = 0; again < 4096;) {
    ssize_t r = read(fd, chunk.data(), chunk.size());
    if (r == 0) return 0;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return errno;
      again++;
    } else {
      fallback.insert(fallback.end(), chunk.data(), chunk.data() + r);
    }
    // read() returned early: the ring was full (fallback reports filled
    // the seq buffer) or 1M elements were visited. Empty the ring before the
    // walk resumes, so the next reports go to the ring again.
    (void)ConsumeToReady();
    if (!walkStreaming_) TakeReadyPieces(after);
  }
  return EAGAIN;
}

void BpfProbe::NoteFailure(WalkStats& stats, const NetnsRef& ns, const std::string& what, int err) {
  bool first = failedNs_.insert({ns.dev, ns.ino}).second;
  stats.failures.push_back(WalkStats::Failure{ns.path, what + ": " + ErrnoText(err), first});
}

// The per-namespace sources: every namespace ListNetns finds, entered on
// this (walk) thread one at a time. Nothing is held across namespaces or
// walks: the iterator instance / diag socket created inside is closed before
// the next, so a deleted namespace is released by the end of the walk.
int BpfProbe::WalkNamespaces(std::vector<uint8_t>& fallback, Pieces& after, WalkStats& stats) {
  const bool diag = source_ == SourceKind::SockDiag;
  std::vector<NetnsRef> all = ListNetns(procRoot_, netnsDirs_);
  NetnsVisitor visitor;
  if (visitor.Error()) return visitor.Error();
  uint64_t walkNo = 0;
  if (diag) {
    std::lock_guard<std::mutex> lock(rbMutex_);
    walkNo = ++walkNo_;
  }
  std::vector<std::pair<uint64_t, std::vector<DiagRow>>> rows;
  for (const NetnsRef& ns : all) {
    int fd = -1;
    int innerErr = 0;
    uint64_t nsCookie = 0;
    int err = visitor.Visit(ns, [&] {
      if (diag) {
        fd = OpenDiagSocket(&nsCookie);
        if (fd < 0) innerErr = -fd;
      } else {
        fd = bpf_iter_create(bpf_link__fd(iterLink_));
        if (fd < 0) innerErr = errno;
      }
    });
    if (err) {
      if (fd >= 0) close(fd);
      if (visitor.Broken()) {
        NoteFailure(stats, ns, "return to the agent's namespace", err);
        return err;
      }
      // A process that exited since the listing: its namespace is not lost
      // if anything else still lives in it (listed under another path).
      if (err == ENOENT || err == ESRCH) continue;
      NoteFailure(stats, ns, "setns", err);
      continue;
    }
    if (innerErr) {
      NoteFailure(stats, ns, diag ? "sock_diag socket" : "bpf_iter_create", innerErr);
      continue;
    }
    int rerr;
    if (diag) {
      std::vector<DiagRow> got;
      rerr = DumpTcp(fd, got);
      if (rerr == 0) rows.emplace_back(nsCookie, std::move(got));
    } else {
      rerr = ReadIterFd(fd, fallback, after);
    }
    close(fd);
    if (rerr) {
      NoteFailure(stats, ns, diag ? "sock_diag dump" : "tcp iterator read", rerr);
      continue;
    }
    stats.namespaces++;
  }
  if (diag) JoinDiagRows(rows, walkNo);
  return 0;
}

uint64_t BpfProbe::JoinDiagRows(const std::vector<std::pair<uint64_t, std::vector<DiagRow>>>& perNs, uint64_t walkNo) {
  std::vector<uint8_t> reports;
  std::set<uint64_t> walked;
  bool canPrune = true;
  const uint64_t now = MonotonicNs();
  std::lock_guard<std::mutex> lock(rbMutex_);
  // Every close consumed from here on follows the reports; every close
  // consumed so far has removed its connection from tracked_.
  (void)ConsumeToReadyLocked();
  for (const auto& ns : perNs) {
    if (ns.first == 0) canPrune = false;  // no SO_NETNS_COOKIE: cannot tell whose rows these were
    walked.insert(ns.first);
    for (const DiagRow& row : ns.second) {
      auto it = tracked_.find(row.cookie);
      if (it == tracked_.end()) continue;  // not a connection we saw open: ignored, never invented
      it->second.seenWalk = walkNo;
      conn_record rec = it->second.open;
      rec.kind = RECORD_REPORT;
      rec.event_ns = now;
      rec.sk_err = 0;
      ApplyDiagRow(row, &rec);
      const auto* b = reinterpret_cast<const uint8_t*>(&rec);
      reports.insert(reports.end(), b, b + sizeof rec);
    }
  }
  // A tracked connection of a namespace this walk dumped, missing from two
  // walks' dumps in a row, is gone and its close was lost (ringbuf full):
  // forget it, as the receiver's TTL does. Two, not one: the OPEN of an
  // accepted socket is emitted at PASSIVE_ESTABLISHED_CB, which runs while
  // the socket is still in SYN_RECV, a state the dump leaves out.
  if (canPrune) {
    for (auto it = tracked_.begin(); it != tracked_.end();) {
      if (it->second.seenWalk + 1 < walkNo && walked.count(it->second.open.netns_cookie)) it = tracked_.erase(it);
      else ++it;
    }
  }
  uint64_t n = reports.size() / sizeof(conn_record);
  if (!reports.empty()) {
    std::lock_guard<std::mutex> rl(readyMutex_);
    readyBytes_ += reports.size();
    ready_.push_back(std::move(reports));
  }
  return n;
}

void BpfProbe::PushBackFront(Pieces&& keep) {
  std::lock_guard<std::mutex> rl(readyMutex_);
  for (auto it = keep.rbegin(); it != keep.rend(); ++it) {
    if (it->empty()) continue;
    readyBytes_ += it->size();
    ready_.push_front(std::move(*it));
  }
}

uint64_t BpfProbe::DeliverChunks(Napi::Env env, Napi::Function onRecords, Pieces& pieces,
                                 const std::unordered_set<uint64_t>* drop, std::unordered_set<uint64_t>* closed) {
  if (chunkBuf_.IsEmpty()) chunkBuf_ = Napi::Persistent(Napi::ArrayBuffer::New(env, kWalkChunkBytes));
  Napi::ArrayBuffer ab = chunkBuf_.Value();
  auto* dst = static_cast<uint8_t*>(ab.Data());
  constexpr size_t kRec = sizeof(conn_record);
  constexpr size_t kChunk = kWalkChunkBytes / kRec * kRec;
  size_t fill = 0;
  uint64_t reports = 0;
  auto flush = [&] {
    if (fill == 0) return;
    onRecords.Call({Napi::Uint8Array::New(env, fill, ab, 0)});
    fill = 0;
  };
  while (!pieces.empty()) {
    const std::vector<uint8_t>& p = pieces.front();
    // Whole records only (every producer appends whole records; a torn tail
    // could not be decoded anyway).
    for (size_t off = 0; off + kRec <= p.size(); off += kRec) {
      conn_record rec;
      memcpy(&rec, p.data() + off, kRec);
      if (rec.kind == RECORD_REPORT) {
        if (drop != nullptr && drop->count(rec.socket_cookie)) continue;
        reports++;
      } else if (closed != nullptr && (rec.kind == RECORD_CLOSE || rec.kind == RECORD_FAIL)) {
        closed->insert(rec.socket_cookie);
      }
      memcpy(dst + fill, &rec, kRec);
      fill += kRec;
      if (fill == kChunk) flush();
    }
    pieces.pop_front();  // freed as soon as copied: native memory falls while JS works
  }
  flush();
  return reports;
}

namespace {

Napi::Object WalkStatsObject(Napi::Env env, const std::string& source, double durationMs, uint32_t namespaces, uint64_t reported,
                             const std::vector<std::tuple<std::string, std::string, bool>>& failures) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("source", source);
  o.Set("durationMs", Napi::Number::New(env, durationMs));
  o.Set("namespaces", Napi::Number::New(env, namespaces));
  o.Set("reported", Napi::Number::New(env, static_cast<double>(reported)));
  Napi::Array f = Napi::Array::New(env, failures.size());
  for (size_t i = 0; i < failures.size(); i++) {
    Napi::Object x = Napi::Object::New(env);
    x.Set("path", std::get<0>(failures[i]));
    x.Set("reason", std::get<1>(failures[i]));
    x.Set("first", Napi::Boolean::New(env, std::get<2>(failures[i])));
    f.Set(static_cast<uint32_t>(i), x);
  }
  o.Set("namespaceFailures", f);
  return o;
}

}  // namespace

Napi::Value BpfProbe::LastWalk(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::tuple<std::string, std::string, bool>> f;
  for (const auto& x : lastWalk_.failures) f.emplace_back(x.path, x.reason, x.first);
  return WalkStatsObject(env, SourceName(source_), lastWalk_.durationMs, lastWalk_.namespaces, lastWalk_.reported, f);
}

Napi::Value BpfProbe::Iterate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PrepareWalk(env, "iterate");
  Pieces all;
  WalkStats stats;
  int err = WalkOnThread(all, stats);
  lastWalk_ = stats;
  if (err) ThrowErrno(env, std::string("walking the ") + SourceName(source_) + " source failed", err);
  return ToBuffer(env, Concat(std::move(all)));
}

// iterateAsync(callback(err, records, stats)): the same walk on a thread of
// its own. Ordering with the drain callback: while walking_ is set, drain
// calls leave ready_ alone (the records stay in order there), and the result
// callback, on the JS thread, appends whatever ready_ holds by then and only
// then clears walking_. So no record consumed after the walk started reaches
// JS before the walk's reports (see the order above).
Napi::Value BpfProbe::IterateAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) Throw(env, "iterateAsync(callback): callback must be a function");
  const bool chunked = info.Length() >= 2 && !info[1].IsUndefined();
  if (chunked && !info[1].IsFunction()) Throw(env, "iterateAsync(callback, onRecords): onRecords must be a function");
  PrepareWalk(env, "iterateAsync");
  if (walkThread_.joinable()) walkThread_.join();  // the previous walk's thread has delivered already
  // Context of the thread-safe function: onRecords, kept alive until the walk is delivered.
  auto* onRecords = chunked ? new Napi::FunctionReference(Napi::Persistent(info[1].As<Napi::Function>())) : nullptr;
  auto tsfn = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "kmesh_bpf_walk", 0, 1, onRecords,
                                            [](Napi::Env, Napi::FunctionReference* ref) { delete ref; });
  walking_.store(true);
  Ref();  // the probe outlives the walk even if JS drops it meanwhile
  try {
    walkThread_ = std::thread([this, tsfn, onRecords]() mutable {
      struct Result {
        int err;
        Pieces records;
        WalkStats stats;
      };
      auto* result = new Result{0, {}, {}};
      // With onRecords the walk streams: whenever a chunk's worth waits in
      // ready_, the JS thread delivers what is there, so a walk over 100k
      // sockets never holds its 14 MB in this process at once.
      std::function<void()> stream;
      if (onRecords != nullptr) {
        stream = [this, &tsfn, onRecords] {
          napi_status st = tsfn.NonBlockingCall(this, [onRecords](Napi::Env env, Napi::Function, BpfProbe* self) {
            self->streamPending_.store(false);  // before the take: a later chunk schedules another call
            if (env == nullptr) return;
            Pieces p;
            self->TakeReadyPieces(p);
            try {
              self->streamedReports_ += self->DeliverChunks(env, onRecords->Value(), p, nullptr, &self->streamedCloses_);
            } catch (const Napi::Error& e) {
              napi_fatal_exception(env, e.Value());
            }
          });
          if (st != napi_ok) streamPending_.store(false);
        };
      }
      result->err = WalkInto(result->records, result->stats, stream);
      napi_status st = tsfn.BlockingCall(result, [this, onRecords](Napi::Env env, Napi::Function cb, Result* r) {
        std::unique_ptr<Result> owned(r);
        if (env == nullptr || cb == nullptr) return;  // environment finalizing
        walking_.store(false);
        Unref();
        try {
          if (onRecords != nullptr) {
            if (!owned->err) {
              // Streamed: what is left is (2), the reports read() returned,
              // then the rest of ready_. A report of a socket whose close was
              // streamed already is dropped (the close has the final totals),
              // as the iterator drops it when it sees the close first.
              Napi::Function fn = onRecords->Value();
              uint64_t fallback = DeliverChunks(env, fn, owned->records, &streamedCloses_, nullptr);
              Pieces later;
              TakeReadyPieces(later);
              uint64_t rest = DeliverChunks(env, fn, later);
              if (source_ != SourceKind::RttCb && source_ != SourceKind::None) owned->stats.reported = streamedReports_ + fallback + rest;
            }
            streamedCloses_.clear();
            streamedReports_ = 0;
            // The pieces came from the walk's helper thread's malloc arena:
            // give the freed space back now, not at the next walk's trim.
            malloc_trim(0);
          } else {
            // Records consumed after the walk ended, still held back: theirs is the next place in order.
            TakeReadyPieces(owned->records);
          }
          lastWalk_ = owned->stats;
          std::vector<std::tuple<std::string, std::string, bool>> f;
          for (const auto& x : owned->stats.failures) f.emplace_back(x.path, x.reason, x.first);
          Napi::Object stats = WalkStatsObject(env, SourceName(source_), owned->stats.durationMs, owned->stats.namespaces,
                                               owned->stats.reported, f);
          if (owned->err) {
            int e = owned->err;
            Napi::Error error = Napi::Error::New(env, std::string("walking the ") + SourceName(source_) + " source failed: " + ErrnoText(e));
            error.Set("errno", Napi::Number::New(env, e));
            cb.Call({error.Value(), env.Undefined(), stats});
          } else if (onRecords != nullptr) {
            cb.Call({env.Null(), env.Undefined(), stats});
          } else {
            cb.Call({env.Null(), ToBuffer(env, Concat(std::move(owned->records))), stats});
          }
        } catch (const Napi::Error& e) {
          napi_fatal_exception(env, e.Value());
        }
      });
      if (st != napi_ok) {
        delete result;
        walking_.store(false);
      }
      tsfn.Release();
    });
  } catch (...) {
    // No thread (out of resources): undo, so the next tick can try again.
    walking_.store(false);
    Unref();
    tsfn.Release();
    throw;
  }
  return env.Undefined();
}

uint64_t BpfProbe::SumPerCpu(Napi::Env env, bpf_map* map, const char* what) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) ThrowErrno(env, "cannot count possible CPUs", ncpu);
  std::vector<uint64_t> values(static_cast<size_t>(ncpu));
  uint32_t key = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(map), &key, values.data()) != 0)
    ThrowErrno(env, std::string("cannot read ") + what, errno);
  uint64_t sum = 0;
  for (uint64_t v : values) sum += v;
  return sum;
}

Napi::Value BpfProbe::LostRecords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "lostRecords");
  return Napi::BigInt::New(env, SumPerCpu(env, lost_, "lost_records"));
}

Napi::Value BpfProbe::IterFallbackRecords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "iterFallbackRecords");
  return Napi::BigInt::New(env, SumPerCpu(env, iterFallback_, "iter_fallback_records"));
}

Napi::Value BpfProbe::ProgramStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "programStats");
  bpf_prog_info pi = {};
  uint32_t len = sizeof pi;
  if (bpf_obj_get_info_by_fd(bpf_program__fd(sockops_), &pi, &len) != 0)
    ThrowErrno(env, "cannot read kmesh_sockops info", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("runTimeNs", Napi::BigInt::New(env, static_cast<uint64_t>(pi.run_time_ns)));
  o.Set("runCount", Napi::BigInt::New(env, static_cast<uint64_t>(pi.run_cnt)));
  o.Set("statsEnabled", Napi::Boolean::New(env, statsFd_ >= 0));
  return o;
}

Napi::Value BpfProbe::ProgramIds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireState(env, true, "programIds");
  Napi::Object o = Napi::Object::New(env);
  o.Set("sockops", Napi::Number::New(env, ProgId(sockops_)));
  o.Set("iter", Napi::Number::New(env, iter_ ? ProgId(iter_) : 0));
  return o;
}

Napi::Value BpfProbe::Close(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

// Idempotent; also the destructor. Order: stop the reader, then links (detach
// from the cgroup), then ring and object (maps and programs).
void BpfProbe::Release() {
  StopDrainThread();
  // A walk in flight uses the link and the ring: let it finish (its result
  // is still delivered; the walk is bounded by the number of sockets).
  if (walkThread_.joinable()) walkThread_.join();
  for (bpf_link* l : cgroupLinks_) bpf_link__destroy(l);
  cgroupLinks_.clear();
  if (iterLink_) bpf_link__destroy(iterLink_);
  iterLink_ = nullptr;
  {
    std::lock_guard<std::mutex> lock(rbMutex_);
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
    tracked_.clear();
    trackOpens_ = false;
    std::lock_guard<std::mutex> rl(readyMutex_);
    ready_.clear();  // a still scheduled drain call finds nothing
    readyBytes_ = 0;
  }
  if (iterObj_) bpf_object__close(iterObj_);
  iterObj_ = nullptr;
  if (obj_) bpf_object__close(obj_);
  obj_ = nullptr;
  if (statsFd_ >= 0) close(statsFd_);
  statsFd_ = -1;
  sockops_ = iter_ = nullptr;
  events_ = connState_ = lost_ = iterFallback_ = nullptr;
  source_ = SourceKind::None;
  loaded_ = false;
  closed_ = true;
}
