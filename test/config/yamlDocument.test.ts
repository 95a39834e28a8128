import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MAX_DURATION_MS, duration } from '../../src/config/types.js';
import { MAX_ALIAS_COUNT, MAX_CONFIG_BYTES, parseConfigYaml } from '../../src/config/yamlDocument.js';
import { builtinFactories } from '../../src/components.js';
import { loadConfigFile, loadConfigText } from '../../src/service/config.js';

const messages = (text: string): string[] => parseConfigYaml(text).problems.map((p) => (p.path === '' ? p.message : `${p.path}: ${p.message}`));

describe('config text is parsed without trusting it', () => {
  it('parses plain configs into data', () => {
    assert.deepEqual(parseConfigYaml('a: 1\nb: [x, {c: true}]\n'), { value: { a: 1, b: ['x', { c: true }] }, problems: [] });
    assert.deepEqual(parseConfigYaml(''), { value: {}, problems: [] });
  });

  it('names every duplicate key by its path, in any map of the tree', () => {
    assert.deepEqual(messages('a: 1\nb:\n  c: 1\n  c: 2\nlist:\n  - {d: 1, d: 2}\na: 3\n'), [
      'a: duplicate key',
      'b.c: duplicate key',
      'list[0].d: duplicate key',
    ]);
  });

  it('finds duplicates among 40,000 keys in linear time (the library check was quadratic: 34 s)', () => {
    let text = 'receivers:\n  ebpf:\n';
    for (let i = 0; i < 40_000; i++) text += `    k${i}: ${i}\n`;
    text += '    k17: again\n';
    const t0 = process.hrtime.bigint();
    const problems = messages(text);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.deepEqual(problems, ['receivers.ebpf.k17: duplicate key']);
    // Generous bound for a shared machine; the quadratic check took 34,000 ms here.
    assert.ok(ms < 5_000, `took ${ms.toFixed(0)} ms`);
  });

  it('rejects __proto__ under its own path instead of changing the object prototype', () => {
    assert.deepEqual(messages('__proto__: {x: 1}\nreceivers: {ebpf: {}}\n'), ['__proto__: reserved key name (it cannot be stored as data)']);
    assert.deepEqual(messages('exporters:\n  debug:\n    __proto__: {polluted: true}\n'), [
      'exporters.debug.__proto__: reserved key name (it cannot be stored as data)',
    ]);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const r = loadConfigText('__proto__: {x: 1}\nreceivers: {ebpf: {}}\n', builtinFactories, {});
    assert.deepEqual(r.problems, [{ path: '__proto__', message: 'reserved key name (it cannot be stored as data)' }]);
  });

  it('stops an alias bomb with a clear error instead of a stack trace', () => {
    const rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (const [name, prev] of [['b', 'a'], ['c', 'b'], ['d', 'c'], ['e', 'd'], ['f', 'e']]) {
      rows.push(`${name}: &${name} [${new Array(9).fill(`*${prev}`).join(',')}]`);
    }
    rows.push(`g: [${new Array(9).fill('*f').join(',')}]`);
    const problems = messages(rows.join('\n') + '\n');
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, new RegExp(`^YAML: aliases expand to more than ${MAX_ALIAS_COUNT} alias nodes`));
    // A few aliases are fine.
    assert.deepEqual(parseConfigYaml('x: &x {a: 1}\ny: *x\n').value, { x: { a: 1 }, y: { a: 1 } });
  });

  it('refuses configs over the size limit, as text and as a file (before reading it)', () => {
    const big = 'a: "' + 'x'.repeat(MAX_CONFIG_BYTES) + '"\n';
    assert.deepEqual(messages(big), [`config is ${Buffer.byteLength(big)} bytes; the limit is ${MAX_CONFIG_BYTES} (1 MiB)`]);
    const dir = mkdtempSync(join(tmpdir(), 'kmesh-cfg-'));
    try {
      const file = join(dir, 'big.yaml');
      writeFileSync(file, big);
      assert.deepEqual(loadConfigFile(file, builtinFactories, {}).problems, [
        { path: '', message: `config file ${file} is ${Buffer.byteLength(big)} bytes; the limit is ${MAX_CONFIG_BYTES} (1 MiB)` },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps every duration within what a timer can hold, naming the key', () => {
    assert.equal(duration.parse('596h31m23.647s'), MAX_DURATION_MS);
    assert.equal(duration.safeParse('1000h').success, false);
    assert.equal(duration.safeParse(MAX_DURATION_MS + 1).success, false);
    const r = loadConfigText(
      'receivers: {ebpf: {report_interval: 1000h}}\nexporters: {debug: {}}\nservice: {pipelines: {logs: {receivers: [ebpf], exporters: [debug]}}}\n',
      builtinFactories,
      {},
    );
    assert.deepEqual(r.problems, [
      { path: 'receivers.ebpf.report_interval', message: 'must be at most 596h31m23.647s (2147483647 ms, the longest a timer can wait)' },
    ]);
  });
});
