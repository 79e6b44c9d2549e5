/**
 * whereabouts-compatible IPAM (type `whereabouts`): the lowest free address of each range,
 * from IPPool documents in the store `datastore` names (src/ipam): the node's files, etcd, or
 * whereabouts' Kubernetes resources. NADs written for whereabouts work unchanged; see
 * config.ts for the keys.
 */
import { CniError, ErrorCode } from '../../../src/cni/errors.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { Attachment, Plugin, PluginContext } from '../../../src/cni/plugin.js';
import type { IpConfig, NetConf, Result } from '../../../src/cni/types.js';
import { parseIp } from '../../../src/ipam/ip.js';
import { type IpamRequest, allocateAddresses, collectGarbage, findAddresses, releaseAddresses } from '../../../src/ipam/ipam.js';
import { type OpenStore, openStore } from '../../../src/ipam/open-store.js';
import { type WhereaboutsConf, loadWhereaboutsConf } from './config.js';

function loadConf(raw: NetConf, env: CniEnv): WhereaboutsConf {
  return loadWhereaboutsConf(raw, env);
}

/** Runs fn on the config's store, closing its connections after (tests run many in one process). */
async function withStore<T>(conf: WhereaboutsConf, fn: (store: OpenStore) => Promise<T>): Promise<T> {
  const store = await openStore(conf.store);
  try {
    return await fn(store);
  } finally {
    store.close?.();
  }
}

function requestOf(conf: WhereaboutsConf): IpamRequest {
  return { networkName: conf.networkName, ranges: conf.ranges, overlapping: conf.overlapping };
}

function logWarnings(conf: WhereaboutsConf, ctx: PluginContext): void {
  for (const w of conf.warnings) ctx.log.warn(`whereabouts: ${w}`);
  if (conf.flatFile) ctx.log.debug(`whereabouts: unset keys filled from ${conf.flatFile}`);
}

async function add(conf: WhereaboutsConf, ctx: PluginContext): Promise<Result> {
  logWarnings(conf, ctx);
  const leases = await withStore(conf, (s) => allocateAddresses(s, requestOf(conf), conf.owner));
  const gwFamily = conf.gateway ? parseIp(conf.gateway)?.family : undefined;
  const ips: IpConfig[] = leases.map((l) => {
    const ip: IpConfig = { address: l.address };
    // The gateway goes with every allocated address of its own family (whereabouts attaches
    // it to all, which gives a v6 address a v4 gateway in a dual-stack config).
    if (conf.gateway && gwFamily === l.range.family) ip.gateway = conf.gateway;
    return ip;
  });
  for (const a of conf.addresses) ips.push(a.gateway ? { address: a.address, gateway: a.gateway } : { address: a.address });
  ctx.log.info(`whereabouts: ${conf.owner.podRef || conf.owner.containerId}/${conf.owner.ifName} got ${leases.map((l) => l.address).join(', ')}`);
  const result: Result = { cniVersion: conf.cniVersion, ips };
  if (conf.routes.length) result.routes = conf.routes;
  if (conf.dns && Object.keys(conf.dns).length) result.dns = conf.dns;
  return result;
}

async function del(conf: WhereaboutsConf, ctx: PluginContext): Promise<void> {
  const released = await withStore(conf, (s) => releaseAddresses(s, requestOf(conf), ctx.env.containerId, ctx.env.ifName));
  if (released.length) ctx.log.info(`whereabouts: released ${released.map((l) => l.address).join(', ')}`);
}

/** Every range holds an allocation for this container and ifname; prevResult, if given, lists them. */
async function check(conf: WhereaboutsConf, ctx: PluginContext): Promise<void> {
  const owner = { ...conf.owner, podRef: '' };
  const found = await withStore(conf, (s) => findAddresses(s, requestOf(conf), owner));
  const listed = new Set((ctx.prevResult?.ips ?? []).map((ip) => ip.address));
  found.forEach((l, i) => {
    const range = conf.ranges[i]!;
    if (!l) throw new CniError(ErrorCode.Internal, `whereabouts: no address of range ${range.cidr} is allocated to ${ctx.env.containerId}/${ctx.env.ifName}`);
    if (ctx.prevResult && !listed.has(l.address)) {
      throw new CniError(ErrorCode.Internal, `whereabouts: ${l.address} is allocated to ${ctx.env.containerId}/${ctx.env.ifName} but not in prevResult`);
    }
  });
}

async function gc(conf: WhereaboutsConf, ctx: PluginContext, valid: Attachment[]): Promise<void> {
  if (!conf.hasValidAttachments) {
    ctx.log.warn('whereabouts: GC without cni.dev/valid-attachments; nothing released');
    return;
  }
  const released = await withStore(conf, (s) => collectGarbage(s, requestOf(conf), valid));
  if (released.length) ctx.log.info(`whereabouts: GC released ${released.map((l) => l.address).join(', ')}`);
}

/** STATUS (CNI 1.1): ready when the store can take allocations. */
async function status(conf: WhereaboutsConf): Promise<void> {
  await withStore(conf, (s) => s.checkReady());
}

const plugin: Plugin<WhereaboutsConf> = { loadConf, add, del, check, gc, status };
export default plugin;
