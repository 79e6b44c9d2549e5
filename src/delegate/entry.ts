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
  const trace = process.env.MULTINIC_TRACE === '1' ? startTrace() : undefined;
  const log = new Logger();
  let stdin = '';
  try {
    stdin = readFileSync(0, 'utf8');
  } catch {
    // no stdin (VERSION may come without one)
  }
  trace?.mark('stdin');
  const outcome = await handle(process.env, stdin, (inv) => dispatch(inv, log, process.argv0));
  trace?.mark('dispatch');
  if (outcome.error) log.error(`${process.env.CNI_COMMAND} failed: code ${outcome.error.code}: ${outcome.error.message}`);
  if (outcome.stdout) writeSync(1, outcome.stdout + '\n');
  trace?.end();
  // Exit at once: nothing may keep a CNI plugin alive after it has answered.
  process.exit(outcome.exitCode);
}

/**
 * MULTINIC_TRACE=1: one JSON line on stderr saying where this run's time went (bench/bench.mjs,
 * docs/benchmarks.md). Times in ms. `main` and `end` are CLOCK_MONOTONIC at entry and once the
 * answer is out, comparable with the parent's clock, so process start (exec, snapshot
 * deserialisation) and exit can be told apart; `node` is Node's own start-up timeline since
 * the process time origin. Per phase: `fsSync`, time in synchronous node:fs calls (cache,
 * pool and lock files); `dlopen`, loading native addons; `idle`, the event loop waiting
 * (netlink replies, async I/O, timers).
 */
function startTrace() {
  const now = () => Number(process.hrtime.bigint()) / 1e6;
  const counters = { fsSync: 0, dlopen: 0 };
  const timed = <T extends object>(obj: T, key: keyof T, counter: keyof typeof counters) => {
    const fn = obj[key] as unknown as (...a: unknown[]) => unknown;
    if (typeof fn !== 'function') return;
    (obj as Record<keyof T, unknown>)[key] = function (this: unknown, ...args: unknown[]) {
      const t = now();
      try {
        return fn.apply(this, args);
      } finally {
        counters[counter] += now() - t;
      }
    };
  };
  const fs = process.getBuiltinModule('node:fs') as unknown as Record<string, unknown>;
  for (const key of Object.keys(fs)) if (key.endsWith('Sync')) timed(fs, key, 'fsSync');
  timed(process, 'dlopen', 'dlopen');
  const { performance } = process.getBuiltinModule('node:perf_hooks');
  const start = now();
  const out: Record<string, unknown> = { main: start, sinceOrigin: performance.now(), node: performance.nodeTiming.toJSON() };
  const phases: Record<string, unknown> = {};
  let last = start;
  let elu = performance.eventLoopUtilization();
  let seen = { ...counters };
  const mark = (phase: string) => {
    const t = now();
    const e = performance.eventLoopUtilization();
    phases[phase] = {
      ms: t - last,
      fsSync: counters.fsSync - seen.fsSync,
      dlopen: counters.dlopen - seen.dlopen,
      idle: e.idle - elu.idle,
    };
    last = t;
    elu = e;
    seen = { ...counters };
  };
  return {
    mark,
    end() {
      mark('output');
      out.phases = phases;
      out.maxRssKb = process.resourceUsage().maxRSS;
      out.end = now();
      writeSync(2, `multinic-trace ${JSON.stringify(out)}\n`);
    },
  };
}
