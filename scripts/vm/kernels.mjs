// Kernels for the kernel matrix (scripts/kernel-matrix.mjs): where a guest
// kernel comes from, and the two things a guest needs from it besides the
// image: an uncompressed vmlinux to boot by its PVH entry (saves ~3 s of
// in-guest decompression under TCG, see shared/KERNELS.md) and the modules
// the guest loads from its initramfs (9p for the root filesystem, veth and
// bridge for the test pods, inet_diag/tcp_diag for sock_diag), with their
// dependencies read from each module's .modinfo (no depmod needed).
//
// A Debian kernel is fetched without installing it: `apt-get download` of the
// versioned image package, `dpkg-deb -x` into a cache folder (~4 s; installing
// linux-image-amd64 takes ~44 s and upgrades systemd/udev). Nothing under
// /boot or /lib/modules of the host changes.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';

/** Where fetched kernels and extracted vmlinux images are kept between runs. */
export const KERNEL_CACHE = process.env.KMESH_KERNEL_CACHE ?? '/var/cache/kmesh-otel/kernels';

/**
 * Modules a guest loads at boot, by name (`-` and `_` are the same). One that
 * is built into the kernel is skipped; one that is missing only warns (the
 * tests that need it fail and say why).
 */
export const GUEST_MODULES = [
  // The root filesystem and the results share: virtio-9p over PCI.
  'virtio_pci', '9pnet_virtio', '9p',
  // Entropy for the guest (node's crypto) without waiting on jitter.
  'virtio_rng',
  // Test pods: network namespaces joined by a bridge through veth pairs.
  'veth', 'bridge',
  // The sock_diag periodic-report source (NETLINK_SOCK_DIAG, INET_DIAG).
  'inet_diag', 'tcp_diag', 'udp_diag',
  // The NAT cases of the ISN test (nat chains, dnat, masquerade). crc32c
  // first: libcrc32c asks for it through modprobe, which a guest lacks.
  'crc32c_generic', 'nf_tables', 'nft_chain_nat', 'nft_nat', 'nft_masq',
];

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000, ...opts });

/**
 * The Debian image package behind a meta package (`linux-image-amd64` ->
 * `linux-image-6.1.0-57-amd64`) and its candidate version. Runs
 * `apt-get update` once if apt knows neither.
 */
export function resolveDebianPackage(meta) {
  const ask = () => {
    try {
      const deps = run('apt-cache', ['depends', meta]);
      const m = /Depends: (linux-image-[0-9][^\s]*)/.exec(deps);
      const pkg = m ? m[1] : meta;
      const policy = run('apt-cache', ['policy', pkg]);
      const v = /Candidate: (\S+)/.exec(policy);
      return v && v[1] !== '(none)' ? { pkg, version: v[1] } : undefined;
    } catch {
      return undefined;
    }
  };
  let got = ask();
  if (!got) {
    run('apt-get', ['update', '-qq']);
    got = ask();
  }
  if (!got) throw new Error(`apt knows no package ${meta} (is this Debian with its main archive in sources.list?)`);
  return got;
}

/**
 * Fetches and unpacks a Debian kernel package into the cache (once per
 * version) and returns its kernel description.
 */
export function debianKernel(name, meta, log) {
  const { pkg, version } = resolveDebianPackage(meta);
  const dir = join(KERNEL_CACHE, `${pkg}_${version.replace(/[^A-Za-z0-9.+-]/g, '_')}`);
  if (!existsSync(join(dir, '.complete'))) {
    log(`fetching ${pkg} ${version} (apt-get download, dpkg-deb -x into ${dir})`);
    mkdirSync(KERNEL_CACHE, { recursive: true });
    const tmp = mkdtempSync(join(KERNEL_CACHE, '.fetch-'));
    try {
      // apt-get download writes into the current directory; `_apt` cannot
      // write into a root-only folder, so apt warns and downloads as root.
      run('apt-get', ['download', `${pkg}=${version}`], { cwd: tmp });
      const deb = readdirSync(tmp).find((f) => f.endsWith('.deb'));
      if (!deb) throw new Error(`apt-get download ${pkg}=${version} left no .deb`);
      run('dpkg-deb', ['-x', join(tmp, deb), join(tmp, 'root')]);
      writeFileSync(join(tmp, 'root', '.complete'), `${pkg} ${version}\n`);
      rmSync(dir, { recursive: true, force: true });
      renameSync(join(tmp, 'root'), dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const vmlinuz = readdirSync(join(dir, 'boot')).find((f) => f.startsWith('vmlinuz-'));
  if (!vmlinuz) throw new Error(`${dir}/boot has no vmlinuz`);
  const release = vmlinuz.slice('vmlinuz-'.length);
  return { name, origin: `debian ${pkg} ${version}`, release, vmlinuz: join(dir, 'boot', vmlinuz), modulesDir: join(dir, 'lib', 'modules', release) };
}

/**
 * A kernel given on the command line: `NAME=/path/vmlinuz[:/path/lib/modules/RELEASE]`.
 * Without a modules folder, `/lib/modules/RELEASE` next to a kernel whose
 * release is read from the image's header.
 */
export function customKernel(spec) {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new Error(`--kernel ${spec}: expected NAME=/path/to/vmlinuz[:/path/to/lib/modules/RELEASE]`);
  const name = spec.slice(0, eq);
  const [vmlinuz, modules] = spec.slice(eq + 1).split(':');
  if (!existsSync(vmlinuz)) throw new Error(`--kernel ${name}: ${vmlinuz} not found`);
  const release = bzImageRelease(vmlinuz);
  const modulesDir = modules ?? join('/lib/modules', release ?? 'unknown');
  if (!existsSync(modulesDir)) throw new Error(`--kernel ${name}: modules folder ${modulesDir} not found (give it after a colon)`);
  return { name, origin: vmlinuz, release: release ?? basename(modulesDir), vmlinuz, modulesDir };
}

/** The release string of a bzImage (boot protocol: kernel_version at 0x20e), or undefined. */
export function bzImageRelease(path) {
  const b = readHead(path, 64 * 1024);
  if (b.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
  const off = b.readUInt16LE(0x20e) + 0x200;
  const end = b.indexOf(0, off);
  return b.toString('latin1', off, end).split(' ')[0] || undefined;
}

function readHead(path, n) {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(n);
    const got = readSync(fd, b, 0, n, 0);
    return b.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * The uncompressed vmlinux inside a bzImage, cached beside the cache's other
 * files, when it has a PVH entry note (qemu boots such an ELF directly);
 * undefined when it cannot be had (then the bzImage boots, a few seconds
 * slower). The payload's location comes from the boot header
 * (payload_offset/payload_length, boot protocol 2.08+); the kernel build
 * appends the uncompressed size, which checks the result.
 */
export function extractVmlinux(kernel, log) {
  const key = `${kernel.name}-${kernel.release}-${statSync(kernel.vmlinuz).size}`.replace(/[^A-Za-z0-9._-]/g, '_');
  const out = join(KERNEL_CACHE, 'vmlinux', `${key}.elf`);
  if (existsSync(out)) return out;
  try {
    const b = readFileSync(kernel.vmlinuz);
    if (b.toString('latin1', 0x202, 0x206) !== 'HdrS' || b.readUInt16LE(0x206) < 0x208) return undefined;
    const setupSects = b[0x1f1] || 4;
    const start = (setupSects + 1) * 512 + b.readUInt32LE(0x248);
    const payload = b.subarray(start, start + b.readUInt32LE(0x24c));
    const size = payload.readUInt32LE(payload.length - 4);
    const magic = payload.subarray(0, 6).toString('hex');
    let elf;
    if (magic.startsWith('1f8b')) elf = gunzipSync(payload.subarray(0, payload.length - 4));
    else {
      const tool = magic === 'fd377a585a00' ? 'xz' : magic.startsWith('28b52ffd') ? 'zstd' : magic.startsWith('02214c18') ? 'lz4' : magic.startsWith('5d00') ? 'lzma' : undefined;
      if (!tool) return undefined;
      // The size word after the stream makes xz complain; the output is checked below instead.
      const r = spawnSync(tool, ['-dc'], { input: payload, maxBuffer: 1 << 30, stdio: ['pipe', 'pipe', 'ignore'] });
      elf = r.stdout;
    }
    if (!elf || elf.length !== size || elf.readUInt32BE(0) !== 0x7f454c46 || !hasPvhNote(elf)) return undefined;
    mkdirSync(join(KERNEL_CACHE, 'vmlinux'), { recursive: true });
    writeFileSync(`${out}.tmp`, elf);
    renameSync(`${out}.tmp`, out);
    return out;
  } catch (err) {
    log(`cannot extract vmlinux from ${kernel.vmlinuz} (${err.message}): booting the bzImage`);
    return undefined;
  }
}

/** Whether a 64-bit ELF carries XEN_ELFNOTE_PHYS32_ENTRY (18), the PVH entry qemu needs. */
function hasPvhNote(elf) {
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  for (let i = 0; i < elf.readUInt16LE(0x38); i++) {
    const ph = phoff + i * phentsize;
    if (elf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    let o = Number(elf.readBigUInt64LE(ph + 8));
    const end = o + Number(elf.readBigUInt64LE(ph + 32));
    while (o + 12 <= end) {
      const namesz = elf.readUInt32LE(o);
      const descsz = elf.readUInt32LE(o + 4);
      const type = elf.readUInt32LE(o + 8);
      const name = elf.toString('latin1', o + 12, o + 12 + namesz - 1);
      if (name === 'Xen' && type === 18) return true;
      o += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}

/** Decompressed bytes of a module file (.ko, .ko.xz, .ko.gz, .ko.zst). */
function moduleBytes(path) {
  if (path.endsWith('.ko')) return readFileSync(path);
  if (path.endsWith('.gz')) return gunzipSync(readFileSync(path));
  const tool = path.endsWith('.xz') ? 'xz' : path.endsWith('.zst') ? 'zstd' : undefined;
  if (!tool) throw new Error(`unknown module compression: ${path}`);
  return execFileSync(tool, ['-dc', path], { maxBuffer: 1 << 28 });
}

/** `depends=` of a module, from its .modinfo section. */
function moduleDepends(elf) {
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const strtab = shoff + elf.readUInt16LE(0x3e) * shentsize;
  const strOff = Number(elf.readBigUInt64LE(strtab + 0x18));
  for (let i = 0; i < shnum; i++) {
    const sh = shoff + i * shentsize;
    const nameOff = strOff + elf.readUInt32LE(sh);
    if (elf.toString('latin1', nameOff, elf.indexOf(0, nameOff)) !== '.modinfo') continue;
    const off = Number(elf.readBigUInt64LE(sh + 0x18));
    const size = Number(elf.readBigUInt64LE(sh + 0x20));
    for (const kv of elf.toString('latin1', off, off + size).split('\0')) {
      if (kv.startsWith('depends=')) return kv.slice('depends='.length).split(',').filter(Boolean);
    }
    return [];
  }
  return [];
}

const norm = (n) => n.replace(/-/g, '_');

/**
 * The modules to load for `wanted`, dependencies first, as
 * `{ name, bytes }` (decompressed: busybox insmod takes plain ELF); names
 * that are built in or absent are returned apart.
 */
export function moduleClosure(modulesDir, wanted = GUEST_MODULES) {
  const files = new Map();
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const m = /^(.+)\.ko(\.(xz|gz|zst))?$/.exec(e.name);
        if (m) files.set(norm(m[1]), p);
      }
    }
  };
  walk(modulesDir);
  let builtin = new Set();
  try {
    builtin = new Set(readFileSync(join(modulesDir, 'modules.builtin'), 'utf8').split('\n').map((l) => norm(basename(l).replace(/\.ko$/, ''))));
  } catch {
    // no list: a module that is not found is reported as missing
  }
  const order = [];
  const seen = new Set();
  const skipped = { builtin: [], missing: [] };
  const visit = (raw) => {
    const name = norm(raw);
    if (seen.has(name)) return;
    seen.add(name);
    const path = files.get(name);
    if (!path) {
      (builtin.has(name) ? skipped.builtin : skipped.missing).push(name);
      return;
    }
    const bytes = moduleBytes(path);
    for (const dep of moduleDepends(bytes)) visit(dep);
    order.push({ name, bytes });
  };
  for (const w of wanted) visit(w);
  return { order, skipped };
}
