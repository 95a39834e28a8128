import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { K8sAttributesConfig } from './config.js';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Loads the client config for `auth_type`, failing with a message that says
 * what is missing (start-up fails fast rather than retrying forever).
 */
export function loadKubeConfig(config: K8sAttributesConfig): KubeConfig {
  const kc = new KubeConfig();
  if (config.auth_type === 'serviceAccount') {
    if (!existsSync(SERVICE_ACCOUNT_TOKEN) || !process.env.KUBERNETES_SERVICE_HOST) {
      throw new Error(
        `auth_type serviceAccount: no in-cluster service account (${SERVICE_ACCOUNT_TOKEN}, KUBERNETES_SERVICE_HOST); not running in a pod?`,
      );
    }
    kc.loadFromCluster();
    return kc;
  }
  const env = process.env.KUBECONFIG;
  if (env !== undefined && env !== '') {
    const missing = env.split(delimiter).filter((f) => f !== '' && !existsSync(f));
    if (missing.length > 0) throw new Error(`auth_type kubeConfig: KUBECONFIG file not found: ${missing.join(', ')}`);
  } else if (!existsSync(join(homedir(), '.kube', 'config')) && !existsSync(SERVICE_ACCOUNT_TOKEN)) {
    throw new Error('auth_type kubeConfig: no KUBECONFIG, no ~/.kube/config and no in-cluster service account');
  }
  kc.loadFromDefault();
  if (kc.getCurrentCluster() === null) throw new Error('auth_type kubeConfig: the kubeconfig has no current cluster');
  return kc;
}
