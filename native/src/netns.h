// SPDX-License-Identifier: Apache-2.0
// Network namespaces for the per-namespace periodic-report sources (iter/tcp
// and sock_diag): discovery and entering, shared by both.
//
// Discovery: <proc>/<pid>/ns/net of every process plus every entry of the
// named directories (`ip netns` and CNI plugins bind-mount namespaces under
// /run/netns), deduplicated by (st_dev, st_ino), the identity of an nsfs
// inode. About 1 ms for 100 namespaces. Nothing is kept open between walks:
// an open namespace fd (or a socket created inside) keeps a deleted
// namespace alive, so every walk opens, uses and closes.
//
// Entering: setns(CLONE_NEWNET) changes the calling thread only, so walks
// enter namespaces on a thread of their own (never the JS thread) and return
// to the thread's own namespace after each one. Needs CAP_SYS_ADMIN.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

struct NetnsRef {
  std::string path;  // how this walk reached it (the first path seen)
  dev_t dev = 0;
  ino_t ino = 0;
  bool fromDir = false;  // found in a netns directory rather than under /proc
};

// Distinct network namespaces: this thread's own first, then <procRoot>/*
// (processes), then each of `dirs`. Unreadable entries (a process that
// exited meanwhile, a stale netns file) are skipped.
std::vector<NetnsRef> ListNetns(const std::string& procRoot, const std::vector<std::string>& dirs);

// The calling thread's home namespace, held for returning after each visit.
class NetnsVisitor {
 public:
  NetnsVisitor();
  ~NetnsVisitor();
  NetnsVisitor(const NetnsVisitor&) = delete;
  NetnsVisitor& operator=(const NetnsVisitor&) = delete;

  // 0, or the errno of opening this thread's own namespace.
  int Error() const { return homeErr_; }
  // Runs fn() inside `ns`, then returns home. Returns 0 when fn ran (fn's
  // own result goes through its captures), or the errno of open/setns; a
  // failed return home is fatal for the thread (Broken() becomes true, and
  // no further visit is made: the thread must not create anything more).
  int Visit(const NetnsRef& ns, const std::function<void()>& fn);
  bool Broken() const { return broken_; }

 private:
  int home_ = -1;
  int homeErr_ = 0;
  bool broken_ = false;
};
