/**
 * The CNI entry: picks the plugin (by the name we were run as, else the config's type), runs
 * the skeleton, prints the result or the error, exits.
 */
import { readFileSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { CniError, ErrorCode } from '../cni/errors.js';
import { handle, type Invocation } from '../cni/skel.js';
import type { NetConf, Result } from '../cni/types.js';
import { Logger } from '../log.js';
import { invoke } from './invoke.js';
import { isBuiltin } from './registry.js';

/** The plugin type: our own name when run through a symlink such as `sbr`, else conf.type. */
export function selectType(argv0: string, conf: NetConf): string {
  const self = basename(argv0);
  if (self !== 'multinic' && isBuiltin(self)) return self;
  if (isBuiltin(conf.type)) return conf.type;
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `invalid type ${JSON.stringify(conf.type)}: not a plugin built into multinic`,
  );
}

/** Logging keys as Multus (logFile, logLevel, logToStderr) and whereabouts (log_file, log_level) spell them. */
export function configureLogger(log: Logger, conf: NetConf, containerId: string): void {
  const ipam: Record<string, unknown> = conf.ipam ?? {};
  const file = conf.logFile ?? ipam.log_file;
  const level = conf.logLevel ?? ipam.log_level;
  log.configure({
    file: typeof file === 'string' ? file : undefined,
    level: typeof level === 'string' ? level : undefined,
    stderr: conf.logToStderr === true,
    context: containerId ? containerId.slice(0, 12) : '',
  });
}

export async function dispatch(inv: Invocation, log: Logger, argv0: string): Promise<Result | void> {
  configureLogger(log, inv.conf, inv.env.containerId);
  const type = selectType(argv0, inv.conf);
  log.debug(`${inv.env.command} type=${type} ifname=${inv.env.ifName} netns=${inv.env.netns ?? ''}`);
  const result = await invoke(inv.env.command, inv.conf, inv.env, log, { type, prevResult: inv.prevResult });
  return result ?? undefined;
}

export async function runCniMain(): Promise<void> {
  const log = new Logger();
  let stdin = '';
  try {
    stdin = readFileSync(0, 'utf8');
  } catch {
    // no stdin (VERSION may come without one)
  }
  const outcome = await handle(process.env, stdin, (inv) => dispatch(inv, log, process.argv0));
  if (outcome.error) log.error(`${process.env.CNI_COMMAND} failed: code ${outcome.error.code}: ${outcome.error.message}`);
  if (outcome.stdout) writeSync(1, outcome.stdout + '\n');
  // Exit at once: nothing may keep a CNI plugin alive after it has answered.
  process.exit(outcome.exitCode);
}
