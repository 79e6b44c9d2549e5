/**
 * ipvlan (type `ipvlan`): an IP-VLAN link on the node's NIC (`master`), sharing its MAC,
 * created directly in the pod under a temporary name and renamed. Keys and defaults are the
 * reference plugin's. In a chain without `master`, the master is the single interface of
 * prevResult (in the pod when prevResult puts it there); without `ipam`, prevResult's IPs are
 * applied to the new link.
 */
import { CniError, ErrorCode, invalidConfig } from '../../../src/cni/errors.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { Plugin, PluginContext } from '../../../src/cni/plugin.js';
import type { NetConf, Result } from '../../../src/cni/types.js';
import { isRecord } from '../../../src/cni/types.js';
import type { IpvlanMode } from '../../../src/netlink/index.js';
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

const MODES: readonly IpvlanMode[] = ['l2', 'l3', 'l3s'];

export interface IpvlanConf {
  raw: NetConf;
  master: string | undefined;
  mode: IpvlanMode;
  mtu: number;
  linkInContainer: boolean;
  hasIpam: boolean;
}

function loadConf(raw: NetConf, _env: CniEnv): IpvlanConf {
  const master = optString(raw, 'master') || undefined;
  const mode = (optString(raw, 'mode') || 'l2') as IpvlanMode;
  if (!MODES.includes(mode)) throw invalidConfig('mode', raw.mode, `must be one of ${MODES.join(', ')}`);
  const mtu = optInt(raw, 'mtu', 0, 65535) ?? 0;
  if (mtu !== 0 && mtu < 68) throw invalidConfig('mtu', mtu, 'must be 0 (the master\'s) or at least 68');
  if (raw.ipam !== undefined && !isRecord(raw.ipam)) throw invalidConfig('ipam', raw.ipam, 'must be an object');
  const ipamType = isRecord(raw.ipam) ? raw.ipam.type : undefined;
  if (ipamType !== undefined && (typeof ipamType !== 'string' || ipamType === '')) {
    throw invalidConfig('ipam.type', ipamType, 'must be a plugin name');
  }
  return { raw, master, mode, mtu, linkInContainer: optBool(raw, 'linkInContainer') ?? false, hasIpam: typeof ipamType === 'string' };
}

/** Where the master is: the config's, or in a chain the single interface prevResult names. */
function resolveMaster(conf: IpvlanConf, ctx: PluginContext, prev: Result | undefined): { name: string | undefined; inPod: boolean } {
  if (conf.master || !prev) return { name: conf.master, inPod: conf.linkInContainer };
  const itfs = prev.interfaces ?? [];
  if (itfs.length !== 1 || !itfs[0]!.name) {
    throw invalidConfig('master', conf.master, `not set, and prevResult lists ${itfs.length} interfaces where a chained ipvlan needs a single named one`);
  }
  const itf = itfs[0]!;
  return { name: itf.name, inPod: conf.linkInContainer || (itf.sandbox !== undefined && itf.sandbox === ctx.env.netns) };
}

async function add(conf: IpvlanConf, ctx: PluginContext): Promise<Result> {
  const { ifName, netns } = ctx.env;
  const prev = ctx.prevResult;
  if (!conf.hasIpam && !prev) throw invalidConfig('ipam', conf.raw.ipam, 'must be set unless ipvlan is chained after a plugin whose IPs it takes');
  const where = resolveMaster(conf, ctx, prev);
  const ns = openNamespaces(netns!, where.inPod);
  try {
    const master = await findMaster(ns.masterNs, where.name, where.inPod);
    checkMtuFitsMaster(conf.mtu, master);
    await requireIfNameFree(ns.pod, ifName);

    const link = await createInPod(
      ctx,
      ns,
      ns.masterNs,
      {
        kind: { kind: 'ipvlan', mode: conf.mode },
        txQueueLen: 0,
        parentIndex: master.index,
        mtu: conf.mtu || undefined,
        netnsFd: where.inPod ? undefined : ns.podFd,
      },
      ifName,
    );
    announceOnChange(ns.podFd, ifName);

    const result: Result = { cniVersion: conf.raw.cniVersion };
    const ipam = conf.hasIpam ? await runIpam(conf.raw, ctx) : prev!;
    if (!ipam.ips?.length) throw new CniError(ErrorCode.Internal, 'IPAM plugin returned missing IP config');
    // Every address belongs to the ipvlan link, as in the reference.
    result.ips = ipam.ips.map((ip) => ({ ...ip, interface: 0 }));
    if (ipam.routes?.length) result.routes = ipam.routes;
    if (ipam.dns) result.dns = ipam.dns;
    await addressLink(ns, link, result.ips, result.routes ?? []);

    const final = await ns.pod.requireLink(ifName);
    result.interfaces = [{ name: ifName, mac: final.mac, mtu: final.mtu, sandbox: netns }];
    return result;
  } finally {
    ns.close();
  }
}

async function del(conf: IpvlanConf, ctx: PluginContext): Promise<void> {
  await deleteIpamAndLink(conf.raw, conf.hasIpam, ctx);
}

async function check(conf: IpvlanConf, ctx: PluginContext): Promise<void> {
  const { prev, index } = prevInterface(ctx);
  const { netns, ifName } = ctx.env;
  // CHECK's prevResult is this plugin's own result: it no longer names a chained master.
  const where = { name: conf.master, inPod: conf.linkInContainer };
  const ns = openNamespaces(netns!, where.inPod);
  try {
    const link = await ns.pod.getLink(ifName);
    if (!link) throw new CniError(ErrorCode.Internal, `interface ${ifName} is missing from ${netns}`);
    const mismatches: string[] = [];
    if (conf.master) {
      const master = await findMaster(ns.masterNs, conf.master, where.inPod);
      mismatches.push(...linkMismatches(link, { kind: 'ipvlan', mode: conf.mode, parentIndex: master.index, masterName: master.name, mtu: conf.mtu || master.mtu }));
    } else {
      mismatches.push(...linkMismatches(link, { kind: 'ipvlan', mode: conf.mode, mtu: conf.mtu }));
    }
    const want = prev.interfaces![index]!;
    if (want.mac && link.mac !== want.mac.toLowerCase()) mismatches.push(`mac is ${link.mac}, not ${want.mac}`);
    mismatches.push(...(await addressMismatches(ns.pod, link, ipsOfInterface(prev, index), prev.routes ?? [])));
    throwMismatches(ifName, mismatches);
    // The IPAM's own CHECK after ours, so a changed link is named rather than a symptom of it.
    if (conf.hasIpam) await ctx.ipam.check(conf.raw);
  } finally {
    ns.close();
  }
}

const plugin: Plugin<IpvlanConf> = { loadConf, add, del, check };
export default plugin;
