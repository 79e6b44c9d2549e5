/**
 * One attachment's plugin chain (a conflist), run as libcni runs it: each plugin gets the
 * list's name and cniVersion, the previous plugin's result as prevResult, and the runtime
 * config for the capabilities it declares.
 */
import { CniError, ErrorCode, asCniError } from '../cni/errors.js';
import type { CniEnv } from '../cni/env.js';
import type { NetConf, NetConfList, Result } from '../cni/types.js';
import { isRecord } from '../cni/types.js';
import type { Logger } from '../log.js';
import { invoke } from './invoke.js';

/** Normalises a delegate, written as a conf or a conflist, into a conflist. */
export function toConfList(delegate: unknown, where: string): NetConfList {
  if (!isRecord(delegate)) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${where} ${JSON.stringify(delegate)}: expected a conf or a conflist object`);
  }
  if (Array.isArray(delegate.plugins)) {
    if (typeof delegate.name !== 'string' || delegate.name === '') {
      throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${where}.name ${JSON.stringify(delegate.name)}: a conflist needs a name`);
    }
    delegate.plugins.forEach((p, i) => {
      if (!isRecord(p) || typeof p.type !== 'string' || p.type === '') {
        throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${where}.plugins[${i}].type ${JSON.stringify(isRecord(p) ? p.type : p)}: must be a plugin name`);
      }
    });
    return delegate as unknown as NetConfList;
  }
  if (typeof delegate.type !== 'string' || delegate.type === '') {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${where}.type ${JSON.stringify(delegate.type)}: must be a plugin name`);
  }
  const { name, cniVersion, ...plugin } = delegate;
  return {
    cniVersion: typeof cniVersion === 'string' ? cniVersion : '',
    name: typeof name === 'string' ? name : '',
    plugins: [plugin as NetConfList['plugins'][number]],
  };
}

/** The config one plugin of the chain receives on stdin (without prevResult). */
export function pluginConf(list: NetConfList, index: number, runtimeConfig: Record<string, unknown>): NetConf {
  const plugin = list.plugins[index]!;
  const conf: NetConf = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  const caps = isRecord(plugin.capabilities) ? plugin.capabilities : {};
  const rc: Record<string, unknown> = {};
  for (const [cap, enabled] of Object.entries(caps)) {
    if (enabled === true && runtimeConfig[cap] !== undefined) rc[cap] = runtimeConfig[cap];
  }
  if (Object.keys(rc).length > 0) conf.runtimeConfig = rc;
  else delete conf.runtimeConfig;
  return conf;
}

export interface ChainRun {
  list: NetConfList;
  env: CniEnv;
  log: Logger;
  runtimeConfig?: Record<string, unknown>;
}

/**
 * ADD through the chain. If plugin k fails, DEL runs for plugins k … 0 (newest first) with the
 * last good result, so the chain leaves nothing behind; the error returned is plugin k's.
 */
export async function addChain(run: ChainRun): Promise<Result> {
  let prev: Result | undefined;
  const rc = run.runtimeConfig ?? {};
  for (let i = 0; i < run.list.plugins.length; i++) {
    const conf = pluginConf(run.list, i, rc);
    try {
      prev = await invoke('ADD', conf, run.env, run.log, { prevResult: prev });
    } catch (err) {
      run.log.warn(`attachment ${run.list.name}: ${conf.type} ADD failed; deleting plugins ${i}..0`);
      await delChain(run, prev, i).catch((e) => run.log.error(`rollback of ${run.list.name} failed: ${asCniError(e).message}`));
      throw err;
    }
  }
  if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid plugins of ${run.list.name}: the list is empty`);
  return prev;
}

/**
 * DEL through the chain in reverse, from plugin `from` (default: the last) down to 0. Keeps
 * going past failures so every plugin gets its DEL, then reports them together.
 */
export async function delChain(run: ChainRun, prevResult: Result | undefined, from = run.list.plugins.length - 1): Promise<void> {
  const errors: string[] = [];
  let firstCode: number | undefined;
  const rc = run.runtimeConfig ?? {};
  for (let i = from; i >= 0; i--) {
    const conf = pluginConf(run.list, i, rc);
    try {
      await invoke('DEL', conf, run.env, run.log, { prevResult });
    } catch (err) {
      const e = asCniError(err);
      firstCode ??= e.code;
      errors.push(`${conf.type}: ${e.message}`);
      run.log.error(`attachment ${run.list.name}: ${conf.type} DEL failed: ${e.message}`);
    }
  }
  if (errors.length > 0) throw new CniError(firstCode ?? ErrorCode.Internal, `DEL of ${run.list.name} failed: ${errors.join('; ')}`);
}

export async function checkChain(run: ChainRun, prevResult: Result | undefined): Promise<void> {
  if (run.list.disableCheck) return;
  const rc = run.runtimeConfig ?? {};
  for (let i = 0; i < run.list.plugins.length; i++) {
    await invoke('CHECK', pluginConf(run.list, i, rc), run.env, run.log, { prevResult });
  }
}
