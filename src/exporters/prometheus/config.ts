import { z } from 'zod';
import { hostPort } from '../../config/types.js';
import { metricsStoreKeys } from '../common/metricsConfig.js';

/** `exporters.prometheus`: a pull endpoint serving `/metrics` in the Prometheus text format. */
export const prometheusConfigSchema = z.strictObject({
  /** host:port to listen on (IPv6 in brackets). Default `0.0.0.0:15020` (Kmesh's port). */
  endpoint: hostPort.default('0.0.0.0:15020'),
  ...metricsStoreKeys,
});

export type PrometheusConfig = z.output<typeof prometheusConfigSchema>;
