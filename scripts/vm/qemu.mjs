// Runs one throw-away guest under qemu, bounded: the host root shared
// read-only and the run folder read-write over virtio-9p (initramfs.mjs),
// the serial console copied to a log file (and, prefixed, to our stdout),
// killed after its timeout (SIGTERM, then SIGKILL after a grace), and killed
// with SIGKILL if this process exits first (or is killed: parent-death signals). Nothing of the
// host changes: no disk image, no tap device, no mount. Signals are the
// caller's to handle (kernel-matrix.mjs): it exits, and the exit kills guests.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { clearTimeout, setTimeout as delay } from 'node:timers';
import { ROOT_TAG, SHARE_TAG } from './initramfs.mjs';

/** Guests still running: killed (SIGKILL) when this process exits, whatever the reason. */
const live = new Set();
let hookInstalled = false;

/** Kills every guest still running (also done on exit). */
export function killGuests() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * How guests are accelerated here: KVM only where the CPU has real hardware
 * virtualization (vmx/svm) and /dev/kvm is there; a paravirtual /dev/kvm
 * (kvm_pvm, no vmx/svm flag) cannot boot a stock kernel (shared/KERNELS.md),
 * so it means TCG. KMESH_VM_ACCEL=kvm|tcg overrides.
 */
export function chooseAccel() {
  const forced = process.env.KMESH_VM_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  let flags = '';
  try {
    flags = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // no cpuinfo: emulate
  }
  return existsSync('/dev/kvm') && /^flags\s*:.*\b(vmx|svm)\b/m.test(flags) ? 'kvm' : 'tcg';
}

/**
 * qemu's command line for one guest.
 *
 * TCG runs one thread for all vCPUs by default (`thread=single`): with
 * `thread=multi` (qemu 7.2) 5 of 12 suite runs lost a test process to SIGSEGV
 * inside V8's JIT code, with one thread 0 of 5 (shared/KERNELS.md). Two
 * vCPUs either way, so per-CPU maps and SMP paths of the kernel still run.
 */
export function qemuArgs({ kernel, initrd, append, share, accel, tcgThreads = 'single', cpus = 2, memoryMiB = 3072 }) {
  const a = ['-nodefaults', '-no-reboot', '-display', 'none', '-machine', 'pc'];
  if (accel === 'kvm') a.push('-accel', 'kvm', '-cpu', 'host');
  else a.push('-accel', `tcg,thread=${tcgThreads},tb-size=512`, '-cpu', 'max');
  a.push('-smp', String(cpus), '-m', String(memoryMiB));
  a.push('-kernel', kernel, '-initrd', initrd, '-append', append);
  a.push('-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con');
  a.push('-fsdev', `local,id=root,path=/,security_model=none,readonly=on,multidevs=remap`);
  a.push('-device', `virtio-9p-pci,fsdev=root,mount_tag=${ROOT_TAG}`);
  a.push('-fsdev', `local,id=share,path=${share},security_model=none,multidevs=remap`);
  a.push('-device', `virtio-9p-pci,fsdev=share,mount_tag=${SHARE_TAG}`);
  a.push('-device', 'virtio-rng-pci');
  return a;
}

/**
 * Boots a guest and waits for it: resolves `{ code, signal, timedOut,
 * seconds }` once qemu is gone. The guest's console goes to `consoleLog`
 * and, each line prefixed, to `echo` (a function) if given.
 */
export function runGuest({ args, timeoutMs, consoleLog, echo, graceMs = 5_000 }) {
  if (!hookInstalled) {
    hookInstalled = true;
    process.once('exit', killGuests);
  }
  const started = Date.now();
  const log = createWriteStream(consoleLog);
  // Even if this process is SIGKILLed (no exit hook runs): setpriv's
  // parent-death signal kills `timeout` with us, and qemu with `timeout`;
  // `timeout` also enforces the limit by itself, a little after ours.
  const limitS = Math.ceil((timeoutMs + graceMs) / 1000) + 5;
  const wrapped = [
    '--pdeathsig', 'KILL', 'timeout', '-k', '5', String(limitS),
    'setpriv', '--pdeathsig', 'KILL', 'qemu-system-x86_64', ...args,
  ];
  const child = spawn('setpriv', wrapped, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const lines = (stream) =>
    createInterface({ input: stream }).on('line', (l) => {
      // Serial lines end in \r\n.
      const line = l.replace(/\r$/, '');
      log.write(line + '\n');
      echo?.(line);
    });
  lines(child.stdout);
  lines(child.stderr);
  let timedOut = false;
  const timer = delay(() => {
    timedOut = true;
    child.kill('SIGTERM');
    delay(() => child.kill('SIGKILL'), graceMs).unref();
  }, timeoutMs);
  return new Promise((resolve) => {
    child.once('error', (err) => {
      log.write(`kmx: cannot start qemu: ${err.message}\n`);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      log.end(() => resolve({ code, signal, timedOut, seconds: (Date.now() - started) / 1000 }));
    });
  });
}
