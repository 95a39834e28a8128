export { ebpfReceiverFactory, createEbpfReceiverFactory, EBPF_RECEIVER_TYPE } from './factory.js';
export { ebpfReceiverConfigSchema, createDefaultEbpfReceiverConfig, defaultBpfObjectPath, type EbpfReceiverConfig } from './config.js';
export { EbpfReceiver, type EbpfReceiverDeps } from './receiver.js';
export { EbpfReceiverStartError } from './preflight.js';
export type { KernelSource, KernelSourceFactory, KernelSourceOptions } from './KernelSource.js';
export { decodeBatch, decodeRecord, type DecodeStats, type DecodeError } from './decode.js';
export { ConnectionTable } from './ConnectionTable.js';
export { MonotonicClock } from './MonotonicClock.js';
