// The guest's initramfs: a static busybox, the modules the guest needs
// (kernels.mjs: moduleClosure) and an /init that turns the host's root,
// shared read-only over virtio-9p, into the guest's root:
//
//   /            host root, 9p read-only (cache=loose: nothing changes it during a run)
//   /tmp /run /var/tmp /var/log /var/cache /root    tmpfs (the guest's own writes)
//   /tmp/kmx     the run folder, 9p read-write: checkout copy, results, guest.sh
//   /proc /sys /dev /dev/pts /dev/shm, bpffs at /sys/fs/bpf, tracefs, debugfs,
//   cgroup2 at /sys/fs/cgroup/unified (where the tests attach, as on the host)
//
// then switch_root and runs /tmp/kmx/guest.sh as pid 1, which writes the
// command's exit code into the share and powers the guest off. Written as a
// plain newc cpio (no cpio tool needed), uncompressed (the kernel reads it
// as is; compressing 3 MB would cost more under TCG than it saves).
import { readFileSync } from 'node:fs';

/** Mount tag of the host root share and of the run folder share (qemu.mjs). */
export const ROOT_TAG = 'hostroot';
export const SHARE_TAG = 'kmx';
/** Where the run folder is mounted in the guest. */
export const GUEST_SHARE = '/tmp/kmx';

const NINEP = 'trans=virtio,version=9p2000.L,msize=262144';

/** Directories the guest overlays with tmpfs (the host's are hidden there). */
export const GUEST_TMPFS = ['tmp', 'run', 'var/tmp', 'var/log', 'var/cache', 'root'];

/**
 * The host paths among `paths` that a guest would not see: those under a
 * directory it overlays with tmpfs (a checkout in /tmp, as CI may clone
 * it). The init binds them back from a view of the host root taken before
 * the overlays.
 */
export function hiddenInGuest(paths) {
  return paths.filter((p) => GUEST_TMPFS.some((d) => p === `/${d}` || p.startsWith(`/${d}/`)));
}

/**
 * The initramfs' /init (busybox ash). \`keep\`: absolute host paths to bind
 * back over the tmpfs overlays (see hiddenInGuest), read-only, from a bind
 * of the host root taken before the overlays.
 */
export function initScript(moduleNames, keep = []) {
  return `#!/bin/busybox sh
# kmesh-otel kernel matrix guest init (scripts/vm/initramfs.mjs)
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
fail() { echo "kmx-init: $*"; echo o > /proc/sysrq-trigger; sleep 60; }
for m in ${moduleNames.join(' ')}; do
  insmod /modules/$m.ko || echo "kmx-init: insmod $m failed"
done
mkdir -p /newroot
mount -t 9p -o ${NINEP},ro,cache=loose ${ROOT_TAG} /newroot || fail "cannot mount the host root over 9p"
${
  // A virtio-9p tag mounts once ("no channels available"): a plain bind of
  // the root made before the overlays keeps the host's /tmp etc. in view.
  keep.length === 0
    ? ''
    : `mkdir -p /hostroot
mount --bind /newroot /hostroot || fail "cannot bind the host root"
`
}for d in ${GUEST_TMPFS.join(' ')}; do
  mount -t tmpfs -o mode=0755 tmpfs /newroot/$d || fail "tmpfs on /$d"
done
chmod 1777 /newroot/tmp /newroot/var/tmp
${
  keep.length === 0
    ? ''
    : `for k in ${keep.map((k) => `'${k}'`).join(' ')}; do
  mkdir -p "/newroot$k" && mount --bind "/hostroot$k" "/newroot$k" || fail "cannot bind $k"
done
`
}mkdir -p /newroot${GUEST_SHARE}
mount -t 9p -o ${NINEP},cache=loose ${SHARE_TAG} /newroot${GUEST_SHARE} || fail "cannot mount the run folder"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t bpf bpf /newroot/sys/fs/bpf
mount -t tracefs tracefs /newroot/sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /newroot/sys/kernel/debug 2>/dev/null
mount -t tmpfs -o mode=0755 cgroup /newroot/sys/fs/cgroup
mkdir -p /newroot/sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup/unified || fail "cgroup2"
ip link set lo up
hostname kmx-guest
exec switch_root /newroot /bin/sh ${GUEST_SHARE}/guest.sh
`;
}

/** One newc cpio entry. */
function entry(name, mode, data = Buffer.alloc(0), rdev = [0, 0]) {
  const fields = [1, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], Buffer.byteLength(name) + 1, 0];
  const head = '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join('');
  const pad = (n) => Buffer.alloc((4 - (n % 4)) % 4);
  const nameBuf = Buffer.from(`${name}\0`);
  return Buffer.concat([Buffer.from(head), nameBuf, pad(head.length + nameBuf.length), data, pad(data.length)]);
}

/** Whether an ELF has no PT_INTERP (static: runs without a libc in the initramfs). */
function isStaticElf(b) {
  if (b.readUInt32BE(0) !== 0x7f454c46) return false;
  const phoff = Number(b.readBigUInt64LE(0x20));
  for (let i = 0; i < b.readUInt16LE(0x38); i++) if (b.readUInt32LE(phoff + i * b.readUInt16LE(0x36)) === 3) return false;
  return true;
}

/** The initramfs image: busybox, /init, /modules/<name>.ko (dependencies first); \`keep\` as for initScript. */
export function buildInitramfs(modules, busybox = '/bin/busybox', keep = []) {
  const bb = readFileSync(busybox);
  if (!isStaticElf(bb)) throw new Error(`${busybox} is not a static binary: apt-get install busybox-static`);
  const DIR = 0o040755;
  const FILE = 0o100755;
  const parts = [
    ...['bin', 'dev', 'proc', 'sys', 'newroot', 'modules'].map((d) => entry(d, DIR)),
    entry('dev/console', 0o020600, undefined, [5, 1]),
    entry('bin/busybox', FILE, bb),
    entry('bin/sh', 0o120777, Buffer.from('busybox')),
    entry('init', FILE, Buffer.from(initScript(modules.map((m) => m.name), keep))),
    ...modules.map((m) => entry(`modules/${m.name}.ko`, 0o100644, m.bytes)),
    entry('TRAILER!!!', 0),
  ];
  return Buffer.concat(parts);
}

/**
 * The guest's pid 1 after switch_root (dash, from the host root): runs the
 * command with the host's limits and environment basics, then records its
 * exit code in the share and powers off (sysrq: there is no init to ask).
 * If it never gets that far, the host finds no exit code and says so.
 */
export function guestScript({ cwd, command, env, nofile, resultDir }) {
  const exports = Object.entries(env)
    .map(([k, v]) => `export ${k}='${String(v).replace(/'/g, `'\\''`)}'`)
    .join('\n');
  return `# kmesh-otel kernel matrix: the guest's command (scripts/vm/initramfs.mjs)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8
${exports}
ulimit -n ${nofile} 2>/dev/null || ulimit -n 4096
cd '${cwd}'
echo "kmx-guest: $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
${command}
rc=$?
echo $rc > '${resultDir}/exit-code.tmp' && mv '${resultDir}/exit-code.tmp' '${resultDir}/exit-code'
sync
echo "kmx-guest: command exited $rc"
echo o > /proc/sysrq-trigger
while :; do :; done
`;
}
