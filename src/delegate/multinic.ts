/**
 * The meta-plugin (type `multinic`): the pod's primary network plus its secondary attachments,
 * each a chain of plugins, added all-or-nothing and deleted from the cache.
 */
import { readdirSync } from 'node:fs';
import { CniError, ErrorCode, asCniError, invalidConfig } from '../cni/errors.js';
import type { CniEnv } from '../cni/env.js';
import { validateIfName } from '../cni/env.js';
import type { Attachment, Plugin, PluginContext } from '../cni/plugin.js';
import type { NetConf, NetConfList, Result } from '../cni/types.js';
import { isRecord } from '../cni/types.js';
import { type AttachmentCache, type CachedAttachment, readCache, removeCache, writeCache } from './cache.js';
import { type ChainRun, addChain, checkChain, delChain, toConfList } from './chain.js';
import { invoke } from './invoke.js';

export const DEFAULT_CNI_DIR = '/var/lib/cni/multinic';

export interface MultinicConf {
  name: string;
  cniVersion: string;
  cniDir: string;
  binDir: string[];
  attachments: Array<{ ifName: string; list: NetConfList }>;
  runtimeConfig: Record<string, unknown>;
}

function loadConf(raw: NetConf, env: CniEnv): MultinicConf {
  if (!Array.isArray(raw.delegates) || raw.delegates.length === 0) {
    throw invalidConfig('delegates', raw.delegates, 'must be a non-empty list of confs or conflists');
  }
  const cniDir = raw.cniDir ?? DEFAULT_CNI_DIR;
  if (typeof cniDir !== 'string' || !cniDir.startsWith('/')) throw invalidConfig('cniDir', cniDir, 'must be an absolute path');
  const binDir = raw.binDir === undefined ? [] : raw.binDir;
  if (typeof binDir !== 'string' && !(Array.isArray(binDir) && binDir.every((d) => typeof d === 'string'))) {
    throw invalidConfig('binDir', binDir, 'must be a path or a list of paths');
  }
  const used = new Set<string>();
  let next = 1;
  const attachments = raw.delegates.map((d: unknown, i: number) => {
    const where = `delegates[${i}]`;
    let ifName: string;
    let delegate = d;
    if (isRecord(d) && d.ifname !== undefined) {
      if (typeof d.ifname !== 'string') throw invalidConfig(`${where}.ifname`, d.ifname, 'must be a string');
      try {
        validateIfName(d.ifname, `${where}.ifname`);
      } catch (err) {
        throw new CniError(ErrorCode.InvalidNetworkConfig, asCniError(err).message);
      }
      ifName = d.ifname;
      const { ifname: _ifname, ...rest } = d;
      delegate = rest;
    } else if (i === 0) {
      ifName = env.ifName;
    } else {
      while (used.has(`net${next}`)) next++;
      ifName = `net${next++}`;
    }
    if (used.has(ifName)) throw invalidConfig(`${where}.ifname`, ifName, 'is used by another attachment');
    used.add(ifName);
    const list = toConfList(delegate, where);
    if (!list.cniVersion) list.cniVersion = String(raw.cniVersion);
    if (!list.name) list.name = `${raw.name}-${i}`;
    return { ifName, list };
  });
  return {
    name: raw.name,
    cniVersion: raw.cniVersion,
    cniDir,
    binDir: typeof binDir === 'string' ? [binDir] : binDir,
    attachments,
    runtimeConfig: isRecord(raw.runtimeConfig) ? raw.runtimeConfig : {},
  };
}

function chainRun(conf: MultinicConf, ctx: PluginContext, a: { ifName: string; list: NetConfList }, index: number): ChainRun {
  return {
    list: a.list,
    env: { ...ctx.env, ifName: a.ifName, path: [...conf.binDir, ...ctx.env.path] },
    log: ctx.log,
    // The primary network gets the runtime's capabilities (portMappings, bandwidth, …).
    runtimeConfig: index === 0 ? conf.runtimeConfig : {},
  };
}

async function add(conf: MultinicConf, ctx: PluginContext): Promise<Result> {
  const { containerId, netns, ifName } = ctx.env;
  const cache: AttachmentCache = { containerId, netns, attachments: conf.attachments.map((a) => ({ ...a })) };
  writeCache(conf.cniDir, ifName, cache);
  const done: CachedAttachment[] = [];
  try {
    for (let i = 0; i < cache.attachments.length; i++) {
      const a = cache.attachments[i]!;
      ctx.log.info(`attachment ${i} ${a.list.name} as ${a.ifName}: ADD`);
      a.result = await addChain(chainRun(conf, ctx, a, i));
      done.push(a);
    }
    writeCache(conf.cniDir, ifName, cache);
  } catch (err) {
    // All-or-nothing: the failed chain removed itself; delete the ones before it, newest first.
    for (let i = done.length - 1; i >= 0; i--) {
      const a = done[i]!;
      await delChain(chainRun(conf, ctx, a, i), a.result).catch((e) =>
        ctx.log.error(`rollback of attachment ${a.list.name} failed: ${asCniError(e).message}`),
      );
    }
    removeCache(conf.cniDir, containerId, ifName);
    throw err;
  }
  return cache.attachments[0]!.result!;
}

async function del(conf: MultinicConf, ctx: PluginContext): Promise<void> {
  const { containerId, ifName } = ctx.env;
  const cache = readCache(conf.cniDir, containerId, ifName);
  const attachments: CachedAttachment[] = cache?.attachments ?? conf.attachments;
  const errors: string[] = [];
  let firstCode: number | undefined;
  for (let i = attachments.length - 1; i >= 0; i--) {
    const a = attachments[i]!;
    try {
      await delChain(chainRun(conf, ctx, a, i), a.result);
    } catch (err) {
      const e = asCniError(err);
      firstCode ??= e.code;
      errors.push(`${a.ifName}: ${e.message}`);
    }
  }
  if (errors.length > 0) throw new CniError(firstCode ?? ErrorCode.Internal, errors.join('; '));
  removeCache(conf.cniDir, containerId, ifName);
}

async function check(conf: MultinicConf, ctx: PluginContext): Promise<void> {
  const { containerId, ifName } = ctx.env;
  const cache = readCache(conf.cniDir, containerId, ifName);
  if (!cache) {
    throw new CniError(ErrorCode.UnknownContainer, `no attachments cached for container ${containerId} interface ${ifName}`);
  }
  for (let i = 0; i < cache.attachments.length; i++) {
    const a = cache.attachments[i]!;
    try {
      await checkChain(chainRun(conf, ctx, a, i), a.result);
    } catch (err) {
      const e = asCniError(err);
      throw new CniError(e.code, `attachment ${a.list.name} (${a.ifName}): ${e.message}`, e.details);
    }
  }
}

/** GC: every delegate gets GC with the valid attachments; cache entries not in it are dropped. */
async function gc(conf: MultinicConf, ctx: PluginContext, valid: Attachment[]): Promise<void> {
  const keep = new Set(valid.map((a) => `${a.containerID}-${a.ifname}.json`));
  let entries: string[] = [];
  try {
    entries = readdirSync(conf.cniDir);
  } catch {
    // no cache directory: nothing to collect
  }
  for (const entry of entries) {
    if (!entry.endsWith('.json') || keep.has(entry)) continue;
    const m = /^(.+)-([^-]+)\.json$/.exec(entry);
    if (m) removeCache(conf.cniDir, m[1]!, m[2]!);
  }
  for (const [i, a] of conf.attachments.entries()) {
    const run = chainRun(conf, ctx, a, i);
    for (let p = 0; p < a.list.plugins.length; p++) {
      const pluginConf: NetConf = { ...a.list.plugins[p]!, name: a.list.name, cniVersion: a.list.cniVersion, 'cni.dev/valid-attachments': valid };
      if (pluginConf.cniVersion !== '1.1.0') continue;
      await invoke('GC', pluginConf, run.env, run.log);
    }
  }
}

async function status(conf: MultinicConf, ctx: PluginContext): Promise<void> {
  const primary = conf.attachments[0]!;
  for (const p of primary.list.plugins) {
    if (primary.list.cniVersion !== '1.1.0') continue;
    await invoke('STATUS', { ...p, name: primary.list.name, cniVersion: primary.list.cniVersion }, ctx.env, ctx.log);
  }
}

const plugin: Plugin<MultinicConf> = { loadConf, add, del, check, gc, status };
export default plugin;
