/**
 * The guard that keeps src/receiver/ebpf/layout.ts and bpf/include/record.h
 * from drifting: offsets and sizes come from the compiled object's BTF, enum
 * values from the object's BTF when present and from the header's text always.
 * Never skipped: when the object is missing (or older than the header) the
 * test builds it with `make -C bpf` and fails if it cannot.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it, before } from 'node:test';
import { RECORD_SIZE, RecordDirection, RecordIsnKnown, RecordKind, RecordLayout } from '../../../src/receiver/ebpf/layout.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const objectPath = `${root}bpf/tcp_probe.bpf.o`;
const headerPath = `${root}bpf/include/record.h`;

interface BtfMember {
  name: string;
  type_id: number;
  bits_offset: number;
}
interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: BtfMember[];
  values?: Array<{ name: string; val: number }>;
}

function ensureObject(): void {
  const stale = existsSync(objectPath) && statSync(objectPath).mtimeMs < statSync(headerPath).mtimeMs;
  if (existsSync(objectPath) && !stale) return;
  try {
    execFileSync('make', ['-C', `${root}bpf`], { stdio: 'pipe' });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    assert.fail(`bpf/tcp_probe.bpf.o is ${stale ? 'older than record.h' : 'missing'} and \`make -C bpf\` failed: ${e.stderr?.toString() ?? e.message}`);
  }
  assert.ok(existsSync(objectPath), '`make -C bpf` succeeded but did not produce bpf/tcp_probe.bpf.o');
}

function loadBtf(): Map<number, BtfType> {
  const out = execFileSync('bpftool', ['btf', 'dump', 'file', objectPath, '-j'], { maxBuffer: 64 << 20 }).toString();
  const types = (JSON.parse(out) as { types: BtfType[] }).types;
  return new Map(types.map((t) => [t.id, t]));
}

/** Byte size of a BTF type, following typedefs/qualifiers and arrays. */
function sizeOf(types: Map<number, BtfType>, id: number): number {
  const t = types.get(id);
  assert.ok(t !== undefined, `BTF type id ${id} missing`);
  switch (t.kind) {
    case 'INT':
    case 'STRUCT':
    case 'UNION':
    case 'ENUM':
    case 'ENUM64':
      return t.size!;
    case 'TYPEDEF':
    case 'CONST':
    case 'VOLATILE':
    case 'RESTRICT':
    case 'TYPE_TAG':
      return sizeOf(types, t.type_id!);
    case 'ARRAY':
      return t.nr_elems! * sizeOf(types, t.type_id!);
    default:
      return assert.fail(`unexpected BTF kind ${t.kind} in struct conn_record`);
  }
}

/** enum NAME { A = 1, ... } from the header's text. */
function headerEnum(name: string): Record<string, number> {
  const text = readFileSync(headerPath, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const m = new RegExp(`enum\\s+${name}\\s*\\{([^}]*)\\}`).exec(text);
  assert.ok(m !== null, `enum ${name} not found in record.h`);
  const out: Record<string, number> = {};
  for (const part of m[1]!.split(',')) {
    const kv = /^\s*(\w+)\s*=\s*(\d+)\s*$/.exec(part);
    if (kv !== null) out[kv[1]!] = Number(kv[2]);
    else assert.equal(part.trim(), '', `enum ${name}: every member needs an explicit value, got "${part.trim()}"`);
  }
  return out;
}

describe('conn_record layout matches the compiled object', () => {
  let types: Map<number, BtfType>;
  let record: BtfType;

  before(() => {
    ensureObject();
    types = loadBtf();
    const found = [...types.values()].find((t) => t.kind === 'STRUCT' && t.name === 'conn_record');
    assert.ok(found !== undefined, 'struct conn_record not in the BTF of bpf/tcp_probe.bpf.o');
    record = found;
  });

  it('has the same size', () => {
    assert.equal(record.size, RECORD_SIZE);
  });

  it('has the same members in the same order', () => {
    assert.deepEqual(
      record.members!.map((m) => m.name),
      Object.keys(RecordLayout),
    );
  });

  it('has every member at the same offset with the same size', () => {
    for (const m of record.members!) {
      const ours = (RecordLayout as Record<string, { offset: number; size: number }>)[m.name];
      assert.ok(ours !== undefined, `member ${m.name} is not in layout.ts`);
      assert.equal(m.bits_offset % 8, 0, `${m.name} is a bitfield`);
      assert.equal(ours.offset, m.bits_offset / 8, `offset of ${m.name}`);
      assert.equal(ours.size, sizeOf(types, m.type_id), `size of ${m.name}`);
    }
  });

  it('leaves no gap between members (explicit padding only)', () => {
    const fields = Object.values(RecordLayout);
    for (let i = 1; i < fields.length; i++) {
      assert.equal(fields[i]!.offset, fields[i - 1]!.offset + fields[i - 1]!.size, `gap before member ${i}`);
    }
    const last = fields[fields.length - 1]!;
    assert.equal(last.offset + last.size, RECORD_SIZE, 'tail padding');
  });

  it('has the same enum values as record.h (and as the BTF where the object carries the enums)', () => {
    const expected: Array<[string, Record<string, number>]> = [
      ['record_kind', RecordKind],
      ['record_direction', RecordDirection],
      ['record_isn_known', RecordIsnKnown],
    ];
    for (const [name, ours] of expected) {
      assert.deepEqual(headerEnum(name), { ...ours }, `enum ${name} in record.h`);
      const btf = [...types.values()].find((t) => t.kind === 'ENUM' && t.name === name);
      if (btf !== undefined) {
        const values = Object.fromEntries(btf.values!.map((v) => [v.name, v.val]));
        assert.deepEqual(values, { ...ours }, `enum ${name} in BTF`);
      }
    }
  });
});
