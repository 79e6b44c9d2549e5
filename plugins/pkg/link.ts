/**
 * The life of an interface plugin's link, shared by macvlan, ipvlan and bridge: the sockets of
 * one invocation, the master, creation under a temporary name in the pod and the rename, IPAM
 * with its undo, DAD, the DEL that tolerates everything being gone, and a CHECK that lists
 * every mismatch instead of the first.
 */
import { closeSync } from 'node:fs';
import { CniError, ErrorCode, invalidConfig } from '../../src/cni/errors.js';
import type { PluginContext } from '../../src/cni/plugin.js';
import type { IpConfig, NetConf, Result, Route } from '../../src/cni/types.js';
import {
  AF_INET6,
  type LinkInfo,
  type LinkSpec,
  NetlinkError,
  NetlinkHandle,
  canonicalCidr,
  canonicalIp,
  isNotFound,
  openNetns,
  parseCidr,
  setSysctls,
} from '../../src/netlink/index.js';
import { configureInterface, defaultRouteInterface, deleteLinkInNetns, routeSpecs, tempLinkName } from './iface.js';

/**
 * Test hook: `MULTINIC_TEST_FAIL_STEP=<step>` makes that ADD step throw after the steps before
 * it took effect. Only for steps no configuration can make fail for real (the rename of a
 * link whose name was checked free, a sysctl of a link we just made); the integration tests
 * use it to prove the rollback. Unset in production, it costs one property read.
 */
export function failpoint(step: string): void {
  if (process.env.MULTINIC_TEST_FAIL_STEP === step) {
    throw new CniError(ErrorCode.Internal, `injected failure at step ${step} (MULTINIC_TEST_FAIL_STEP)`);
  }
}

/** The sockets one invocation needs: the pod's and the namespace its master lives in. */
export interface Namespaces {
  podFd: number;
  pod: NetlinkHandle;
  /** where the master lives: the node, or the pod when linkInContainer */
  masterNs: NetlinkHandle;
  close(): void;
}

export function openNamespaces(netns: string, masterInPod: boolean): Namespaces {
  const podFd = openNetns(netns);
  let pod: NetlinkHandle;
  try {
    pod = NetlinkHandle.inNetnsFd(podFd, netns);
  } catch (err) {
    closeSync(podFd);
    throw err;
  }
  const masterNs = masterInPod ? pod : NetlinkHandle.host();
  return {
    podFd,
    pod,
    masterNs,
    close() {
      pod.close();
      if (masterNs !== pod) masterNs.close();
      closeSync(podFd);
    },
  };
}

/** The master by name, or the default-route interface when `name` is unset. Code 7 when absent. */
export async function findMaster(ns: NetlinkHandle, name: string | undefined, inPod: boolean): Promise<LinkInfo> {
  if (name) {
    const link = await ns.getLink(name);
    if (!link) throw invalidConfig('master', name, `no such interface${inPod ? ' in the container' : ' on the node'}`);
    return link;
  }
  const link = await defaultRouteInterface(ns);
  if (!link) throw invalidConfig('master', name, 'not set, and no interface holds a default route');
  return link;
}

export function checkMtuFitsMaster(mtu: number, master: LinkInfo): void {
  if (mtu > master.mtu) throw invalidConfig('mtu', mtu, `is above the MTU ${master.mtu} of master ${master.name}`);
}

export async function requireIfNameFree(pod: NetlinkHandle, ifName: string): Promise<void> {
  if (await pod.getLink(ifName)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `invalid CNI_IFNAME ${JSON.stringify(ifName)}: the container already has an interface of that name`,
    );
  }
}

/**
 * Creates `spec` (without its name) under a temporary name directly in the pod, registers its
 * deletion, and renames it to `ifName`. `createIn` is the socket that issues the request (the
 * master's namespace); `spec.netnsFd` moves it into the pod at birth when that is another one.
 */
export async function createInPod(
  ctx: PluginContext,
  ns: Namespaces,
  createIn: NetlinkHandle,
  spec: Omit<LinkSpec, 'name'>,
  ifName: string,
): Promise<LinkInfo> {
  const netns = ctx.env.netns!;
  const temp = tempLinkName();
  await createIn.createLink({ ...spec, name: temp });
  const link = await ns.pod.requireLink(temp);
  ctx.rollback.push(`delete ${spec.kind.kind} ${temp} (#${link.index})`, () => deleteLinkInNetns(netns, link.index));
  failpoint('rename');
  await ns.pod.renameLink(link.index, ifName);
  return { ...link, name: ifName };
}

/** Announces the link's MAC on up and on address changes (arp_notify, ndisc_notify), as the reference does. */
export function announceOnChange(podFd: number, ifName: string): void {
  failpoint('sysctl');
  setSysctls(podFd, { [`net.ipv4.conf.${ifName}.arp_notify`]: '1' });
  try {
    setSysctls(podFd, { [`net.ipv6.conf.${ifName}.ndisc_notify`]: '1' });
  } catch (err) {
    // A kernel without IPv6 has no such key; nothing to announce there.
    if (!(err instanceof NetlinkError && err.code === 'ENOENT')) throw err;
  }
}

/**
 * Runs the IPAM of `raw` and registers its release first, so an IPAM that fails half-way is
 * released too (DEL of an allocation that never happened is a no-op for every IPAM).
 */
export async function runIpam(raw: NetConf, ctx: PluginContext): Promise<Result> {
  ctx.rollback.push('release IPAM', () => ctx.ipam.del(raw));
  failpoint('ipam');
  const ipam = await ctx.ipam.add(raw);
  if (!ipam.ips?.length) throw new CniError(ErrorCode.Internal, 'IPAM plugin returned missing IP config');
  return ipam;
}

/** Applies addresses and routes to `link` in the pod (they go with the link on undo), then waits for IPv6 DAD. */
export async function addressLink(ns: Namespaces, link: LinkInfo, ips: IpConfig[], routes: Route[]): Promise<void> {
  await configureInterface(ns.pod, ns.podFd, link, ips, routes);
  if (ips.some((ip) => parseCidr(ip.address).family === AF_INET6)) await waitForDad(ns.pod, link);
}

/** Waits until no address of `link` is tentative: a pod must not start with addresses it cannot use. */
export async function waitForDad(nl: NetlinkHandle, link: LinkInfo, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const addrs = await nl.listAddresses(link.index, AF_INET6);
    const dadFailed = addrs.find((a) => a.flags.dadfailed);
    if (dadFailed) throw new CniError(ErrorCode.Internal, `address ${dadFailed.address} on ${link.name} failed duplicate address detection`);
    const tentative = addrs.filter((a) => a.flags.tentative);
    if (tentative.length === 0) return;
    if (Date.now() > deadline) {
      throw new CniError(ErrorCode.Internal, `address ${tentative[0]!.address} on ${link.name} still tentative after ${timeoutMs} ms of DAD`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A socket in the pod for DEL, or undefined when the namespace is gone (or is no namespace any more). */
export function podHandleForDel(netns: string | undefined): NetlinkHandle | undefined {
  if (!netns) return undefined;
  try {
    return NetlinkHandle.inNetnsPath(netns);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    // A stale path that is no longer a namespace mount: the namespace, and the link, are gone.
    if (err instanceof NetlinkError && err.code === 'EINVAL' && err.operation === 'enter network namespace') return undefined;
    throw err;
  }
}

/** DEL of a link plugin: release IPAM first (it must happen even when the link is gone), then the link. */
export async function deleteIpamAndLink(raw: NetConf, hasIpam: boolean, ctx: PluginContext): Promise<void> {
  if (hasIpam) await ctx.ipam.del(raw);
  const pod = podHandleForDel(ctx.env.netns);
  if (!pod) return;
  try {
    await pod.deleteLinkByName(ctx.env.ifName);
  } finally {
    pod.close();
  }
}

/** The interface `ifName` in `netns` in prevResult, with its index; code 7 when CHECK cannot work. */
export function prevInterface(ctx: PluginContext): { prev: Result; index: number } {
  const prev = ctx.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, 'invalid prevResult undefined: CHECK needs the result of ADD');
  const { ifName, netns } = ctx.env;
  const index = (prev.interfaces ?? []).findIndex((i) => i.name === ifName && i.sandbox === netns);
  if (index < 0) throw new CniError(ErrorCode.Internal, `prevResult has no interface ${ifName} in ${netns}`);
  return { prev, index };
}

/** Mismatches of addresses and routes against what the result promised for `link`. */
export async function addressMismatches(nl: NetlinkHandle, link: LinkInfo, ips: IpConfig[], routes: Route[]): Promise<string[]> {
  const out: string[] = [];
  const present = new Set((await nl.listAddresses(link.index)).map((a) => canonicalCidr(a.address)));
  for (const ip of ips) if (!present.has(canonicalCidr(ip.address))) out.push(`address ${ip.address} is missing`);
  if (routes.length === 0) return out;
  const kernel = await nl.listRoutes();
  for (const want of routeSpecs(ips, routes, link.index)) {
    const dst = canonicalCidr(want.dst);
    // A route the result gives no table may have been moved since ADD (sbr moves the link's
    // routes into a per-IP table): any table will do then.
    const found = kernel.some(
      (r) =>
        canonicalCidr(r.dst) === dst &&
        (want.table === undefined || r.table === want.table) &&
        r.oif === link.index &&
        (want.gw === undefined || (r.gw !== undefined && canonicalIp(r.gw) === canonicalIp(want.gw))),
    );
    if (!found) out.push(`route ${want.dst}${want.gw ? ` via ${want.gw}` : ''} is missing`);
  }
  return out;
}

export interface LinkExpectation {
  kind: string;
  mode?: string | undefined;
  /** ifindex of the master, compared with IFLA_LINK */
  parentIndex?: number | undefined;
  masterName?: string | undefined;
  mac?: string | undefined;
  mtu?: number | undefined;
}

/** Mismatches of a link against what ADD made; empty when it matches. */
export function linkMismatches(link: LinkInfo, want: LinkExpectation): string[] {
  const out: string[] = [];
  if (link.kind !== want.kind) out.push(`kind is ${link.kind ?? 'none'}, not ${want.kind}`);
  if (want.mode !== undefined && link.mode !== want.mode) out.push(`mode is ${link.mode ?? 'none'}, not ${want.mode}`);
  if (want.parentIndex !== undefined && link.parentIndex !== want.parentIndex) {
    out.push(`master is #${link.parentIndex ?? 'none'}, not ${want.masterName ?? ''} (#${want.parentIndex})`);
  }
  if (want.mac && link.mac !== want.mac.toLowerCase()) out.push(`mac is ${link.mac}, not ${want.mac}`);
  if (want.mtu && link.mtu !== want.mtu) out.push(`mtu is ${link.mtu}, not ${want.mtu}`);
  return out;
}

export function throwMismatches(ifName: string, mismatches: string[]): void {
  if (mismatches.length) throw new CniError(ErrorCode.Internal, `${ifName}: ${mismatches.join('; ')}`);
}
