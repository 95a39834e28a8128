// SPDX-License-Identifier: Apache-2.0
#include "netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <set>
#include <utility>

namespace {

// include/uapi/linux/magic.h
constexpr unsigned long kNsfsMagic = 0x6e736673;

bool AllDigits(const char* s) {
  if (*s == '\0') return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

}  // namespace

std::vector<NetnsRef> ListNetns(const std::string& procRoot, const std::vector<std::string>& dirs) {
  std::vector<NetnsRef> out;
  std::set<std::pair<dev_t, ino_t>> seen;
  auto add = [&](const std::string& path, bool fromDir) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return;
    if (fromDir) {
      // A name under /run/netns whose bind mount is gone is a plain file of
      // the tmpfs: not a namespace.
      struct statfs sfs;
      if (statfs(path.c_str(), &sfs) != 0 || static_cast<unsigned long>(sfs.f_type) != kNsfsMagic) return;
    }
    if (!seen.insert({st.st_dev, st.st_ino}).second) return;
    out.push_back(NetnsRef{path, st.st_dev, st.st_ino, fromDir});
  };
  add("/proc/thread-self/ns/net", false);
  if (DIR* d = opendir(procRoot.c_str())) {
    while (dirent* e = readdir(d)) {
      if (!AllDigits(e->d_name)) continue;
      add(procRoot + "/" + e->d_name + "/ns/net", false);
    }
    closedir(d);
  }
  for (const std::string& dir : dirs) {
    DIR* d = opendir(dir.c_str());
    if (!d) continue;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      add(dir + "/" + e->d_name, true);
    }
    closedir(d);
  }
  return out;
}

NetnsVisitor::NetnsVisitor() {
  home_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home_ < 0) homeErr_ = errno;
}

NetnsVisitor::~NetnsVisitor() {
  if (home_ >= 0) close(home_);
}

int NetnsVisitor::Visit(const NetnsRef& ns, const std::function<void()>& fn) {
  if (broken_) return ENOTRECOVERABLE;
  if (home_ < 0) return homeErr_;
  int fd = open(ns.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  // The namespace may have been replaced under the same path since discovery
  // (a process exited and its pid was reused): still one real namespace, and
  // dedup happened by inode, so a repeat is at worst one extra visit.
  if (setns(fd, CLONE_NEWNET) != 0) {
    int err = errno;
    close(fd);
    return err;
  }
  close(fd);
  fn();
  if (setns(home_, CLONE_NEWNET) != 0) {
    broken_ = true;
    return errno;
  }
  return 0;
}
