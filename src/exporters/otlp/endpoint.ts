import { z } from 'zod';
import { splitHostPort } from '../../config/types.js';

/** A gRPC endpoint as written in the config, taken apart. */
export interface GrpcTarget {
  /** `host:port` for the SDK exporter (it dials through grpc-js' DNS resolver). */
  hostPort: string;
  /** The endpoint asked for TLS by its scheme (`https://`), whatever `tls.insecure` says. */
  httpsScheme: boolean;
}

/**
 * Parses a gRPC endpoint the way the Collector's configgrpc accepts it:
 * `host:port`, `http://host:port`, `https://host:port`, or a gRPC name
 * `dns:///host:port` / `dns:host:port` (gRPC naming, doc/naming.md; the
 * default resolver is DNS, so these dial the same host:port). A DNS server
 * authority (`dns://8.8.8.8/host:port`) is not supported: grpc-js resolves
 * with the system resolver.
 */
export function parseGrpcTarget(endpoint: string): GrpcTarget | string {
  let rest = endpoint.trim();
  let httpsScheme = false;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(rest)?.[1]?.toLowerCase();
  if (scheme === 'http' || scheme === 'https') {
    let url: URL;
    try {
      url = new URL(rest);
    } catch {
      return `invalid URL "${endpoint}"`;
    }
    if (url.pathname !== '/' && url.pathname !== '') return 'a gRPC endpoint has no path';
    if (url.port === '') return 'needs a port, e.g. https://collector:4317';
    httpsScheme = scheme === 'https';
    rest = url.host;
  } else if (scheme === 'dns') {
    const m = /^dns:(?:\/\/(.*?)\/)?(.*)$/i.exec(rest)!;
    if (m[1] !== undefined && m[1] !== '') return 'a DNS server authority (dns://server/...) is not supported; use dns:///host:port';
    rest = m[2]!;
  } else if (scheme !== undefined && splitHostPort(rest) === undefined) {
    return `unsupported scheme "${scheme}:" (use host:port, http://, https:// or dns:///)`;
  }
  if (splitHostPort(rest) === undefined) return 'must be host:port, http(s)://host:port or dns:///host:port';
  return { hostPort: rest, httpsScheme };
}

/** Zod type of a gRPC endpoint (validated; the output is the text as written). */
export const grpcTarget = z.string().superRefine((s, ctx) => {
  const r = parseGrpcTarget(s);
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r });
});

function checkHttpUrl(s: string): string | undefined {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return `invalid URL "${s}" (e.g. https://otlp.example.com or http://collector:4318)`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http:// or https:// URL';
  if (url.search !== '' || url.hash !== '') return 'no query or fragment';
  return undefined;
}

/** Zod type of an HTTP base URL. */
export const httpBaseUrl = z.string().superRefine((s, ctx) => {
  const problem = checkHttpUrl(s);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

/** Zod type of a full per-signal HTTP URL. */
export const httpSignalUrl = httpBaseUrl;

/**
 * The URL of one signal under a base URL, as the Collector's otlphttp builds
 * it (url.JoinPath): `http://loki:3100/otlp` + `v1/logs` =
 * `http://loki:3100/otlp/v1/logs`; a trailing slash is not doubled.
 */
export function signalUrl(base: string, signalPath: 'v1/metrics' | 'v1/logs' | 'v1/traces'): string {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${signalPath}`;
  return url.toString();
}
