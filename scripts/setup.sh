#!/usr/bin/env bash
# Brings a fresh Debian 12 machine (root) to the point where kmesh-otel
# builds, runs and tests: system packages, bpffs, npm dependencies and the
# build (BPF object, native addon, TypeScript). Idempotent: a second run only
# checks. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (installs packages and mounts bpffs): sudo bash scripts/setup.sh" >&2
    exit 1
  fi
}

# Debian packages: the BPF toolchain (clang/llvm, libbpf, bpftool, libelf,
# zlib), iproute2 for test namespaces, a real Prometheus server and promtool
# for the end-to-end checks, docker-compose (1.29) to validate the compose file.
PKGS=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make g++ python3 iproute2 prometheus docker-compose)
# The kernel matrix (scripts/kernel-matrix.mjs): qemu for throw-away guests,
# a static busybox for their initramfs. Guest kernels are fetched by the
# matrix itself (apt-get download, never installed).
PKGS+=(qemu-system-x86 busybox-static)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  need_root
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's prometheus package starts a server on :9090 via its service unit on
# systems with an init; the tests start their own on other ports, so leave it.

# bpffs: libbpf and bpftool expect it; the agent pins nothing, but tests check
# that nothing is left there.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  need_root
  mount -t bpf bpf /sys/fs/bpf
fi

# npm ci also runs the package's `prepare` script, which is `npm run build`.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm run build
fi
