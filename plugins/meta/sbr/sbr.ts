/**
 * sbr (type `sbr`): source-based routing for a chained interface. Each IP of CNI_IFNAME gets a
 * rule `from <ip> lookup <table>` and a table holding a default route via its gateway and the
 * link's routes, moved out of main, so replies leave through the interface they came in on.
 * Behaviour and config keys (`table`, `gateways`, `addSourceHints`) are the reference's; unlike
 * it, one ADD is one netlink batch, a failed ADD undoes itself, DEL also clears the tables and
 * copes with a missing link or namespace, and CHECK checks.
 */
import { closeSync, fstatSync } from 'node:fs';
import { CniError, ErrorCode, asCniError } from '../../../src/cni/errors.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { Plugin, PluginContext } from '../../../src/cni/plugin.js';
import type { NetConf, Result } from '../../../src/cni/types.js';
import {
  AF_INET,
  AF_INET6,
  NetlinkHandle,
  type RouteInfo,
  type RuleInfo,
  isNotFound,
  openNetns,
} from '../../../src/netlink/index.js';
import { optBool, optInt } from '../../pkg/validate.js';
import { withNetnsLock } from './lock.js';
import {
  type Change,
  type Gateways,
  type PlannedChange,
  checkState,
  parseGateways,
  planAdd,
  planAddWithTable,
  planDel,
  selectIps,
} from './plan.js';

export interface SbrConf {
  raw: NetConf;
  /** `table` mode: only rules, into this table */
  table: number | undefined;
  gateways: Gateways;
  addSourceHints: boolean;
}

function loadConf(raw: NetConf, _env: CniEnv): SbrConf {
  return {
    raw,
    table: optInt(raw, 'table', 1, 0xffffffff),
    gateways: parseGateways(raw.gateways),
    addSourceHints: optBool(raw, 'addSourceHints') ?? false,
  };
}

function requirePrev(ctx: PluginContext, command: string): Result {
  if (!ctx.prevResult) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid prevResult undefined: sbr must be chained after an interface plugin (${command})`);
  }
  return ctx.prevResult;
}

/** The namespace: an fd for the lock, a socket, and a lock key naming the inode. */
interface Namespace {
  fd: number;
  nl: NetlinkHandle;
  key: string;
  close(): void;
}

function openNamespace(path: string): Namespace {
  const fd = openNetns(path);
  try {
    const st = fstatSync(fd);
    const nl = NetlinkHandle.inNetnsFd(fd, path);
    return {
      fd,
      nl,
      key: `${st.dev}:${st.ino}`,
      close() {
        nl.close();
        closeSync(fd);
      },
    };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

async function readRules(nl: NetlinkHandle): Promise<RuleInfo[]> {
  return [...(await nl.listRules(AF_INET)), ...(await nl.listRules(AF_INET6))];
}

async function readRoutes(nl: NetlinkHandle): Promise<RouteInfo[]> {
  // One dump at a time: a netlink socket runs a single dump.
  return [...(await nl.listRoutes({ family: AF_INET })), ...(await nl.listRoutes({ family: AF_INET6 }))];
}

function send(nl: NetlinkHandle, c: Change): Promise<void> {
  switch (c.op) {
    case 'addRule':
      return nl.addRule(c.rule);
    case 'delRule':
      return nl.delRule(c.rule);
    case 'addRoute':
      return nl.addRoute(c.route);
    case 'replaceRoute':
      return nl.replaceRoute(c.route);
    case 'delRoute':
      return nl.delRoute(c.route);
  }
}

/** Sends `changes` as one batch; the outcome of each, in order. */
function sendAll(nl: NetlinkHandle, changes: readonly Change[]): Promise<Array<PromiseSettledResult<void>>> {
  return nl.batchSettled(changes.map((c) => () => send(nl, c)));
}

/** Undoes, newest first, in one batch on a socket of its own (the ADD's socket is closed by then). */
async function undo(netns: string, changes: Change[]): Promise<void> {
  if (changes.length === 0) return;
  let nl: NetlinkHandle;
  try {
    nl = NetlinkHandle.inNetnsPath(netns);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  try {
    const settled = await sendAll(nl, [...changes].reverse());
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected' && !isNotFound(s.reason));
    if (failed) throw failed.reason;
  } finally {
    nl.close();
  }
}

async function add(conf: SbrConf, ctx: PluginContext): Promise<Result> {
  const prev = requirePrev(ctx, 'ADD');
  const ips = selectIps(prev, ctx.env.ifName);
  const netns = ctx.env.netns!;
  const ns = openNamespace(netns);
  try {
    await withNetnsLock(ns.fd, ns.key, async () => {
      let planned: PlannedChange[];
      if (conf.table !== undefined) {
        planned = planAddWithTable(ips, conf.table).changes;
      } else {
        const link = await ns.nl.getLink(ctx.env.ifName);
        if (!link) throw new CniError(ErrorCode.Internal, `cannot find network interface ${ctx.env.ifName} in ${netns}`);
        const rules = await readRules(ns.nl);
        const routes = await readRoutes(ns.nl);
        const plan = planAdd({ ips, linkIndex: link.index, rules, routes, gateways: conf.gateways, addSourceHints: conf.addSourceHints });
        ctx.log.debug(`sbr ${ctx.env.ifName}: tables ${plan.tables.join(', ')}, ${plan.changes.length} changes`);
        planned = plan.changes;
      }
      const settled = await sendAll(ns.nl, planned.map((p) => p.change));
      const undos: Change[] = [];
      let fatal: unknown;
      settled.forEach((s, i) => {
        const p = planned[i]!;
        if (s.status === 'fulfilled') {
          if (p.undo) undos.push(p.undo);
        } else if (p.optional) {
          ctx.log.warn(`sbr ${ctx.env.ifName}: ${asCniError(s.reason).message} (ignored)`);
        } else {
          fatal ??= s.reason;
        }
      });
      ctx.rollback.push(`remove the sbr rules and routes of ${ctx.env.ifName}`, () => undo(netns, undos));
      if (fatal !== undefined) throw fatal;
    });
  } finally {
    ns.close();
  }
  return prev;
}

/** The attachment's addresses for DEL: from prevResult, else from the link. */
async function addressesForDel(ctx: PluginContext, nl: NetlinkHandle, linkIndex: number | undefined): Promise<string[]> {
  if (ctx.prevResult?.ips?.length) {
    try {
      return selectIps(ctx.prevResult, ctx.env.ifName).map((ip) => ip.address);
    } catch {
      // no IP of this interface in prevResult: fall back to the link
    }
  }
  if (linkIndex === undefined) return [];
  return (await nl.listAddresses(linkIndex)).filter((a) => a.scope === 0).map((a) => a.address);
}

async function del(conf: SbrConf, ctx: PluginContext): Promise<void> {
  const netns = ctx.env.netns;
  if (!netns) return;
  let ns: Namespace;
  try {
    ns = openNamespace(netns);
  } catch (err) {
    // The namespace is gone, and every rule and route with it.
    if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    await withNetnsLock(ns.fd, ns.key, async () => {
      const link = await ns.nl.getLink(ctx.env.ifName);
      const addresses = await addressesForDel(ctx, ns.nl, link?.index);
      if (addresses.length === 0) return;
      const rules = await readRules(ns.nl);
      const routes = conf.table === undefined ? await readRoutes(ns.nl) : [];
      const changes = planDel({ addresses, linkIndex: link?.index, rules, routes, table: conf.table });
      const settled = await sendAll(ns.nl, changes);
      const failed = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected' && !isNotFound(s.reason));
      if (failed.length > 0) {
        throw new CniError(ErrorCode.Internal, `sbr DEL of ${ctx.env.ifName}: ${failed.map((f) => asCniError(f.reason).message).join('; ')}`);
      }
    });
  } finally {
    ns.close();
  }
}

async function check(conf: SbrConf, ctx: PluginContext): Promise<void> {
  const prev = requirePrev(ctx, 'CHECK');
  const ips = selectIps(prev, ctx.env.ifName);
  const netns = ctx.env.netns!;
  const nl = NetlinkHandle.inNetnsPath(netns);
  try {
    const link = await nl.getLink(ctx.env.ifName);
    if (!link) throw new CniError(ErrorCode.Internal, `sbr: interface ${ctx.env.ifName} is missing from ${netns}`);
    const rules = await readRules(nl);
    const routes = conf.table === undefined ? await readRoutes(nl) : [];
    const problems = checkState({
      ips,
      linkIndex: link.index,
      linkName: link.name,
      rules,
      routes,
      gateways: conf.gateways,
      table: conf.table,
    });
    if (problems.length > 0) throw new CniError(ErrorCode.Internal, `sbr ${ctx.env.ifName}: ${problems.join('; ')}`);
  } finally {
    nl.close();
  }
}

const plugin: Plugin<SbrConf> = { loadConf, add, del, check };
export default plugin;
