/**
 * Runs one plugin for one command: a built-in type in this process, any other by exec. A
 * built-in ADD runs under a fresh rollback, so a failure undoes that plugin's own steps.
 */
import { asCniError } from '../cni/errors.js';
import type { CniEnv } from '../cni/env.js';
import type { IpamInvoker, PluginContext } from '../cni/plugin.js';
import { formatResult } from '../cni/result.js';
import { Rollback } from '../cni/rollback.js';
import type { Command, NetConf, Result } from '../cni/types.js';
import type { Logger } from '../log.js';
import { execPlugin } from './exec.js';
import { isBuiltin, loadBuiltin } from './registry.js';

export interface InvokeOptions {
  /** the plugin to run when it is not conf.type (an IPAM plugin gets its parent's config) */
  type?: string;
  prevResult?: Result | undefined;
}

export async function invoke(
  command: Command,
  conf: NetConf,
  env: CniEnv,
  log: Logger,
  opts: InvokeOptions = {},
): Promise<Result | undefined> {
  const type = opts.type ?? conf.type;
  if (!isBuiltin(type)) {
    const stdinConf: NetConf = opts.prevResult
      ? { ...conf, prevResult: formatResult(opts.prevResult, conf.cniVersion) }
      : conf;
    return execPlugin(command, stdinConf, { ...env, command }, log, type);
  }
  const plugin = await loadBuiltin(type);
  const parsed = plugin.loadConf(conf, env);
  const ctx: PluginContext = {
    env: { ...env, command },
    log,
    rollback: new Rollback(),
    ipam: ipamInvoker(env, log),
    prevResult: opts.prevResult,
  };
  switch (command) {
    case 'ADD':
      try {
        const result = await plugin.add(parsed, ctx);
        ctx.rollback.commit();
        return result;
      } catch (err) {
        log.warn(`${type} ADD failed (${asCniError(err).message}); undoing ${ctx.rollback.size} step(s)`);
        await ctx.rollback.run((what, e) => log.error(`undo ${what} failed: ${asCniError(e).message}`));
        throw err;
      }
    case 'DEL':
      await plugin.del(parsed, ctx);
      return undefined;
    case 'CHECK':
      await plugin.check(parsed, ctx);
      return undefined;
    case 'GC':
      await plugin.gc?.(parsed, ctx, validAttachments(conf));
      return undefined;
    case 'STATUS':
      await plugin.status?.(parsed, ctx);
      return undefined;
    case 'VERSION':
      return undefined;
  }
}

function validAttachments(conf: NetConf): Array<{ containerID: string; ifname: string }> {
  const list = conf['cni.dev/valid-attachments'] ?? conf['cni.dev/attachments'];
  return Array.isArray(list) ? (list as Array<{ containerID: string; ifname: string }>) : [];
}

/** IPAM as the reference plugins run it: the parent's whole config, dispatched on ipam.type. */
export function ipamInvoker(env: CniEnv, log: Logger): IpamInvoker {
  const run = (command: Command, conf: NetConf) => invoke(command, conf, env, log, { type: conf.ipam?.type ?? '' });
  return {
    add: async (conf) => (await run('ADD', conf))!,
    del: async (conf) => void (await run('DEL', conf)),
    check: async (conf) => void (await run('CHECK', conf)),
  };
}
