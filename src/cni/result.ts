/**
 * Converting results between the internal 1.x shape and what each spec version prints, and
 * parsing a prevResult written in the config's version.
 */
import { CniError, ErrorCode } from './errors.js';
import type { Interface, IpConfig, Result, Route } from './types.js';
import { isRecord } from './types.js';
import { compareVersions } from './version.js';

const ONE_ONE_INTERFACE_FIELDS = ['mtu', 'socketPath', 'pciID'] as const;
const ONE_ONE_ROUTE_FIELDS = ['mtu', 'advmss', 'priority', 'table', 'scope'] as const;

function ipFamily(cidr: string): '4' | '6' {
  return cidr.includes(':') ? '6' : '4';
}

/** Renders a result for a config of `version`: the JSON object the plugin prints. */
export function formatResult(result: Result, version: string): Record<string, unknown> {
  const oneOne = compareVersions(version, '1.1.0') >= 0;
  const legacy = compareVersions(version, '1.0.0') < 0;
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces?.length) {
    out.interfaces = result.interfaces.map((itf) => {
      const copy: Record<string, unknown> = { ...itf };
      if (!oneOne) for (const f of ONE_ONE_INTERFACE_FIELDS) delete copy[f];
      return copy;
    });
  }
  if (result.ips?.length) {
    out.ips = result.ips.map((ip) => {
      const copy: Record<string, unknown> = legacy ? { version: ipFamily(ip.address), ...ip } : { ...ip };
      return copy;
    });
  }
  if (result.routes?.length) {
    out.routes = result.routes.map((r) => {
      const copy: Record<string, unknown> = { ...r };
      if (!oneOne) for (const f of ONE_ONE_ROUTE_FIELDS) delete copy[f];
      return copy;
    });
  }
  out.dns = result.dns ?? {};
  return out;
}

function decodeError(what: string, value: unknown): CniError {
  return new CniError(ErrorCode.DecodeFailure, `failed to decode prevResult: ${what} ${JSON.stringify(value)}`);
}

/**
 * Parses a result (a prevResult, or a delegate's stdout) written in `version` into the
 * internal 1.x shape. 0.3.x/0.4.0 results carry an ip "version" field, which is dropped.
 */
export function parseResult(raw: unknown, version: string): Result {
  if (!isRecord(raw)) throw decodeError('expected an object, got', raw);
  const result: Result = { cniVersion: typeof raw.cniVersion === 'string' ? raw.cniVersion : version };
  if (raw.interfaces !== undefined) {
    if (!Array.isArray(raw.interfaces)) throw decodeError('interfaces is not a list:', raw.interfaces);
    result.interfaces = raw.interfaces.map((itf): Interface => {
      if (!isRecord(itf) || typeof itf.name !== 'string') throw decodeError('interface without a name:', itf);
      return { ...(itf as unknown as Interface) };
    });
  }
  if (raw.ips !== undefined) {
    if (!Array.isArray(raw.ips)) throw decodeError('ips is not a list:', raw.ips);
    result.ips = raw.ips.map((ip): IpConfig => {
      if (!isRecord(ip) || typeof ip.address !== 'string') throw decodeError('ip without an address:', ip);
      const { version: _family, ...rest } = ip;
      return rest as unknown as IpConfig;
    });
  }
  if (raw.routes !== undefined) {
    if (!Array.isArray(raw.routes)) throw decodeError('routes is not a list:', raw.routes);
    result.routes = raw.routes.map((r): Route => {
      if (!isRecord(r) || typeof r.dst !== 'string') throw decodeError('route without a dst:', r);
      return { ...(r as unknown as Route) };
    });
  }
  if (isRecord(raw.dns)) result.dns = { ...raw.dns };
  return result;
}

/** An empty result, as an L2-only or IPAM-less plugin returns. */
export function emptyResult(cniVersion: string): Result {
  return { cniVersion };
}
