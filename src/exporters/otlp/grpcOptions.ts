import { credentials as grpcCredentials, Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import type { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-grpc';
import { readFileSync } from 'node:fs';
import type { OtlpConfig } from './config.js';

/** The SDK's compression enum (`'gzip' | 'none'`), named through a direct dependency. */
type CompressionAlgorithm = NonNullable<NonNullable<ConstructorParameters<typeof OTLPLogExporter>[0]>['compression']>;

/** The OTLP/gRPC exporter options every signal shares, built once from the config. */
export interface GrpcExporterOptions {
  url: string;
  credentials: ChannelCredentials;
  metadata: Metadata;
  compression: CompressionAlgorithm;
  timeoutMillis: number;
}

/**
 * Builds the transport options. Certificate files are read here, at
 * construction, so a missing file fails start-up instead of every export.
 */
export function grpcExporterOptions(config: OtlpConfig): GrpcExporterOptions {
  const tls = config.tls;
  const read = (path: string | undefined, what: string): Buffer | null => {
    if (path === undefined) return null;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`otlp exporter: cannot read tls.${what} ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  const credentials = tls.insecure
    ? grpcCredentials.createInsecure()
    : grpcCredentials.createSsl(read(tls.ca_file, 'ca_file'), read(tls.key_file, 'key_file'), read(tls.cert_file, 'cert_file'));
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(config.headers)) metadata.set(k.toLowerCase(), v);
  return {
    url: `${tls.insecure ? 'http' : 'https'}://${config.endpoint}`,
    credentials,
    metadata,
    compression: config.compression as unknown as CompressionAlgorithm,
    timeoutMillis: Math.max(1, config.timeout),
  };
}
