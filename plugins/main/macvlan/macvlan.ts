/**
 * macvlan (type `macvlan`): a MAC-VLAN link on the node's NIC (`master`), created directly in
 * the pod's namespace under a temporary name, renamed, addressed by IPAM. Config keys and
 * defaults are the reference plugin's; every step registers its undo.
 */
import { closeSync } from 'node:fs';
import { CniError, ErrorCode, invalidConfig } from '../../../src/cni/errors.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { Plugin, PluginContext } from '../../../src/cni/plugin.js';
import type { Interface, NetConf, Result } from '../../../src/cni/types.js';
import { isRecord } from '../../../src/cni/types.js';
import {
  type LinkInfo,
  type MacvlanMode,
  NetlinkHandle,
  isNotFound,
  macToBuffer,
  openNetns,
  setSysctls,
} from '../../../src/netlink/index.js';
import {
  checkInterfaceConfig,
  configureInterface,
  defaultRouteInterface,
  deleteLinkInNetns,
  ipsOfInterface,
  tempLinkName,
} from '../../pkg/iface.js';
import { optBool, optInt, optString } from '../../pkg/validate.js';

const MODES: readonly MacvlanMode[] = ['bridge', 'private', 'vepa', 'passthru'];

export interface MacvlanConf {
  raw: NetConf;
  master: string | undefined;
  mode: MacvlanMode;
  mtu: number;
  mac: string | undefined;
  linkInContainer: boolean;
  bcQueueLen: number | undefined;
  /** whether an IPAM plugin is configured; an empty ipam means an L2-only link */
  hasIpam: boolean;
}

function loadConf(raw: NetConf, env: CniEnv): MacvlanConf {
  const master = optString(raw, 'master');
  const mode = (optString(raw, 'mode') ?? 'bridge') as MacvlanMode;
  if (!MODES.includes(mode)) throw invalidConfig('mode', raw.mode, `must be one of ${MODES.join(', ')}`);
  const mtu = optInt(raw, 'mtu', 0, 65535) ?? 0;
  if (mtu !== 0 && mtu < 68) throw invalidConfig('mtu', mtu, 'must be 0 (the kernel default) or at least 68');
  const bcQueueLen = optInt(raw, 'bcqueuelen', 0, 0xffffffff);

  // MAC precedence, as the reference: runtimeConfig.mac, then CNI_ARGS MAC, then the mac key.
  let mac = optString(raw, 'mac');
  const argMac = env.args.get('MAC');
  if (argMac) mac = argMac;
  const rc = isRecord(raw.runtimeConfig) ? raw.runtimeConfig : {};
  if (typeof rc.mac === 'string' && rc.mac) mac = rc.mac;
  if (mac !== undefined) {
    try {
      const bytes = macToBuffer(mac);
      if (bytes[0]! & 1) throw new Error('multicast');
    } catch {
      throw invalidConfig('mac', mac, 'must be a unicast MAC address such as 02:00:00:00:00:01');
    }
  }
  if (raw.ipam !== undefined && !isRecord(raw.ipam)) throw invalidConfig('ipam', raw.ipam, 'must be an object');
  const ipamType = isRecord(raw.ipam) ? raw.ipam.type : undefined;
  if (ipamType !== undefined && (typeof ipamType !== 'string' || ipamType === '')) {
    throw invalidConfig('ipam.type', ipamType, 'must be a plugin name');
  }
  return {
    raw,
    master,
    mode,
    mtu,
    mac,
    linkInContainer: optBool(raw, 'linkInContainer') ?? false,
    bcQueueLen,
    hasIpam: typeof ipamType === 'string',
  };
}

/** The sockets one invocation needs: the master's namespace and the pod's. */
interface Namespaces {
  podFd: number;
  pod: NetlinkHandle;
  /** where the master lives: the node, or the pod when linkInContainer */
  masterNs: NetlinkHandle;
  close(): void;
}

function openNamespaces(netns: string, linkInContainer: boolean): Namespaces {
  const podFd = openNetns(netns);
  const pod = NetlinkHandle.inNetnsFd(podFd, netns);
  const masterNs = linkInContainer ? pod : NetlinkHandle.host();
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

async function findMaster(conf: MacvlanConf, ns: NetlinkHandle): Promise<LinkInfo> {
  if (conf.master) {
    const link = await ns.getLink(conf.master);
    if (!link) throw invalidConfig('master', conf.master, `no such interface${conf.linkInContainer ? ' in the container' : ' on the node'}`);
    return link;
  }
  const link = await defaultRouteInterface(ns);
  if (!link) throw invalidConfig('master', conf.master, 'not set, and no interface holds a default route');
  return link;
}

async function add(conf: MacvlanConf, ctx: PluginContext): Promise<Result> {
  const { ifName, netns } = ctx.env;
  const ns = openNamespaces(netns!, conf.linkInContainer);
  try {
    const master = await findMaster(conf, ns.masterNs);
    if (conf.mtu > master.mtu) {
      throw invalidConfig('mtu', conf.mtu, `is above the MTU ${master.mtu} of master ${master.name}`);
    }
    if (await ns.pod.getLink(ifName)) {
      throw new CniError(ErrorCode.InvalidEnvironment, `invalid CNI_IFNAME ${JSON.stringify(ifName)}: the container already has an interface of that name`);
    }

    // Created under a temporary name directly in the pod, so it never collides with node links.
    const temp = tempLinkName();
    await ns.masterNs.createLink({
      name: temp,
      kind: { kind: 'macvlan', mode: conf.mode, bcQueueLen: conf.bcQueueLen },
      parentIndex: master.index,
      mtu: conf.mtu || undefined,
      mac: conf.mac,
      netnsFd: conf.linkInContainer ? undefined : ns.podFd,
    });
    let link = await ns.pod.requireLink(temp);
    const index = link.index;
    ctx.rollback.push(`delete macvlan ${temp} (#${index})`, () => deleteLinkInNetns(netns!, index));
    await ns.pod.renameLink(index, ifName);
    link = { ...link, name: ifName };
    // Announce the new MAC on up and on address changes (the reference does the same).
    setSysctls(ns.podFd, { [`net.ipv4.conf.${ifName}.arp_notify`]: '1' });

    const result: Result = { cniVersion: conf.raw.cniVersion };
    if (conf.hasIpam) {
      const ipam = await ctx.ipam.add(conf.raw);
      ctx.rollback.push('release IPAM', () => ctx.ipam.del(conf.raw));
      if (!ipam.ips?.length) throw new CniError(ErrorCode.Internal, 'IPAM plugin returned missing IP config');
      result.ips = ipam.ips.map((ip) => ({ ...ip, interface: 0 }));
      if (ipam.routes?.length) result.routes = ipam.routes;
      if (ipam.dns) result.dns = ipam.dns;
      await configureInterface(ns.pod, ns.podFd, link, result.ips, result.routes ?? []);
    } else {
      await ns.pod.setLinkUp(index);
    }

    const final = await ns.pod.requireLink(ifName);
    const itf: Interface = { name: ifName, mac: final.mac, mtu: final.mtu, sandbox: netns };
    result.interfaces = [itf];
    return result;
  } finally {
    ns.close();
  }
}

async function del(conf: MacvlanConf, ctx: PluginContext): Promise<void> {
  // IPAM first: the address must be released even when the link or the netns is gone.
  if (conf.hasIpam) await ctx.ipam.del(conf.raw);
  const { netns, ifName } = ctx.env;
  if (!netns) return;
  let pod: NetlinkHandle;
  try {
    pod = NetlinkHandle.inNetnsPath(netns);
  } catch (err) {
    if (isNotFound(err)) return; // the namespace is gone, and the link with it
    throw err;
  }
  try {
    await pod.deleteLinkByName(ifName);
  } finally {
    pod.close();
  }
}

async function check(conf: MacvlanConf, ctx: PluginContext): Promise<void> {
  const prev = ctx.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, 'invalid prevResult undefined: CHECK needs the result of ADD');
  if (conf.hasIpam) await ctx.ipam.check(conf.raw);
  const { netns, ifName } = ctx.env;
  const ns = openNamespaces(netns!, conf.linkInContainer);
  try {
    const index = (prev.interfaces ?? []).findIndex((i) => i.name === ifName && i.sandbox === netns);
    if (index < 0) throw new CniError(ErrorCode.Internal, `prevResult has no interface ${ifName} in ${netns}`);
    const want = prev.interfaces![index]!;
    const link = await ns.pod.getLink(ifName);
    const mismatches: string[] = [];
    if (!link) throw new CniError(ErrorCode.Internal, `interface ${ifName} is missing from ${netns}`);
    if (link.kind !== 'macvlan') mismatches.push(`kind is ${link.kind}, not macvlan`);
    if (link.mode !== conf.mode) mismatches.push(`mode is ${link.mode}, not ${conf.mode}`);
    if (want.mac && link.mac !== want.mac.toLowerCase()) mismatches.push(`mac is ${link.mac}, not ${want.mac}`);
    if (conf.mtu && link.mtu !== conf.mtu) mismatches.push(`mtu is ${link.mtu}, not ${conf.mtu}`);
    const master = await findMaster(conf, ns.masterNs);
    if (link.parentIndex !== master.index) mismatches.push(`master is #${link.parentIndex}, not ${master.name} (#${master.index})`);
    if (mismatches.length) throw new CniError(ErrorCode.Internal, `${ifName}: ${mismatches.join('; ')}`);
    await checkInterfaceConfig(ns.pod, link, ipsOfInterface(prev, index), prev.routes ?? []);
  } finally {
    ns.close();
  }
}

const plugin: Plugin<MacvlanConf> = { loadConf, add, del, check };
export default plugin;
