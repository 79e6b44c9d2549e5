/**
 * Network state snapshots of a netns, from iproute2's JSON output, and a
 * normaliser that removes what the kernel picks at random (ifindexes, MACs,
 * EUI-64 link-locals, counters, timers, lifetimes) so two snapshots taken
 * from different runs (say multinic's macvlan vs the reference macvlan, or
 * before ADD vs after DEL) can be compared with toEqual.
 */
import { netnsName, type NetnsRef } from './netns.js';
import { runOk } from './exec.js';

/** One object of `ip -j` output; fields as iproute2 names them. */
export type IpObject = Record<string, any>;

export interface NetSnapshot {
  /** `ip -j -d link show` */
  links: IpObject[];
  /** `ip -j addr show` (both families) */
  addrs: IpObject[];
  /** `ip -j -4 route show table all` */
  routes4: IpObject[];
  /** `ip -j -6 route show table all` */
  routes6: IpObject[];
  /** `ip -j -4 rule show` */
  rules4: IpObject[];
  /** `ip -j -6 rule show` */
  rules6: IpObject[];
}

async function ipJson(ns: NetnsRef, args: string[]): Promise<IpObject[]> {
  const out = await runOk(['ip', '-n', netnsName(ns), '-j', ...args]);
  return out.trim() === '' ? [] : (JSON.parse(out) as IpObject[]);
}

export const links = (ns: NetnsRef): Promise<IpObject[]> => ipJson(ns, ['-d', 'link', 'show']);
export const addrs = (ns: NetnsRef): Promise<IpObject[]> => ipJson(ns, ['addr', 'show']);
/** Every table. The family is explicit: without -4 iproute2 also lists IPv6 routes. */
export const routes = (ns: NetnsRef, family: 4 | 6 = 4): Promise<IpObject[]> =>
  ipJson(ns, [`-${family}`, 'route', 'show', 'table', 'all']);
export const rules = (ns: NetnsRef, family: 4 | 6 = 4): Promise<IpObject[]> =>
  ipJson(ns, [`-${family}`, 'rule', 'show']);

/** Everything at once, raw. */
export async function snapshot(ns: NetnsRef): Promise<NetSnapshot> {
  const [l, a, r4, r6, u4, u6] = await Promise.all([
    links(ns),
    addrs(ns),
    routes(ns, 4),
    routes(ns, 6),
    rules(ns, 4),
    rules(ns, 6),
  ]);
  return { links: l, addrs: a, routes4: r4, routes6: r6, rules4: u4, rules6: u6 };
}

// ---------------------------------------------------------------------------
// Queries on a snapshot (raw or normalised)

export function findLink(snap: Pick<NetSnapshot, 'links'>, ifname: string): IpObject | undefined {
  return snap.links.find((l) => l.ifname === ifname);
}

export interface AddrFilter {
  family?: 4 | 6;
  /** Kernel scope name: 'global', 'link', 'host'. */
  scope?: string;
}

/** CIDRs ('192.0.2.2/24') on an interface, in kernel order. */
export function addressesOf(snap: Pick<NetSnapshot, 'addrs'>, ifname: string, filter: AddrFilter = {}): string[] {
  const link = snap.addrs.find((a) => a.ifname === ifname);
  if (!link) return [];
  const family = filter.family === undefined ? undefined : filter.family === 4 ? 'inet' : 'inet6';
  return (link.addr_info as IpObject[])
    .filter((i) => (family === undefined || i.family === family) && (filter.scope === undefined || i.scope === filter.scope))
    .map((i) => `${i.local}/${i.prefixlen}`);
}

/** Routes of one table ('main', 'local' or a number as a string); main is listed without a table field. */
export function routesInTable(rs: readonly IpObject[], table: string | number = 'main'): IpObject[] {
  const want = String(table);
  return rs.filter((r) => String(r.table ?? 'main') === want);
}

// ---------------------------------------------------------------------------
// Normalisation

export interface NormalizeOptions {
  /** Keep MAC addresses as they are (for tests that set a MAC). Default false. */
  keepMacs?: boolean;
  /** Drop these interfaces from links and addrs (e.g. 'lo'). */
  dropIfnames?: readonly string[];
}

/** Fields that differ between otherwise identical setups and say nothing about the config. */
const VOLATILE_KEYS = new Set([
  'ifindex',
  'link_index', // the peer's ifindex
  'link_netnsid', // depends on the order netns ids were assigned
  'stats',
  'stats64',
  'valid_life_time',
  'preferred_life_time',
  'tentative', // DAD in progress: a matter of timing
  'expires',
  'used', // neighbour/route cache ages
  'updated',
  'confirmed',
]);

const MAC_RE = /([0-9a-f]{2}:){5}[0-9a-f]{2}/gi;
const FIXED_MACS = new Set(['00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff']);
/** A link-local IPv6 address whose interface id is EUI-64, i.e. derived from a random MAC. */
const EUI64_LL_RE = /^fe80::(?:[0-9a-f]{1,4}:)?[0-9a-f]{0,2}ff:fe[0-9a-f]{2}:[0-9a-f]{1,4}$/i;
/** `ip` prints a peer in another netns as "if<ifindex>". */
const IFINDEX_NAME_RE = /^if\d+$/;

function normValue(key: string, v: unknown, o: NormalizeOptions): unknown {
  if (Array.isArray(v)) return v.map((x) => normValue(key, x, o));
  if (v !== null && typeof v === 'object') return normObject(v as IpObject, o);
  if (typeof v !== 'string') return v;
  if (EUI64_LL_RE.test(v)) return 'fe80::<eui64>';
  if (key === 'link' && IFINDEX_NAME_RE.test(v)) return 'if<n>';
  // Also catches MACs inside bridge ids ("8000.aa:bb:…").
  if (!o.keepMacs) return v.replace(MAC_RE, (m) => (FIXED_MACS.has(m.toLowerCase()) ? m : '<mac>'));
  return v;
}

function normObject(obj: IpObject, o: NormalizeOptions): IpObject {
  const out: IpObject = {};
  for (const [k, v] of Object.entries(obj)) {
    // Bridge/port timers (hello_timer, gc_timer, …) tick continuously.
    if (VOLATILE_KEYS.has(k) || k.endsWith('_timer')) continue;
    out[k] = normValue(k, v, o);
  }
  return out;
}

const byJson = (a: unknown, b: unknown): number => {
  const x = JSON.stringify(a);
  const y = JSON.stringify(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * A copy of the snapshot without kernel-random fields, with lists in a
 * canonical order (links/addrs by name, routes by content, rules by
 * priority then content), so equal configurations compare equal.
 */
export function normalize(snap: NetSnapshot, opts: NormalizeOptions = {}): NetSnapshot {
  const drop = new Set(opts.dropIfnames ?? []);
  const byName = (a: IpObject, b: IpObject): number => String(a.ifname).localeCompare(String(b.ifname));
  const ifaces = (xs: IpObject[]): IpObject[] =>
    xs
      .filter((x) => !drop.has(x.ifname))
      .map((x) => normObject(x, opts))
      .sort(byName);
  const plain = (xs: IpObject[]): IpObject[] => xs.map((x) => normObject(x, opts)).sort(byJson);
  const ruled = (xs: IpObject[]): IpObject[] =>
    xs.map((x) => normObject(x, opts)).sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0) || byJson(a, b));
  return {
    links: ifaces(snap.links),
    addrs: ifaces(snap.addrs).map((a) => ({
      ...a,
      addr_info: [...((a.addr_info as IpObject[] | undefined) ?? [])].sort(byJson),
    })),
    routes4: plain(snap.routes4),
    routes6: plain(snap.routes6),
    rules4: ruled(snap.rules4),
    rules6: ruled(snap.rules6),
  };
}

/** snapshot() then normalize(). */
export async function normalizedSnapshot(ns: NetnsRef, opts?: NormalizeOptions): Promise<NetSnapshot> {
  return normalize(await snapshot(ns), opts);
}
