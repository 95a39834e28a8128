# syntax=docker/dockerfile:1
#
# kmesh-otel node agent image. Two stages: `build` compiles the BPF object
# (clang -target bpf), the N-API addon over Debian's libbpf and the
# TypeScript; the runtime stage carries only what `node dist/src/main.js`
# loads, on the same Debian release so the addon finds the libbpf it was
# linked against.
#
#   docker build -t kmesh-otel:local .
#
# The BPF build needs the kernel's BTF to generate bpf/vmlinux.h. bpf/Makefile
# generates the header from $VMLINUX_BTF (default /sys/kernel/btf/vmlinux)
# only when bpf/vmlinux.h does not exist, so any one of these works:
#   1. the builder sees the build host's /sys/kernel/btf/vmlinux (the classic
#      builder and BuildKit both mount sysfs into RUN steps; a remote or
#      rootless builder may not);
#   2. `make -C bpf vmlinux.h` on a machine with BTF, before `docker build`:
#      the header is part of the build context (.dockerignore keeps it);
#   3. a raw BTF blob in the build context, e.g. one copied from
#      /sys/kernel/btf/vmlinux of another machine:
#        docker build --build-arg VMLINUX_BTF=/src/vmlinux.btf .
# The kernel the header came from does not matter at run time: the object is
# CO-RE and libbpf relocates it against the running kernel's BTF.

# Node.js 24 LTS (Node 20 is end of life; OpenTelemetry JS 3.x needs
# >= 22.15), Debian 12 like the build machine. Both stages are pinned by the
# digest of the multi-arch manifest list, so a rebuild gets the same
# runtime; to move to a newer Node 24 patch, take the current digests from
# `docker buildx imagetools inspect node:24-bookworm` (and `-slim`) and
# replace both lines together.
ARG NODE_BUILD_IMAGE=node:24-bookworm@sha256:3a09aa6354567619221ef6c45a5051b671f953f0a1924d1f819ffb236e520e6b
ARG NODE_RUNTIME_IMAGE=node:24-bookworm-slim@sha256:e8e2e91b1378f83c5b2dd15f0247f34110e2fe895f6ca7719dbb780f929368eb

# ---------------------------------------------------------------------------
FROM ${NODE_BUILD_IMAGE} AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make g++ python3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, without scripts: the package's `prepare` (= build) needs
# the sources, which are copied below, and this layer stays cached until the
# lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# Everything else the build reads (.dockerignore keeps out tests, benchmarks,
# deploy/ and host build outputs). scripts/build-native.mjs points node-gyp at
# the headers of the image's own Node (/usr/local/include/node), so nothing
# is downloaded.
COPY . .

# See the header comment: where vmlinux.h comes from.
# (A build argument is in the environment of RUN steps, and the Makefile's
# `VMLINUX_BTF ?=` takes it from there.)
ARG VMLINUX_BTF=/sys/kernel/btf/vmlinux
RUN if [ ! -s bpf/vmlinux.h ] && [ ! -r "$VMLINUX_BTF" ]; then \
      echo "kmesh-otel build: no bpf/vmlinux.h in the build context and no kernel BTF at $VMLINUX_BTF." >&2; \
      echo "  Run 'make -C bpf vmlinux.h' on a machine with /sys/kernel/btf/vmlinux before 'docker build'," >&2; \
      echo "  or pass --build-arg VMLINUX_BTF=/src/<BTF file in the build context>." >&2; \
      exit 1; \
    fi \
 && npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---------------------------------------------------------------------------
FROM ${NODE_RUNTIME_IMAGE}

# Shared libraries of the addon (-lbpf -lelf -lz), from the same Debian
# release as the build stage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/kmesh-otel

# What the agent loads at run time, in the repository's layout: package.json
# (the package root, found from dist/src/paths.ts), dist/ (tsc output),
# production node_modules, the BPF object and bpf/include/ (the receiver finds
# the package root by bpf/include/record.h), and the addon with its loader.
COPY --from=build /src/package.json /src/otel-config.yaml ./
COPY --from=build /src/node_modules/ ./node_modules/
COPY --from=build /src/dist/ ./dist/
COPY --from=build /src/bpf/tcp_probe.bpf.o ./bpf/
COPY --from=build /src/bpf/include/ ./bpf/include/
COPY --from=build /src/native/index.js /src/native/index.d.ts ./native/
COPY --from=build /src/native/build/Release/kmesh_bpf.node ./native/build/Release/

# The default config of the image: the embedded one. Mount your own over it
# (docker-compose.yml and the Kubernetes ConfigMap do).
COPY --from=build /src/otel-config.yaml /etc/kmesh-otel/config.yaml

ENV NODE_ENV=production

# Runs as root on purpose: loading the sockops program and the sk_storage
# iterator needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN held in the initial
# user namespace (the kernel checks capable(), not ns_capable()). Container
# runtimes put added capabilities into the effective set of uid 0 only; a
# non-root user would need ambient or file capabilities, which Kubernetes
# does not set. Grant exactly those capabilities (docker-compose.yml,
# deploy/kubernetes/daemonset.yaml) rather than running --privileged.
USER root

# 15020: Prometheus /metrics; 13133: health_check /healthz.
EXPOSE 15020 13133

ENTRYPOINT ["node", "--max-semi-space-size=2", "/opt/kmesh-otel/dist/src/main.js"]
CMD ["--config", "/etc/kmesh-otel/config.yaml"]
