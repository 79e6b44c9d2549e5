/**
 * The contract between the CNI skeleton and a built-in plugin. A plugin gets a parsed config
 * and a context; it never reads process.env or stdin itself.
 */
import type { Logger } from '../log.js';
import type { CniEnv } from './env.js';
import type { Rollback } from './rollback.js';
import type { NetConf, Result } from './types.js';

/** Runs the IPAM plugin named by conf.ipam.type: built-in in this process, or by exec. */
export interface IpamInvoker {
  add(conf: NetConf): Promise<Result>;
  del(conf: NetConf): Promise<void>;
  check(conf: NetConf): Promise<void>;
}

/** A GC attachment, as in the CNI 1.1 `cni.dev/valid-attachments` list. */
export interface Attachment {
  containerID: string;
  ifname: string;
}

export interface PluginContext {
  env: CniEnv;
  log: Logger;
  /** ADD only: register an undo for every change; run if the ADD fails. */
  rollback: Rollback;
  ipam: IpamInvoker;
  /** the config's prevResult, parsed in its version and held in the 1.x shape */
  prevResult: Result | undefined;
}

export interface Plugin<C = unknown> {
  /** Validates and defaults the config; throws a CniError (code 7) naming the key and value. */
  loadConf(raw: NetConf, env: CniEnv): C;
  add(conf: C, ctx: PluginContext): Promise<Result>;
  del(conf: C, ctx: PluginContext): Promise<void>;
  check(conf: C, ctx: PluginContext): Promise<void>;
  gc?(conf: C, ctx: PluginContext, valid: Attachment[]): Promise<void>;
  status?(conf: C, ctx: PluginContext): Promise<void>;
}
