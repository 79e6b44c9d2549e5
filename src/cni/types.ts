/**
 * The CNI data model, held internally in the 1.x shape. Older versions are converted at the
 * edges (src/cni/result.ts): parsed in, printed out.
 */

export type Command = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface Interface {
  name: string;
  mac?: string;
  /** 1.1.0 only */
  mtu?: number;
  sandbox?: string;
  /** 1.1.0 only */
  socketPath?: string;
  /** 1.1.0 only */
  pciID?: string;
}

export interface IpConfig {
  /** CIDR notation: the address with its prefix length, e.g. 10.1.2.3/24 */
  address: string;
  gateway?: string;
  /** index into Result.interfaces */
  interface?: number;
}

export interface Route {
  dst: string;
  gw?: string;
  /** 1.1.0 only, as are advmss, priority, table and scope */
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IpConfig[];
  routes?: Route[];
  dns?: Dns;
}

export interface IpamConf {
  type: string;
  [key: string]: unknown;
}

/** A single network config as a plugin receives it on stdin. */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  capabilities?: Record<string, boolean>;
  ipam?: IpamConf;
  dns?: Dns;
  args?: { cni?: Record<string, unknown>; [key: string]: unknown };
  runtimeConfig?: Record<string, unknown>;
  /** raw as received; the skeleton parses it into NetConf.parsedPrevResult */
  prevResult?: unknown;
  [key: string]: unknown;
}

/** A network configuration list (conflist). */
export interface NetConfList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  disableGC?: boolean;
  plugins: Array<Omit<NetConf, 'name' | 'cniVersion'> & { type: string }>;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
