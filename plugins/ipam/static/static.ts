/**
 * Static IPAM (type `static`), as the reference plugin: the addresses, routes and DNS the
 * config names. runtimeConfig.ips and args.cni.ips replace the address list; CNI_ARGS IP=
 * appends addresses and GATEWAY= sets the gateway of the address whose subnet holds it.
 */
import { CniError, ErrorCode, invalidConfig } from '../../../src/cni/errors.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { Plugin, PluginContext } from '../../../src/cni/plugin.js';
import type { Dns, IpConfig, NetConf, Result, Route } from '../../../src/cni/types.js';
import { isRecord } from '../../../src/cni/types.js';
import { NetlinkHandle, canonicalCidr, cidrContains, familyOf, parseCidr } from '../../../src/netlink/index.js';
import { parseDns, parseRoutes, requireCidr, requireIp } from '../../pkg/validate.js';

export interface StaticAddress {
  address: string;
  gateway?: string;
}

export interface StaticConf {
  cniVersion: string;
  addresses: StaticAddress[];
  routes: Route[];
  dns: Dns | undefined;
}

function parseAddresses(value: unknown, path: string): StaticAddress[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalidConfig(path, value, 'must be a list of {address, gateway}');
  return value.map((a, i) => {
    const where = `${path}[${i}]`;
    if (!isRecord(a)) throw invalidConfig(where, a, 'must be an object with address');
    const out: StaticAddress = { address: requireCidr(a.address, `${where}.address`) };
    if (a.gateway !== undefined) {
      out.gateway = requireIp(a.gateway, `${where}.gateway`);
      if (familyOf(out.gateway) !== parseCidr(out.address).family) {
        throw invalidConfig(`${where}.gateway`, a.gateway, `is not of the family of ${out.address}`);
      }
    }
    return out;
  });
}

/** Strings ("10.1.2.3/24") or objects ({address}) as runtimeConfig.ips and args.cni.ips hold them. */
function parseIpList(value: unknown, path: string): StaticAddress[] {
  if (!Array.isArray(value)) throw invalidConfig(path, value, 'must be a list of CIDRs');
  return value.map((v, i) => ({ address: requireCidr(isRecord(v) ? v.address : v, `${path}[${i}]`) }));
}

function loadConf(raw: NetConf, env: CniEnv): StaticConf {
  const ipam = raw.ipam;
  if (!isRecord(ipam)) throw invalidConfig('ipam', ipam, 'must be an object');
  let addresses = parseAddresses(ipam.addresses, 'ipam.addresses');

  const ipArg = env.args.get('IP');
  if (ipArg) {
    for (const item of ipArg.split(',')) addresses.push({ address: requireCidr(item.trim(), 'CNI_ARGS IP') });
  }
  const gwArg = env.args.get('GATEWAY');
  if (gwArg) {
    for (const item of gwArg.split(',')) {
      const gw = requireIp(item.trim(), 'CNI_ARGS GATEWAY');
      for (const a of addresses) if (cidrContains(parseCidr(a.address), gw)) a.gateway = gw;
    }
  }
  const argsCni = isRecord(raw.args) && isRecord(raw.args.cni) ? raw.args.cni : {};
  // As the reference: a non-empty list replaces the configured addresses, an empty one does not.
  if (argsCni.ips !== undefined && !(Array.isArray(argsCni.ips) && argsCni.ips.length === 0)) addresses = parseIpList(argsCni.ips, 'args.cni.ips');
  const rc = isRecord(raw.runtimeConfig) ? raw.runtimeConfig : {};
  if (rc.ips !== undefined && !(Array.isArray(rc.ips) && rc.ips.length === 0)) addresses = parseIpList(rc.ips, 'runtimeConfig.ips');

  const routes = parseRoutes(ipam.routes, 'ipam.routes');
  if (argsCni.routes !== undefined) routes.push(...parseRoutes(argsCni.routes, 'args.cni.routes'));
  return { cniVersion: raw.cniVersion, addresses, routes, dns: parseDns(ipam.dns, 'ipam.dns') };
}

async function add(conf: StaticConf): Promise<Result> {
  const ips: IpConfig[] = conf.addresses.map((a) => (a.gateway ? { address: a.address, gateway: a.gateway } : { address: a.address }));
  const result: Result = { cniVersion: conf.cniVersion, ips };
  if (conf.routes.length) result.routes = conf.routes;
  if (conf.dns) result.dns = conf.dns;
  return result;
}

/** Static IPAM holds no state: nothing to release. */
async function del(): Promise<void> {}

/** Every configured address must be on CNI_IFNAME in the container. */
async function check(conf: StaticConf, ctx: PluginContext): Promise<void> {
  if (!ctx.env.netns) return;
  const nl = NetlinkHandle.inNetnsPath(ctx.env.netns);
  try {
    const link = await nl.getLink(ctx.env.ifName);
    if (!link) throw new CniError(ErrorCode.Internal, `static: interface ${ctx.env.ifName} not found in ${ctx.env.netns}`);
    const present = new Set((await nl.listAddresses(link.index)).map((a) => canonicalCidr(a.address)));
    for (const a of conf.addresses) {
      if (!present.has(canonicalCidr(a.address))) {
        throw new CniError(ErrorCode.Internal, `static: address ${a.address} is not on ${ctx.env.ifName}`);
      }
    }
  } finally {
    nl.close();
  }
}

const plugin: Plugin<StaticConf> = { loadConf, add, del, check };
export default plugin;
