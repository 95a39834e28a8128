/**
 * Builds packed `struct conn_record`s for tests. Written field by field from
 * layout.ts names, so a layout change that the BTF test accepts flows here too.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { RECORD_SIZE, RecordLayout } from '../../../src/receiver/ebpf/layout.js';

export interface RecordFields {
  socketCookie?: bigint;
  netnsCookie?: bigint;
  startNs?: bigint;
  eventNs?: bigint;
  sentBytes?: bigint;
  receivedBytes?: bigint;
  src?: string;
  dst?: string;
  origDst?: string;
  srttUs?: number;
  minRttUs?: number;
  totalRetrans?: number;
  lostOut?: number;
  segsIn?: number;
  segsOut?: number;
  skErr?: number;
  isnClient?: number;
  isnServer?: number;
  isnKnown?: number;
  srcPort?: number;
  dstPort?: number;
  origDstPort?: number;
  family?: number;
  kind?: number;
  direction?: number;
  state?: number;
}

/** Address text -> 16 bytes (IPv4 in the first 4, as the kernel writes it for AF_INET). */
export function addrBytes(text: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv4(text)) {
    text.split('.').forEach((p, i) => (out[i] = Number(p)));
    return out;
  }
  if (!isIPv6(text)) throw new Error(`bad address ${text}`);
  let head = text;
  let tail = '';
  let v4: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    v4 = text.slice(lastColon + 1).split('.').map(Number);
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  if (head.includes('::')) [head, tail] = head.split('::') as [string, string];
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((g) => parseInt(g, 16));
  groups.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  if (v4.length === 4) v4.forEach((b, i) => (out[12 + i] = b));
  return out;
}

const L = RecordLayout;

export function record(f: RecordFields = {}): Buffer {
  const b = Buffer.alloc(RECORD_SIZE);
  const src = f.src ?? '10.0.0.1';
  const family = f.family ?? (isIPv4(src) ? 2 : 10);
  b.writeBigUInt64LE(f.socketCookie ?? 1n, L.socket_cookie.offset);
  b.writeBigUInt64LE(f.netnsCookie ?? 4096n, L.netns_cookie.offset);
  b.writeBigUInt64LE(f.startNs ?? 1_000_000_000n, L.start_ns.offset);
  b.writeBigUInt64LE(f.eventNs ?? 3_000_000_000n, L.event_ns.offset);
  b.writeBigUInt64LE(f.sentBytes ?? 0n, L.sent_bytes.offset);
  b.writeBigUInt64LE(f.receivedBytes ?? 0n, L.received_bytes.offset);
  addrBytes(src).copy(b, L.src_addr.offset);
  addrBytes(f.dst ?? '10.0.0.2').copy(b, L.dst_addr.offset);
  if (f.origDst !== undefined) addrBytes(f.origDst).copy(b, L.orig_dst_addr.offset);
  b.writeUInt32LE(f.srttUs ?? 0, L.srtt_us.offset);
  b.writeUInt32LE(f.minRttUs ?? 0, L.min_rtt_us.offset);
  b.writeUInt32LE(f.totalRetrans ?? 0, L.total_retrans.offset);
  b.writeUInt32LE(f.lostOut ?? 0, L.lost_out.offset);
  b.writeUInt32LE(f.segsIn ?? 0, L.segs_in.offset);
  b.writeUInt32LE(f.segsOut ?? 0, L.segs_out.offset);
  b.writeUInt32LE(f.skErr ?? 0, L.sk_err.offset);
  b.writeUInt32LE(f.isnClient ?? 0, L.isn_client.offset);
  b.writeUInt32LE(f.isnServer ?? 0, L.isn_server.offset);
  b.writeUInt8(f.isnKnown ?? 0, L.isn_known.offset);
  b.writeUInt16LE(f.srcPort ?? 40000, L.src_port.offset);
  b.writeUInt16LE(f.dstPort ?? 80, L.dst_port.offset);
  b.writeUInt16LE(f.origDstPort ?? 0, L.orig_dst_port.offset);
  b.writeUInt16LE(family, L.family.offset);
  b.writeUInt8(f.kind ?? 1, L.kind.offset);
  b.writeUInt8(f.direction ?? 1, L.direction.offset);
  b.writeUInt8(f.state ?? 1, L.state.offset);
  return b;
}

export const KIND = { open: 1, close: 2, fail: 3, report: 4 } as const;
export const DIR = { OUTBOUND: 1, INBOUND: 2 } as const;

export function batch(...records: Buffer[]): Buffer {
  return Buffer.concat(records);
}
