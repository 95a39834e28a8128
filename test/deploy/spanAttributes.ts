/**
 * Every attribute name the agent's connection spans can carry: the shared
 * semconv vocabulary (src/model/semconv.ts), each end's k8s.* under its
 * prefix, and what connectionSpanAttributes really returns for a span —
 * so a deploy file that queries a misspelt attribute fails its test.
 */
import { connectionAttributes, K8sAttr, SemconvAttr } from '../../src/model/semconv.js';
import { event } from '../helpers/accessLogEntries.js';

export function agentSpanAttributes(): Set<string> {
  const out = new Set<string>();
  for (const [role, name] of Object.entries(SemconvAttr)) if (!role.endsWith('Prefix')) out.add(name);
  for (const k of Object.values(K8sAttr)) {
    out.add(SemconvAttr.sourcePrefix + k);
    out.add(SemconvAttr.destinationPrefix + k);
  }
  const failed = event({ kind: 'fail', direction: 'OUTBOUND', failure: 'refused' });
  for (const k of Object.keys(connectionAttributes(failed, true, {}))) out.add(k);
  return out;
}
