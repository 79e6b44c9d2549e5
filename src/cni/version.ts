import { CniError, ErrorCode } from './errors.js';

/** The spec versions we read and write, oldest first. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type SpecVersion = (typeof SUPPORTED_VERSIONS)[number];
export const CURRENT_VERSION: SpecVersion = '1.1.0';

/** Compares two dotted versions numerically: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function isSupportedVersion(v: unknown): v is SpecVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Rejects a config version we cannot speak (code 1), naming it. */
export function requireSupportedVersion(v: unknown): SpecVersion {
  if (v === undefined || v === '') return '0.3.0'; // the spec's historical default when unset
  if (!isSupportedVersion(v)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `incompatible CNI versions: config is ${JSON.stringify(v)}, plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
    );
  }
  return v;
}

/** Whether the results of this version carry 1.x-only fields (interface mtu, route table, …). */
export function isOneOne(v: string): boolean {
  return compareVersions(v, '1.1.0') >= 0;
}
