// ESM loader for the kmesh_bpf N-API addon (native/build/Release/kmesh_bpf.node).
// Types: native/index.d.ts.
import { createRequire } from 'node:module';
import { fileURLToPath, URL } from 'node:url';

const addonPath = fileURLToPath(new URL('./build/Release/kmesh_bpf.node', import.meta.url));
const require = createRequire(import.meta.url);

let addon;
try {
  addon = require(addonPath);
} catch (err) {
  const e = new Error(
    `kmesh-otel native addon could not be loaded from ${addonPath}: ${err.message}. ` +
      'Build it with `npm run build:native` (needs libbpf-dev, libelf-dev, zlib1g-dev and a C++ compiler; ' +
      'without network access point node-gyp at the local headers, e.g. npm_config_nodedir=/usr).',
  );
  e.cause = err;
  throw e;
}

/** @type {typeof import('./index.d.ts').BpfProbe} */
export const BpfProbe = addon.BpfProbe;

/** Absolute path of the compiled BPF object (bpf/tcp_probe.bpf.o, built by `npm run build:bpf`). */
export const defaultObjectPath = fileURLToPath(new URL('../bpf/tcp_probe.bpf.o', import.meta.url));
