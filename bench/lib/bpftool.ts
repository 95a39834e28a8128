/** What is attached at the cgroup root and pinned in bpffs, for the "nothing left behind" check. */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Program ids attached to the cgroup (any attach type), via bpftool; [] when bpftool is missing. */
export function attachedProgramIds(cgroup: string): number[] {
  try {
    const out = execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const list = JSON.parse(out || '[]') as Array<{ id: number }>;
    return list.map((p) => p.id);
  } catch {
    return [];
  }
}

/** Everything under /sys/fs/bpf (recursively). */
export function bpffsEntries(root = '/sys/fs/bpf'): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      out.push(p);
      walk(p);
    }
  };
  walk(root);
  return out;
}
