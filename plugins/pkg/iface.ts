/**
 * What every interface plugin does once its link exists in the container: bring it up, apply
 * the IPAM result (addresses, then routes, each as one batch), and the CHECK of the same.
 */
import { randomBytes } from 'node:crypto';
import { CniError, ErrorCode } from '../../src/cni/errors.js';
import type { IpConfig, Result, Route } from '../../src/cni/types.js';
import {
  AF_INET,
  AF_INET6,
  type LinkInfo,
  NetlinkError,
  NetlinkHandle,
  RT_TABLE_MAIN,
  type RouteSpec,
  canonicalCidr,
  canonicalIp,
  familyOf,
  isNotFound,
  parseCidr,
  setSysctls,
} from '../../src/netlink/index.js';

/** A unique temporary name: links are created under it and renamed, so names never collide. */
export function tempLinkName(): string {
  return `mn${randomBytes(5).toString('hex')}`;
}

/** The IPs of a result that belong to interface `index` (or carry no interface). */
export function ipsOfInterface(result: Result, index: number): IpConfig[] {
  return (result.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === index);
}

/** The route the kernel gets for a result route: a missing gw defaults to the family's IP gateway. */
export function routeSpecs(ips: IpConfig[], routes: Route[], oif: number): RouteSpec[] {
  const gwByFamily = new Map<number, string>();
  for (const ip of ips) if (ip.gateway && !gwByFamily.has(familyOf(ip.gateway))) gwByFamily.set(familyOf(ip.gateway), ip.gateway);
  return routes.map((r) => {
    const spec: RouteSpec = { dst: r.dst, oif };
    const gw = r.gw ?? gwByFamily.get(parseCidr(r.dst).family);
    if (gw) spec.gw = gw;
    if (r.mtu) spec.mtu = r.mtu;
    if (r.advmss) spec.advmss = r.advmss;
    if (r.priority !== undefined) spec.metric = r.priority;
    if (r.table !== undefined) spec.table = r.table;
    if (r.scope !== undefined) spec.scope = r.scope;
    return spec;
  });
}

/**
 * Applies `ips` and `routes` to the link `link` in the container (socket `nl`, namespace fd
 * `netnsFd`). The link is brought up first; IPv6 is enabled when a v6 address is present.
 */
export async function configureInterface(
  nl: NetlinkHandle,
  netnsFd: number,
  link: LinkInfo,
  ips: IpConfig[],
  routes: Route[],
): Promise<void> {
  if (ips.some((ip) => parseCidr(ip.address).family === AF_INET6)) {
    // Runtimes may create the netns with IPv6 disabled; the reference plugins enable it too.
    setSysctls(netnsFd, { [`net.ipv6.conf.${link.name}.disable_ipv6`]: '0' });
  }
  const specs = routeSpecs(ips, routes, link.index);
  // Before any change: a bad route list fails the ADD with nothing to undo.
  checkRouteList(specs, link.name);
  await nl.setLinkUp(link.index);
  // Addresses before routes: a route's gateway must be reachable through an address.
  await nl.batch(ips.map((ip) => () => nl.addAddress(link.index, ip.address)));
  const settled = await nl.batchSettled(specs.map((r) => () => nl.addRoute(r)));
  const i = settled.findIndex((o) => o.status === 'rejected');
  if (i >= 0) {
    const err = (settled[i] as PromiseRejectedResult).reason as unknown;
    if (err instanceof NetlinkError && err.isExists) {
      throw new CniError(
        ErrorCode.Internal,
        `route ${describeRoute(specs[i]!, link.name)} (routes[${i}]) conflicts with a route already in table ${tableName(specs[i]!.table)} of the pod (EEXIST)`,
      );
    }
    throw err;
  }
}

function tableName(table: number | undefined): string {
  return table === undefined || table === RT_TABLE_MAIN ? 'main' : String(table);
}

/** A route as `ip route` prints it, with the interface by name. */
export function describeRoute(r: RouteSpec, dev: string): string {
  const parts = [r.dst];
  if (r.gw) parts.push(`via ${r.gw}`);
  parts.push(`dev ${dev}`);
  if (r.table !== undefined && r.table !== RT_TABLE_MAIN) parts.push(`table ${r.table}`);
  if (r.metric !== undefined) parts.push(`metric ${r.metric}`);
  return parts.join(' ');
}

/**
 * Two routes of one result for the same destination, table and metric cannot both be
 * installed: the kernel keeps one route per key. The error names both, and says whether they
 * are the same route twice or two different ones.
 */
export function checkRouteList(specs: readonly RouteSpec[], dev: string): void {
  const seen = new Map<string, number>();
  specs.forEach((r, i) => {
    const key = `${canonicalCidr(r.dst)} ${r.table ?? RT_TABLE_MAIN} ${r.metric ?? ''}`;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, i);
      return;
    }
    const a = specs[first]!;
    const sameGw = (a.gw === undefined) === (r.gw === undefined) && (a.gw === undefined || canonicalIp(a.gw) === canonicalIp(r.gw!));
    const same = sameGw && a.scope === r.scope && a.mtu === r.mtu && a.advmss === r.advmss;
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      same
        ? `invalid routes: duplicate route ${describeRoute(r, dev)} (routes[${first}] and routes[${i}])`
        : `invalid routes: conflicting routes[${first}] ${describeRoute(a, dev)} and routes[${i}] ${describeRoute(r, dev)}: same destination, table and metric`,
    );
  });
}

/** The interface with the IPv4 default route (else IPv6): a plugin's default master. */
export async function defaultRouteInterface(nl: NetlinkHandle): Promise<LinkInfo | undefined> {
  for (const family of [AF_INET, AF_INET6]) {
    const routes = await nl.listRoutes({ family, table: 254 });
    const def = routes.find((r) => (r.dst === '0.0.0.0/0' || r.dst === '::/0') && r.oif !== undefined);
    if (def) return nl.getLinkByIndex(def.oif!);
  }
  return undefined;
}

/**
 * Deletes link `index` in the namespace at `netnsPath`, on a socket of its own: undo steps run
 * after the plugin's own sockets are closed. A link or namespace already gone is success.
 */
export async function deleteLinkInNetns(netnsPath: string, index: number): Promise<void> {
  let nl: NetlinkHandle;
  try {
    nl = NetlinkHandle.inNetnsPath(netnsPath);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  try {
    await nl.deleteLink(index);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  } finally {
    nl.close();
  }
}
