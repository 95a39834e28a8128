#!/usr/bin/env node
// Builds the N-API addon against the headers of the Node that runs this
// script (/usr/include/node on Debian-style installs). node-gyp would
// otherwise download headers, and this kind of machine has no internet.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const nodedir = resolve(process.execPath, '..', '..');
const args = ['rebuild', '--directory', join(root, 'native')];
if (existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
const gyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const r = spawnSync(process.execPath, [gyp, ...args], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
