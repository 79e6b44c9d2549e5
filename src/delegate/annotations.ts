/**
 * The pod annotations of the Network Plumbing WG spec, as Multus reads and writes them:
 * `k8s.v1.cni.cncf.io/networks` (which attachments a pod asks for) and
 * `k8s.v1.cni.cncf.io/network-status` (what it got). Pure: no I/O.
 */
import { CniError, ErrorCode } from '../cni/errors.js';
import type { Dns, Result } from '../cni/types.js';
import { isRecord } from '../cni/types.js';

export const NETWORKS_ANNOTATION = 'k8s.v1.cni.cncf.io/networks';
export const NETWORK_STATUS_ANNOTATION = 'k8s.v1.cni.cncf.io/network-status';

/** One entry of the networks annotation, validated. */
export interface NetworkSelection {
  name: string;
  namespace: string;
  /** the interface name asked for (`@ifname` or `interface`) */
  interface?: string;
  ips?: string[];
  mac?: string;
  /** gateways for the pod's default route through this attachment */
  defaultRoute?: string[];
  /** merged into args.cni of every plugin of the attachment */
  cniArgs?: Record<string, unknown>;
  portMappings?: unknown[];
  bandwidth?: Record<string, unknown>;
}

// DNS-1123 label: what Kubernetes allows for namespace and (in practice) NAD names.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MAC = /^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

function isIp(s: string): boolean {
  return IPV4.test(s) || (s.includes(':') && IPV6.test(s) && s.split('::').length <= 2);
}

function isCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const ip = s.slice(0, slash);
  const len = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(len) || !isIp(ip)) return false;
  return Number(len) <= (ip.includes(':') ? 128 : 32);
}

function bad(entry: string, why: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${NETWORKS_ANNOTATION} entry ${entry}: ${why}`);
}

function checkLabel(entry: string, what: string, value: string): void {
  if (value.length > 63 || !DNS1123_LABEL.test(value)) {
    throw bad(entry, `${what} ${JSON.stringify(value)} is not a DNS-1123 label (lower-case alphanumerics and '-', at most 63)`);
  }
}

function checkIfName(entry: string, value: string): void {
  if (value.length === 0 || Buffer.byteLength(value) > 15 || value === '.' || value === '..' || /[/:\s]/.test(value)) {
    throw bad(entry, `interface ${JSON.stringify(value)} is not an interface name (1 to 15 characters without '/', ':' or spaces)`);
  }
}

function stringList(entry: string, key: string, value: unknown, check: (s: string) => boolean, what: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw bad(entry, `${key} must be a list of ${what}s`);
  for (const v of value as string[]) if (!check(v)) throw bad(entry, `${key} ${JSON.stringify(v)} is not a ${what}`);
  return value as string[];
}

/** `[namespace/]name[@ifname]` */
function parseShort(item: string, index: number, podNamespace: string): NetworkSelection {
  const entry = `#${index} ${JSON.stringify(item)}`;
  let rest = item;
  let ifName: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    ifName = rest.slice(at + 1);
    rest = rest.slice(0, at);
    checkIfName(entry, ifName);
  }
  let namespace = podNamespace;
  const parts = rest.split('/');
  if (parts.length > 2) throw bad(entry, 'expected [namespace/]name[@interface]');
  if (parts.length === 2) {
    namespace = parts[0]!;
    checkLabel(entry, 'namespace', namespace);
  }
  const name = parts[parts.length - 1]!;
  checkLabel(entry, 'name', name);
  const sel: NetworkSelection = { name, namespace };
  if (ifName !== undefined) sel.interface = ifName;
  return sel;
}

function parseJsonEntry(raw: unknown, index: number, podNamespace: string): NetworkSelection {
  const entry = `#${index} ${JSON.stringify(raw)}`;
  if (!isRecord(raw)) throw bad(entry, 'must be an object with a name');
  if (typeof raw.name !== 'string') throw bad(entry, 'name must be a string');
  checkLabel(entry, 'name', raw.name);
  let namespace = podNamespace;
  if (raw.namespace !== undefined && raw.namespace !== '') {
    if (typeof raw.namespace !== 'string') throw bad(entry, 'namespace must be a string');
    checkLabel(entry, 'namespace', raw.namespace);
    namespace = raw.namespace;
  }
  const sel: NetworkSelection = { name: raw.name, namespace };
  if (raw.interface !== undefined && raw.interface !== '') {
    if (typeof raw.interface !== 'string') throw bad(entry, 'interface must be a string');
    checkIfName(entry, raw.interface);
    sel.interface = raw.interface;
  }
  if (raw.ips !== undefined) sel.ips = stringList(entry, 'ips', raw.ips, (s) => isCidr(s) || isIp(s), 'IP address');
  if (raw.mac !== undefined && raw.mac !== '') {
    if (typeof raw.mac !== 'string' || !MAC.test(raw.mac)) throw bad(entry, `mac ${JSON.stringify(raw.mac)} is not a MAC address`);
    sel.mac = raw.mac;
  }
  if (raw['default-route'] !== undefined) {
    sel.defaultRoute = stringList(entry, 'default-route', raw['default-route'], isIp, 'gateway IP address');
  }
  if (raw['cni-args'] !== undefined && raw['cni-args'] !== null) {
    if (!isRecord(raw['cni-args'])) throw bad(entry, 'cni-args must be an object');
    sel.cniArgs = raw['cni-args'];
  }
  if (raw.portMappings !== undefined) {
    if (!Array.isArray(raw.portMappings)) throw bad(entry, 'portMappings must be a list');
    sel.portMappings = raw.portMappings;
  }
  if (raw.bandwidth !== undefined) {
    if (!isRecord(raw.bandwidth)) throw bad(entry, 'bandwidth must be an object');
    sel.bandwidth = raw.bandwidth;
  }
  return sel;
}

/**
 * Parses the networks annotation in its short form (`a, ns/b@net5`) or its JSON form (a list
 * of objects). Every entry is validated; the first bad one is code 7 naming it.
 */
export function parseNetworksAnnotation(value: string, podNamespace: string): NetworkSelection[] {
  const text = value.trim();
  if (text === '') return [];
  if (text.startsWith('[') || text.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${NETWORKS_ANNOTATION} ${JSON.stringify(text)}: ${(err as Error).message}`);
    }
    const list = Array.isArray(parsed) ? parsed : [parsed];
    return list.map((raw, i) => parseJsonEntry(raw, i, podNamespace));
  }
  return text.split(',').map((item, i) => {
    const trimmed = item.trim();
    if (trimmed === '') throw bad(`#${i} ""`, 'empty entry');
    return parseShort(trimmed, i, podNamespace);
  });
}

/** One interface in the network-status annotation (the seed's format). */
export interface NetworkStatus {
  name: string;
  interface: string;
  ips: string[];
  mac?: string;
  mtu?: number;
  default?: boolean;
  dns: Dns;
  gateway?: string[];
}

/**
 * The status of one attachment from its chain's result: the interface in the pod named
 * `ifName`, its addresses without prefix length, gateways, DNS. `link` fills what a pre-1.1
 * result cannot carry (mtu) or a plugin left out (mac).
 */
export function networkStatus(
  name: string,
  ifName: string,
  result: Result | undefined,
  opts: { isDefault?: boolean; link?: { mac?: string | undefined; mtu?: number | undefined } } = {},
): NetworkStatus {
  const interfaces = result?.interfaces ?? [];
  let index = interfaces.findIndex((i) => i.name === ifName && i.sandbox);
  if (index < 0) index = interfaces.findIndex((i) => i.name === ifName);
  const itf = index >= 0 ? interfaces[index] : undefined;
  const ipsOf = (result?.ips ?? []).filter((ip) => index < 0 || ip.interface === undefined || ip.interface === index);
  // Key order as in the seed: name, interface, ips, mac, mtu, default, dns, gateway.
  const status: NetworkStatus = { name, interface: ifName, ips: ipsOf.map((ip) => ip.address.split('/')[0]!) } as NetworkStatus;
  const mac = itf?.mac ?? opts.link?.mac;
  if (mac) status.mac = mac;
  const mtu = itf?.mtu ?? opts.link?.mtu;
  if (mtu) status.mtu = mtu;
  if (opts.isDefault) status.default = true;
  status.dns = result?.dns ?? {};
  const gateways = ipsOf.map((ip) => ip.gateway).filter((g): g is string => !!g);
  if (gateways.length > 0) status.gateway = gateways;
  return status;
}
