/**
 * macvlan (type `macvlan`): a MAC-VLAN link on the node's NIC (`master`), created directly in
 * the pod's namespace under a temporary name, renamed, addressed by IPAM. Config keys and
 * defaults are the reference plugin's; every step registers its undo.
 */
import { CniError, ErrorCode, invalidConfig } from '../../../src/cni/errors.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { Plugin, PluginContext } from '../../../src/cni/plugin.js';
import type { Interface, NetConf, Result } from '../../../src/cni/types.js';
import { isRecord } from '../../../src/cni/types.js';
import { type MacvlanMode, macToBuffer } from '../../../src/netlink/index.js';
import { ipsOfInterface } from '../../pkg/iface.js';
import {
  addressLink,
  addressMismatches,
  announceOnChange,
  checkMtuFitsMaster,
  createInPod,
  deleteIpamAndLink,
  findMaster,
  linkMismatches,
  openNamespaces,
  prevInterface,
  requireIfNameFree,
  runIpam,
  throwMismatches,
} from '../../pkg/link.js';
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

async function add(conf: MacvlanConf, ctx: PluginContext): Promise<Result> {
  const { ifName, netns } = ctx.env;
  const ns = openNamespaces(netns!, conf.linkInContainer);
  try {
    const master = await findMaster(ns.masterNs, conf.master, conf.linkInContainer);
    checkMtuFitsMaster(conf.mtu, master);
    await requireIfNameFree(ns.pod, ifName);

    const link = await createInPod(
      ctx,
      ns,
      ns.masterNs,
      {
        kind: { kind: 'macvlan', mode: conf.mode, bcQueueLen: conf.bcQueueLen },
        // As the reference (its LinkAttrs carry TxQLen 0): a virtual link needs no queue.
        txQueueLen: 0,
        parentIndex: master.index,
        mtu: conf.mtu || undefined,
        mac: conf.mac,
        netnsFd: conf.linkInContainer ? undefined : ns.podFd,
      },
      ifName,
    );
    announceOnChange(ns.podFd, ifName);

    const result: Result = { cniVersion: conf.raw.cniVersion };
    if (conf.hasIpam) {
      const ipam = await runIpam(conf.raw, ctx);
      result.ips = ipam.ips!.map((ip) => ({ ...ip, interface: 0 }));
      if (ipam.routes?.length) result.routes = ipam.routes;
      if (ipam.dns) result.dns = ipam.dns;
      await addressLink(ns, link, result.ips, result.routes ?? []);
    } else {
      await ns.pod.setLinkUp(link.index);
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
  await deleteIpamAndLink(conf.raw, conf.hasIpam, ctx);
}

async function check(conf: MacvlanConf, ctx: PluginContext): Promise<void> {
  const { prev, index } = prevInterface(ctx);
  const { netns, ifName } = ctx.env;
  const ns = openNamespaces(netns!, conf.linkInContainer);
  try {
    const want = prev.interfaces![index]!;
    const link = await ns.pod.getLink(ifName);
    if (!link) throw new CniError(ErrorCode.Internal, `interface ${ifName} is missing from ${netns}`);
    const master = await findMaster(ns.masterNs, conf.master, conf.linkInContainer);
    const mismatches = linkMismatches(link, {
      kind: 'macvlan',
      mode: conf.mode,
      parentIndex: master.index,
      masterName: master.name,
      mac: want.mac,
      // mtu 0 means the kernel's default for a macvlan: the master's.
      mtu: conf.mtu || (conf.mode === 'passthru' ? undefined : master.mtu),
    });
    mismatches.push(...(await addressMismatches(ns.pod, link, ipsOfInterface(prev, index), prev.routes ?? [])));
    throwMismatches(ifName, mismatches);
    // The IPAM's own CHECK after ours, so a changed link is named rather than a symptom of it.
    if (conf.hasIpam) await ctx.ipam.check(conf.raw);
  } finally {
    ns.close();
  }
}

const plugin: Plugin<MacvlanConf> = { loadConf, add, del, check };
export default plugin;
