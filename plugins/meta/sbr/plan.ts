/**
 * What sbr does, computed without touching the kernel: which IPs, which tables, which rules and
 * routes to add, copy and remove, each with its undo. sbr.ts reads the namespace, asks for a
 * plan, and sends the plan's changes as one batch.
 */
import { CniError, ErrorCode, invalidConfig } from '../../../src/cni/errors.js';
import type { IpConfig, Result } from '../../../src/cni/types.js';
import {
  AF_INET,
  AF_INET6,
  RT_TABLE_MAIN,
  type RouteInfo,
  type RouteSpec,
  type RuleInfo,
  type RuleSpec,
  canonicalIp,
  cidrContains,
  familyOf,
  networkOf,
  parseCidr,
} from '../../../src/netlink/index.js';

/** The reference's first table: tables below 100 are left to the administrator. */
export const FIRST_TABLE = 100;
const RT_SCOPE_LINK = 253;
/** Tables the kernel owns: unspec, default, main, local. */
const RESERVED_TABLES = new Set([0, 253, 254, 255]);

export interface Gateways {
  v4?: string;
  v6?: string;
}

/** Reads the `gateways` key: at most one IPv4 and one IPv6 address. */
export function parseGateways(value: unknown): Gateways {
  if (value === undefined || value === null) return {};
  if (!Array.isArray(value)) throw invalidConfig('gateways', value, 'must be a list of at most one IPv4 and one IPv6 address');
  if (value.length > 2) throw invalidConfig('gateways', value, 'may hold at most 2 entries (one IPv4, one IPv6)');
  const out: Gateways = {};
  value.forEach((gw, i) => {
    let family: number;
    try {
      if (typeof gw !== 'string') throw new Error('not a string');
      family = familyOf(gw);
    } catch {
      throw invalidConfig(`gateways[${i}]`, gw, 'must be an IP address');
    }
    const key = family === AF_INET ? 'v4' : 'v6';
    if (out[key] !== undefined) {
      throw invalidConfig(`gateways[${i}]`, gw, `is a second ${key === 'v4' ? 'IPv4' : 'IPv6'} gateway after ${out[key]}`);
    }
    out[key] = gw;
  });
  return out;
}

/**
 * The IPs of `ifName` in a previous result: those whose interface index names it, or that carry
 * no index (or one out of range), as the reference picks them. None is an error.
 */
export function selectIps(prev: Result, ifName: string): IpConfig[] {
  const ips = (prev.ips ?? []).filter((ip) => {
    if (ip.interface === undefined) return true;
    const itf = prev.interfaces?.[ip.interface];
    return itf === undefined || itf.name === ifName;
  });
  if (ips.length === 0) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid prevResult: no IP addresses on interface ${JSON.stringify(ifName)}`);
  }
  return ips;
}

/** Tables referenced by any rule or holding any route. */
export function usedTables(rules: readonly RuleInfo[], routes: readonly RouteInfo[]): Set<number> {
  const used = new Set<number>();
  for (const r of rules) used.add(r.table);
  for (const r of routes) used.add(r.table);
  return used;
}

/** The first table from `from` up that is neither used nor reserved. */
export function nextFreeTable(used: ReadonlySet<number>, from: number): number {
  let t = from;
  while (used.has(t) || RESERVED_TABLES.has(t)) t++;
  return t;
}

/** The rule source for one IP: the address alone, /32 or /128. */
export function ruleSource(ip: IpConfig): string {
  const c = parseCidr(ip.address);
  return `${c.ip}/${c.family === AF_INET ? 32 : 128}`;
}

export type Change =
  | { op: 'addRule'; rule: RuleSpec }
  | { op: 'delRule'; rule: RuleSpec }
  | { op: 'addRoute'; route: RouteSpec }
  | { op: 'replaceRoute'; route: RouteSpec }
  | { op: 'delRoute'; route: RouteSpec };

export interface PlannedChange {
  change: Change;
  /** what puts things back if the ADD fails after this change took */
  undo?: Change;
  /** a failure is logged, not fatal (the reference only warns for these) */
  optional?: boolean;
}

export interface AddInput {
  ips: IpConfig[];
  linkIndex: number;
  /** every rule in the namespace, both families */
  rules: readonly RuleInfo[];
  /** every route in the namespace, every table, both families */
  routes: readonly RouteInfo[];
  gateways: Gateways;
  addSourceHints: boolean;
}

export interface AddPlan {
  /** the table chosen for each IP, in the order of `ips` */
  tables: number[];
  changes: PlannedChange[];
}

/** A kernel route as a spec that can be re-added or deleted, in `table`. */
export function specOf(r: RouteInfo, table = r.table): RouteSpec {
  const spec: RouteSpec = { dst: r.dst, table, scope: r.scope, type: r.type, protocol: r.protocol };
  if (r.gw !== undefined) spec.gw = r.gw;
  if (r.oif !== undefined) spec.oif = r.oif;
  if (r.metric !== undefined) spec.metric = r.metric;
  if (r.src !== undefined) spec.src = r.src;
  if (r.mtu !== undefined) spec.mtu = r.mtu;
  if (r.advmss !== undefined) spec.advmss = r.advmss;
  return spec;
}

/** The link's routes in the main table: what the reference moves into the per-IP tables. */
export function mainRoutesOf(routes: readonly RouteInfo[], linkIndex: number): RouteInfo[] {
  return routes.filter((r) => r.table === RT_TABLE_MAIN && r.oif === linkIndex);
}

/** Whether a main-table route belongs with `ip`: its source or gateway is in the IP's subnet, or it has neither. */
export function routeBelongsTo(r: RouteInfo, ip: IpConfig): boolean {
  return subnetMatcher(ip)(r);
}

/** routeBelongsTo for one IP, its subnet parsed once: it runs for every route of the link. */
function subnetMatcher(ip: IpConfig): (r: RouteInfo) => boolean {
  const subnet = parseCidr(ip.address);
  const cache = new Map<string, boolean>();
  const inSubnet = (addr: string): boolean => {
    let hit = cache.get(addr);
    if (hit === undefined) {
      hit = cidrContains(subnet, addr);
      cache.set(addr, hit);
    }
    return hit;
  };
  return (r) => (r.src === undefined && r.gw === undefined) || (r.src !== undefined && inSubnet(r.src)) || (r.gw !== undefined && inSubnet(r.gw));
}

function defaultDst(family: number): string {
  return family === AF_INET6 ? '::/0' : '0.0.0.0/0';
}

/** The gateway of an IP's table: a configured one of its family wins over the IPAM gateway. */
export function gatewayFor(ip: IpConfig, gateways: Gateways): string | undefined {
  const family = parseCidr(ip.address).family;
  return (family === AF_INET ? gateways.v4 : gateways.v6) ?? ip.gateway;
}

/**
 * The reference's ADD, as one ordered list of changes: per IP a rule, the default route and the
 * copies of the link's main-table routes into the IP's table; then the link's main-table routes
 * removed (or, with addSourceHints, subnet routes re-added with a source hint and only the
 * others removed).
 */
export function planAdd(input: AddInput): AddPlan {
  const used = usedTables(input.rules, input.routes);
  const main = mainRoutesOf(input.routes, input.linkIndex);
  const changes: PlannedChange[] = [];
  const tables: number[] = [];
  let table = nextFreeTable(used, FIRST_TABLE);
  for (const ip of input.ips) {
    tables.push(table);
    const family = parseCidr(ip.address).family;
    const rule: RuleSpec = { family, src: ruleSource(ip), table };
    changes.push({ change: { op: 'addRule', rule }, undo: { op: 'delRule', rule } });
    const gw = gatewayFor(ip, input.gateways);
    if (gw !== undefined) {
      const route: RouteSpec = { dst: defaultDst(family), gw, oif: input.linkIndex, table };
      changes.push({ change: { op: 'addRoute', route }, undo: { op: 'delRoute', route } });
    }
    const belongs = subnetMatcher(ip);
    for (const r of main) {
      if (!belongs(r)) continue;
      // Replace: an IPAM default route lands on the default route added just above.
      const route = specOf(r, table);
      changes.push({ change: { op: 'replaceRoute', route }, undo: { op: 'delRoute', route } });
    }
    used.add(table);
    table = nextFreeTable(used, table + 1);
  }
  if (input.addSourceHints) {
    for (const ip of input.ips) {
      const c = parseCidr(ip.address);
      const subnet = networkOf(c);
      const route: RouteSpec = { dst: subnet, src: c.ip, oif: input.linkIndex, table: RT_TABLE_MAIN, scope: RT_SCOPE_LINK };
      const original = main.find((r) => r.dst === subnet && r.family === c.family);
      changes.push({
        change: { op: 'replaceRoute', route },
        undo: original ? { op: 'replaceRoute', route: specOf(original) } : { op: 'delRoute', route },
        optional: true,
      });
    }
    for (const r of main) {
      if (r.scope === RT_SCOPE_LINK) continue;
      changes.push({ change: { op: 'delRoute', route: specOf(r) }, undo: { op: 'addRoute', route: specOf(r) }, optional: true });
    }
  } else {
    for (const r of main) {
      changes.push({ change: { op: 'delRoute', route: specOf(r) }, undo: { op: 'addRoute', route: specOf(r) } });
    }
  }
  return { tables, changes };
}

/** `table` mode: only a rule per IP into the given table; routes stay where they are. */
export function planAddWithTable(ips: IpConfig[], table: number): AddPlan {
  const changes = ips.map((ip): PlannedChange => {
    const rule: RuleSpec = { family: parseCidr(ip.address).family, src: ruleSource(ip), table };
    return { change: { op: 'addRule', rule }, undo: { op: 'delRule', rule } };
  });
  return { tables: ips.map(() => table), changes };
}

function sameIp(a: string, b: string): boolean {
  try {
    return canonicalIp(a) === canonicalIp(b);
  } catch {
    return false;
  }
}

/** Whether `rule` is one sbr would have made for an address in `addrs` (its source is that address alone). */
function isSourceRuleFor(rule: RuleInfo, addrs: readonly string[]): boolean {
  if (rule.src === undefined || rule.dst !== undefined || rule.iifname || rule.oifname) return false;
  const c = parseCidr(rule.src);
  if (c.prefix !== (c.family === AF_INET ? 32 : 128)) return false;
  return addrs.some((a) => sameIp(parseCidr(a).ip, c.ip));
}

export interface DelInput {
  /** the attachment's addresses (CIDR or bare), from prevResult or the link */
  addresses: string[];
  /** the link's index when it still exists */
  linkIndex: number | undefined;
  rules: readonly RuleInfo[];
  routes: readonly RouteInfo[];
  /** `table` mode: only rules into this table are ours, and no routes */
  table: number | undefined;
}

/**
 * DEL: the source rules of the attachment's addresses, and the routes of the tables those rules
 * point to. A table only our rules use is emptied whole (its routes were all ours, and with
 * the link gone the kernel has already dropped those through it); a table other rules share
 * loses only the routes through our link.
 */
export function planDel(input: DelInput): Change[] {
  const ours = input.rules.filter(
    (r) => isSourceRuleFor(r, input.addresses) && (input.table === undefined || r.table === input.table),
  );
  const changes: Change[] = ours.map((r) => {
    const rule: RuleSpec = { family: r.family, src: r.src!, table: r.table };
    if (r.priority !== undefined) rule.priority = r.priority;
    return { op: 'delRule', rule };
  });
  if (input.table !== undefined) return changes;
  const tables = new Set(ours.map((r) => r.table).filter((t) => !RESERVED_TABLES.has(t)));
  for (const table of tables) {
    const shared = input.rules.some((r) => r.table === table && !ours.includes(r));
    for (const r of input.routes) {
      if (r.table !== table) continue;
      if (shared && (input.linkIndex === undefined || r.oif !== input.linkIndex)) continue;
      changes.push({ op: 'delRoute', route: specOf(r) });
    }
  }
  return changes;
}

export interface CheckInput {
  ips: IpConfig[];
  linkIndex: number;
  linkName: string;
  rules: readonly RuleInfo[];
  routes: readonly RouteInfo[];
  gateways: Gateways;
  table: number | undefined;
}

/**
 * CHECK: every IP has its source rule; without `table`, the rule's table holds the default
 * route via the gateway and the IP's subnet route on the link. Returns what is missing.
 */
export function checkState(input: CheckInput): string[] {
  const problems: string[] = [];
  const seen = new Set<number>();
  for (const ip of input.ips) {
    const src = ruleSource(ip);
    const rules = input.rules.filter((r) => isSourceRuleFor(r, [ip.address]) && (input.table === undefined || r.table === input.table));
    if (rules.length === 0) {
      problems.push(`rule from ${src} lookup ${input.table ?? '<table>'} is missing`);
      continue;
    }
    if (input.table !== undefined) continue;
    const table = rules[0]!.table;
    if (seen.has(table)) problems.push(`rule from ${src} shares table ${table} with another address of ${input.linkName}`);
    seen.add(table);
    const c = parseCidr(ip.address);
    const inTable = input.routes.filter((r) => r.table === table && r.family === c.family);
    const gw = gatewayFor(ip, input.gateways);
    if (gw !== undefined) {
      const def = defaultDst(c.family);
      const ok = inTable.some((r) => r.dst === def && r.gw !== undefined && sameIp(r.gw, gw) && r.oif === input.linkIndex);
      if (!ok) problems.push(`route ${def} via ${gw} dev ${input.linkName} table ${table} is missing`);
    }
    // A /32 or /128 address gets no subnet route from the kernel: nothing was copied.
    if (c.prefix === (c.family === AF_INET ? 32 : 128)) continue;
    const subnet = networkOf(c);
    const canonical = (cidr: string): string => {
      const p = parseCidr(cidr);
      return `${canonicalIp(p.ip)}/${p.prefix}`;
    };
    if (!inTable.some((r) => canonical(r.dst) === canonical(subnet) && r.oif === input.linkIndex)) {
      problems.push(`route ${subnet} dev ${input.linkName} table ${table} is missing`);
    }
  }
  return problems;
}
