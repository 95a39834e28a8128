import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root (where package.json, otel-config.yaml and bpf/ live),
 * found by walking up from this module: the same code runs from src/ under
 * tsx and from dist/src/ after tsc.
 */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'kmesh-otel') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('kmesh-otel: cannot find the package root from ' + import.meta.url);
    dir = parent;
  }
})();

export const packageVersion: string = (
  JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }
).version;

/** The embedded default config, used when no --config is given and ./otel-config.yaml does not exist. */
export const embeddedConfigPath = join(packageRoot, 'otel-config.yaml');

/** The compiled BPF object, `bpf/tcp_probe.bpf.o` in the package root (built by `npm run build`). */
export const defaultBpfObjectPath = join(packageRoot, 'bpf', 'tcp_probe.bpf.o');
