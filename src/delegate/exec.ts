/**
 * Real CNI delegation: a plugin type that is not built in is executed from CNI_PATH with the
 * runtime's environment and its full config on stdin, as libcni would.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrorCode } from '../cni/errors.js';
import type { CniEnv } from '../cni/env.js';
import { formatCniArgs } from '../cni/args.js';
import { parseResult } from '../cni/result.js';
import type { Command, NetConf, Result } from '../cni/types.js';
import { isRecord } from '../cni/types.js';
import type { Logger } from '../log.js';

/** Finds `type` in CNI_PATH; code 7 naming the type and the path when it is not there. */
export function findPlugin(type: string, path: string[]): string {
  if (type.includes('/') || type === '' || type === '.' || type === '..') {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid type ${JSON.stringify(type)}: not a plugin name`);
  }
  for (const dir of path) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `failed to find plugin ${JSON.stringify(type)} in path ${JSON.stringify(path)}`,
  );
}

/** Runs an external plugin; returns its parsed result for ADD, nothing otherwise. */
export function execPlugin(command: Command, conf: NetConf, env: CniEnv, log: Logger, type = conf.type): Result | undefined {
  const binary = findPlugin(type, env.path);
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: env.containerId,
    CNI_NETNS: env.netns ?? '',
    CNI_IFNAME: env.ifName,
    CNI_ARGS: formatCniArgs(env.args),
    CNI_PATH: env.path.join(':'),
  };
  log.debug(`exec ${binary} ${command} ifname=${env.ifName}`);
  const child = spawnSync(binary, [], { env: childEnv, input: JSON.stringify(conf), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (child.error) {
    throw new CniError(ErrorCode.IoFailure, `failed to execute plugin ${binary}: ${child.error.message}`);
  }
  if (child.stderr) log.debug(`${type} stderr: ${child.stderr.trim()}`);
  const stdout = child.stdout.trim();
  if (child.status !== 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(stdout);
    } catch {
      // not JSON: report what it printed
    }
    if (isRecord(parsed) && typeof parsed.code === 'number') {
      const details = typeof parsed.details === 'string' ? parsed.details : '';
      throw new CniError(parsed.code, String(parsed.msg ?? ''), details);
    }
    throw new CniError(
      ErrorCode.Internal,
      `plugin ${type} failed (exit ${child.status ?? child.signal}): ${stdout || child.stderr.trim()}`,
    );
  }
  if (command !== 'ADD') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new CniError(ErrorCode.DecodeFailure, `plugin ${type} printed a result that is not JSON: ${stdout.slice(0, 200)}`);
  }
  return parseResult(json, conf.cniVersion);
}
