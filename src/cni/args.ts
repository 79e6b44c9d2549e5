import { CniError, ErrorCode } from './errors.js';

/**
 * Parses CNI_ARGS ("K=V;K=V"). Libcni and kubelet pass IgnoreUnknown, K8S_POD_NAMESPACE,
 * K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID, and IP=/MAC=/GATEWAY= for static use.
 */
export function parseCniArgs(raw: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!raw) return out;
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      throw new CniError(ErrorCode.InvalidEnvironment, `invalid CNI_ARGS pair ${JSON.stringify(pair)}: expected KEY=VALUE`);
    }
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

export function formatCniArgs(args: Map<string, string>): string {
  return [...args].map(([k, v]) => `${k}=${v}`).join(';');
}
