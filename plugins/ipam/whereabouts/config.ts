/**
 * whereabouts' IPAM config, accepted unchanged: `range` (CIDR or A-B/len), range_start,
 * range_end, exclude, ipRanges, gateway, routes, dns, addresses, enable_overlapping_ranges,
 * network_name, configuration_path and the flat global file, log_file, log_level, datastore
 * with its Kubernetes and etcd keys (readStoreConfig). Ours: data_dir, etcd_endpoints,
 * etcd_prefix, datastore_timeout_ms.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { invalidConfig } from '../../../src/cni/errors.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { Dns, NetConf, Route } from '../../../src/cni/types.js';
import { isRecord } from '../../../src/cni/types.js';
import type { Owner } from '../../../src/ipam/allocator.js';
import { MAX_NETWORK_NAME, isValidNetworkName } from '../../../src/ipam/documents.js';
import { DEFAULT_DATA_DIR } from '../../../src/ipam/file-store.js';
import type { StoreConfig } from '../../../src/ipam/open-store.js';
import { parseIp, parsePrefix } from '../../../src/ipam/ip.js';
import { type IpRange, RangeConfigError, type RangeSpec, parseRange } from '../../../src/ipam/range.js';
import { optBool, optString, parseDns, parseRoutes } from '../../pkg/validate.js';

/** Where whereabouts looks for its flat file, after configuration_path. */
export const FLAT_FILE_PATHS: readonly string[] = [
  '/etc/kubernetes/cni/net.d/whereabouts.d/whereabouts.conf',
  '/etc/cni/net.d/whereabouts.d/whereabouts.conf',
  '/host/etc/cni/net.d/whereabouts.d/whereabouts.conf',
];

export interface StaticEntry {
  address: string;
  gateway?: string;
}

export interface WhereaboutsConf {
  cniVersion: string;
  ranges: IpRange[];
  gateway: string | undefined;
  routes: Route[];
  dns: Dns | undefined;
  /** static entries, appended after the allocated addresses */
  addresses: StaticEntry[];
  overlapping: boolean;
  networkName: string;
  datastore: StoreConfig['datastore'];
  dataDir: string;
  /** where the pools are: the file store (dataDir), etcd or Kubernetes */
  store: StoreConfig;
  owner: Owner;
  /** warnings to log once a logger is at hand (ignored bounds, unused keys) */
  warnings: string[];
  /** the flat file that filled keys, if one did */
  flatFile: string | undefined;
  /** whether GC got a list of valid attachments (an absent list must not release everything) */
  hasValidAttachments: boolean;
}

export interface LoadOptions {
  /** the flat-file locations after configuration_path (tests pass their own) */
  flatFilePaths?: readonly string[];
}

/** Reads the first flat file that exists; its keys fill only what the config leaves unset. */
function readFlatFile(paths: readonly string[]): { path: string; conf: Record<string, unknown> } | undefined {
  for (const path of paths) {
    if (!existsSync(path)) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw invalidConfig('configuration_path', path, `the flat file does not parse: ${(err as Error).message}`);
    }
    if (!isRecord(parsed)) throw invalidConfig('configuration_path', path, 'the flat file must hold a JSON object');
    // whereabouts' flat file is the IPAM object itself; some put it under "ipam".
    return { path, conf: isRecord(parsed.ipam) ? parsed.ipam : parsed };
  }
  return undefined;
}

function mergeUnset(into: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(from)) {
    const cur = into[k];
    if (cur === undefined || cur === null || cur === '') into[k] = v;
    else if (isRecord(cur) && isRecord(v)) mergeUnset(cur, v);
  }
}

function optIpString(obj: Record<string, unknown>, key: string, path: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw invalidConfig(path, v, 'must be an IP address');
  return v;
}

function stringList(v: unknown, path: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw invalidConfig(path, v, 'must be a list of CIDRs or IP addresses');
  return v;
}

function readRange(obj: Record<string, unknown>, path: string, warn: (m: string) => void): IpRange {
  const range = obj.range;
  if (typeof range !== 'string' || range === '') throw invalidConfig(`${path}range`, range, 'must be a CIDR such as 192.168.1.0/24, or A-B/len');
  const spec: RangeSpec = {
    range,
    range_start: optIpString(obj, 'range_start', `${path}range_start`),
    range_end: optIpString(obj, 'range_end', `${path}range_end`),
    exclude: stringList(obj.exclude, `${path}exclude`),
  };
  try {
    return parseRange(spec, (m) => warn(`${path}${m}`));
  } catch (err) {
    if (err instanceof RangeConfigError) throw invalidConfig(`${path}${err.key}`, err.value, err.why);
    throw err;
  }
}

function checkCidr(value: unknown, path: string): string {
  if (typeof value !== 'string' || !parsePrefix(value)) throw invalidConfig(path, value, 'must be a CIDR such as 10.1.2.3/24');
  return value;
}

function checkIp(value: unknown, path: string): string {
  if (typeof value !== 'string' || !parseIp(value)) throw invalidConfig(path, value, 'must be an IP address');
  return value;
}

/** Default budget of one IPAM operation on a cluster store (whereabouts' RequestTimeout). */
export const DEFAULT_STORE_TIMEOUT_MS = 10_000;

function optFile(ipam: Record<string, unknown>, key: string): string | undefined {
  const v = optString(ipam, key, `ipam.${key}`);
  if (v !== undefined && !isAbsolute(v)) throw invalidConfig(`ipam.${key}`, v, 'must be an absolute path');
  return v;
}

/**
 * `datastore`: "file" (default; data_dir), "kubernetes" (kubernetes.kubeconfig, as whereabouts)
 * or "etcd" (etcd_host, whereabouts' legacy key, a URL or host:port, comma-separated for
 * several; or etcd_endpoints, a list; etcd_username/etcd_password; etcd_ca_cert_file,
 * etcd_cert_file, etcd_key_file for TLS; etcd_prefix). datastore_timeout_ms bounds one
 * operation on a cluster store, retries included.
 */
export function readStoreConfig(ipam: Record<string, unknown>, dataDir: string): StoreConfig {
  const datastore = optString(ipam, 'datastore', 'ipam.datastore') ?? 'file';
  const t = ipam.datastore_timeout_ms;
  if (t !== undefined && (typeof t !== 'number' || !Number.isInteger(t) || t < 100 || t > 300_000)) {
    throw invalidConfig('ipam.datastore_timeout_ms', t, 'must be a whole number of milliseconds from 100 to 300000');
  }
  const timeoutMs = (t as number | undefined) ?? DEFAULT_STORE_TIMEOUT_MS;
  if (datastore === 'file') return { datastore, dataDir };
  if (datastore === 'kubernetes') {
    const k = isRecord(ipam.kubernetes) ? ipam.kubernetes : {};
    const kubeconfig = optString(k, 'kubeconfig', 'ipam.kubernetes.kubeconfig');
    if (!kubeconfig) throw invalidConfig('ipam.kubernetes.kubeconfig', k.kubeconfig, 'is required with datastore "kubernetes": the kubeconfig file (or "in-cluster")');
    return { datastore, kubeconfig, timeoutMs };
  }
  if (datastore === 'etcd') {
    let endpoints: string[] = [];
    if (ipam.etcd_endpoints !== undefined) {
      const e = ipam.etcd_endpoints;
      if (!Array.isArray(e) || e.length === 0 || !e.every((x) => typeof x === 'string' && x !== '')) throw invalidConfig('ipam.etcd_endpoints', e, 'must be a list of URLs such as https://10.0.0.1:2379');
      endpoints = e as string[];
    } else {
      const host = optString(ipam, 'etcd_host', 'ipam.etcd_host');
      if (!host) throw invalidConfig('ipam.etcd_host', ipam.etcd_host, 'is required with datastore "etcd" (or ipam.etcd_endpoints)');
      endpoints = host.split(',').map((h) => h.trim()).filter(Boolean);
    }
    for (const e of endpoints) {
      try {
        const u = new URL(/^[a-z]+:\/\//.test(e) ? e : `http://${e}`);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      } catch {
        throw invalidConfig('ipam.etcd_host', e, 'must be host:port or an http(s):// URL');
      }
    }
    const etcd: StoreConfig & { datastore: 'etcd' } = { datastore, timeoutMs, etcd: { endpoints } };
    const username = optString(ipam, 'etcd_username', 'ipam.etcd_username');
    const password = optString(ipam, 'etcd_password', 'ipam.etcd_password');
    if (username) etcd.etcd.username = username;
    if (password) etcd.etcd.password = password;
    const caFile = optFile(ipam, 'etcd_ca_cert_file');
    const certFile = optFile(ipam, 'etcd_cert_file');
    const keyFile = optFile(ipam, 'etcd_key_file');
    if (!certFile !== !keyFile) throw invalidConfig(certFile ? 'ipam.etcd_key_file' : 'ipam.etcd_cert_file', undefined, 'etcd_cert_file and etcd_key_file go together');
    if (caFile) etcd.etcd.caFile = caFile;
    if (certFile) etcd.etcd.certFile = certFile;
    if (keyFile) etcd.etcd.keyFile = keyFile;
    const prefix = optString(ipam, 'etcd_prefix', 'ipam.etcd_prefix');
    if (prefix !== undefined) {
      if (!prefix.startsWith('/')) throw invalidConfig('ipam.etcd_prefix', prefix, 'must start with /');
      etcd.prefix = prefix;
    }
    return etcd;
  }
  throw invalidConfig('ipam.datastore', datastore, 'must be "file", "kubernetes" or "etcd"');
}

export function loadWhereaboutsConf(raw: NetConf, env: CniEnv, opts: LoadOptions = {}): WhereaboutsConf {
  if (!isRecord(raw.ipam)) throw invalidConfig('ipam', raw.ipam, 'must be an object');
  const ipam: Record<string, unknown> = structuredClone(raw.ipam);
  const warnings: string[] = [];
  const warn = (m: string) => warnings.push(m);

  const confPath = optString(ipam, 'configuration_path', 'ipam.configuration_path');
  const flat = readFlatFile([...(confPath ? [confPath] : []), ...(opts.flatFilePaths ?? FLAT_FILE_PATHS)]);
  if (flat) mergeUnset(ipam, flat.conf);

  const ranges: IpRange[] = [];
  if (ipam.range !== undefined && ipam.range !== null && ipam.range !== '') ranges.push(readRange(ipam, 'ipam.', warn));
  if (ipam.ipRanges !== undefined && ipam.ipRanges !== null) {
    if (!Array.isArray(ipam.ipRanges)) throw invalidConfig('ipam.ipRanges', ipam.ipRanges, 'must be a list of {range, range_start, range_end, exclude}');
    ipam.ipRanges.forEach((r: unknown, i: number) => {
      if (!isRecord(r)) throw invalidConfig(`ipam.ipRanges[${i}]`, r, 'must be an object with range');
      ranges.push(readRange(r, `ipam.ipRanges[${i}].`, warn));
    });
  }
  if (ranges.length === 0) throw invalidConfig('ipam.range', ipam.range, 'is required (or ipam.ipRanges): no range to allocate from');

  const gateway = ipam.gateway === undefined || ipam.gateway === '' ? undefined : checkIp(ipam.gateway, 'ipam.gateway');

  const addresses: StaticEntry[] = [];
  if (ipam.addresses !== undefined && ipam.addresses !== null) {
    if (!Array.isArray(ipam.addresses)) throw invalidConfig('ipam.addresses', ipam.addresses, 'must be a list of {address, gateway}');
    ipam.addresses.forEach((a: unknown, i: number) => {
      if (!isRecord(a)) throw invalidConfig(`ipam.addresses[${i}]`, a, 'must be an object with address');
      const entry: StaticEntry = { address: checkCidr(a.address, `ipam.addresses[${i}].address`) };
      if (a.gateway !== undefined && a.gateway !== '') entry.gateway = checkIp(a.gateway, `ipam.addresses[${i}].gateway`);
      addresses.push(entry);
    });
  }
  const ipArg = env.args.get('IP');
  if (ipArg) for (const item of ipArg.split(',')) addresses.push({ address: checkCidr(item.trim(), 'CNI_ARGS IP') });
  const gwArg = env.args.get('GATEWAY');
  if (gwArg) {
    for (const item of gwArg.split(',')) {
      const gw = parseIp(checkIp(item.trim(), 'CNI_ARGS GATEWAY'))!;
      for (const a of addresses) {
        const p = parsePrefix(a.address)!;
        if (p.family === gw.family && ((gw.value ^ p.network) >> BigInt((p.family === 4 ? 32 : 128) - p.prefix)) === 0n) a.gateway = item.trim();
      }
    }
  }

  const networkName = optString(ipam, 'network_name', 'ipam.network_name') ?? '';
  if (networkName && !isValidNetworkName(networkName)) {
    throw invalidConfig('ipam.network_name', networkName, `must be letters, digits, "-", "_" or ".", starting and ending with a letter or digit (at most ${MAX_NETWORK_NAME})`);
  }

  const dataDir = optString(ipam, 'data_dir', 'ipam.data_dir') ?? DEFAULT_DATA_DIR;
  if (!isAbsolute(dataDir)) throw invalidConfig('ipam.data_dir', dataDir, 'must be an absolute path');
  if (ipam.kubernetes !== undefined && ipam.kubernetes !== null && !isRecord(ipam.kubernetes)) throw invalidConfig('ipam.kubernetes', ipam.kubernetes, 'must be an object');
  const store = readStoreConfig(ipam, dataDir);
  if (ipam.node_slice_size) warn('ipam.node_slice_size is ignored: the file store allocates from the whole range on each node');
  optString(ipam, 'log_file', 'ipam.log_file');
  optString(ipam, 'log_level', 'ipam.log_level');

  const ns = env.args.get('K8S_POD_NAMESPACE') ?? '';
  const pod = env.args.get('K8S_POD_NAME') ?? '';
  const argsCni = isRecord(raw.args) && isRecord(raw.args.cni) ? raw.args.cni : {};

  const routes = parseRoutes(ipam.routes, 'ipam.routes');
  if (argsCni.routes !== undefined) routes.push(...parseRoutes(argsCni.routes, 'args.cni.routes'));

  return {
    cniVersion: raw.cniVersion,
    ranges,
    gateway,
    routes,
    dns: parseDns(ipam.dns, 'ipam.dns'),
    addresses,
    overlapping: optBool(ipam, 'enable_overlapping_ranges', 'ipam.enable_overlapping_ranges') ?? true,
    networkName,
    datastore: store.datastore,
    dataDir,
    store,
    owner: { containerId: env.containerId, podRef: ns || pod ? `${ns}/${pod}` : '', ifName: env.ifName },
    warnings,
    flatFile: flat?.path,
    hasValidAttachments: Array.isArray(raw['cni.dev/valid-attachments']) || Array.isArray(raw['cni.dev/attachments']),
  };
}
