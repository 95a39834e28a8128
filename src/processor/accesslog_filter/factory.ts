import type { ProcessorFactory } from '../../component/component.js';
import { newLogsProcessor } from '../../component/processorhelper.js';
import { accessLogFilterConfigSchema, createDefaultConfig, type AccessLogFilterConfig } from './config.js';
import { newAccessLogFilter } from './filter.js';

/**
 * `accesslog_filter`: volume control for access logs — event kinds,
 * failures only, excluded namespaces and ports, 1-in-N sampling of
 * successful connections. Logs only: metrics must keep counting every
 * connection, so a metrics pipeline naming it fails validation.
 */
export const accessLogFilterProcessorFactory: ProcessorFactory<AccessLogFilterConfig> = {
  kind: 'processor',
  type: 'accesslog_filter',
  stability: { logs: 'alpha' },
  configSchema: accessLogFilterConfigSchema,
  createDefaultConfig,
  createLogs(settings, config, next) {
    const filtered = settings.telemetry.counter(
      'processor_filtered_log_records',
      'Access-log records left out on purpose by a filter or sampling (reason: event, failures_only, namespace, port, sampled)',
    );
    const processor = settings.id.toString();
    const body = newAccessLogFilter(config, (reason, n) => filtered.add(n, { processor, reason }));
    return newLogsProcessor(settings, next, body);
  },
};
