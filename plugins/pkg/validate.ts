/** Config readers shared by the plugins: each names the key and the bad value on failure. */
import { invalidConfig } from '../../src/cni/errors.js';
import type { Dns, Route } from '../../src/cni/types.js';
import { isRecord } from '../../src/cni/types.js';
import { familyOf, parseCidr } from '../../src/netlink/ip.js';

export function optString(obj: Record<string, unknown>, key: string, path = key): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw invalidConfig(path, v, 'must be a string');
  return v;
}

export function optBool(obj: Record<string, unknown>, key: string, path = key): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalidConfig(path, v, 'must be true or false');
  return v;
}

export function optInt(obj: Record<string, unknown>, key: string, min: number, max: number, path = key): number | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidConfig(path, v, `must be an integer from ${min} to ${max}`);
  }
  return v;
}

export function requireCidr(value: unknown, path: string): string {
  if (typeof value !== 'string') throw invalidConfig(path, value, 'must be a CIDR such as 10.1.2.3/24');
  try {
    parseCidr(value);
  } catch {
    throw invalidConfig(path, value, 'must be a CIDR such as 10.1.2.3/24');
  }
  if (!value.includes('/')) throw invalidConfig(path, value, 'must be a CIDR with a prefix length');
  return value;
}

export function requireIp(value: unknown, path: string): string {
  if (typeof value !== 'string') throw invalidConfig(path, value, 'must be an IP address');
  try {
    familyOf(value);
  } catch {
    throw invalidConfig(path, value, 'must be an IP address');
  }
  return value;
}

/** A route list as IPAM configs and results write it (dst, gw, and the 1.1 fields). */
export function parseRoutes(value: unknown, path: string): Route[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalidConfig(path, value, 'must be a list of routes');
  return value.map((r, i) => {
    const where = `${path}[${i}]`;
    if (!isRecord(r)) throw invalidConfig(where, r, 'must be an object with dst');
    const route: Route = { dst: requireCidr(r.dst, `${where}.dst`) };
    if (r.gw !== undefined) {
      route.gw = requireIp(r.gw, `${where}.gw`);
      if (familyOf(route.gw) !== parseCidr(route.dst).family) throw invalidConfig(`${where}.gw`, r.gw, `is not of the family of dst ${route.dst}`);
    }
    const mtu = optInt(r, 'mtu', 68, 65535, `${where}.mtu`);
    if (mtu !== undefined) route.mtu = mtu;
    const advmss = optInt(r, 'advmss', 1, 65535, `${where}.advmss`);
    if (advmss !== undefined) route.advmss = advmss;
    const priority = optInt(r, 'priority', 0, 0xffffffff, `${where}.priority`);
    if (priority !== undefined) route.priority = priority;
    const table = optInt(r, 'table', 1, 0xffffffff, `${where}.table`);
    if (table !== undefined) route.table = table;
    const scope = optInt(r, 'scope', 0, 255, `${where}.scope`);
    if (scope !== undefined) route.scope = scope;
    return route;
  });
}

export function parseDns(value: unknown, path: string): Dns | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isRecord(value)) throw invalidConfig(path, value, 'must be an object');
  const dns: Dns = {};
  for (const key of ['nameservers', 'search', 'options'] as const) {
    const v = value[key];
    if (v === undefined) continue;
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw invalidConfig(`${path}.${key}`, v, 'must be a list of strings');
    dns[key] = v;
  }
  if (value.domain !== undefined) {
    if (typeof value.domain !== 'string') throw invalidConfig(`${path}.domain`, value.domain, 'must be a string');
    dns.domain = value.domain;
  }
  return dns;
}
