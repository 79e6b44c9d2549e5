/**
 * The CNI skeleton: reads the environment and stdin, validates them, hands a parsed invocation
 * to a dispatcher and renders its result or error. It knows the protocol and nothing of Linux.
 */
import { CniError, ErrorCode, asCniError } from './errors.js';
import { type CniEnv, parseCommand, parseEnv } from './env.js';
import { formatResult, parseResult } from './result.js';
import type { NetConf, Result } from './types.js';
import { isRecord } from './types.js';
import { CURRENT_VERSION, SUPPORTED_VERSIONS, compareVersions, requireSupportedVersion } from './version.js';

export interface Invocation {
  env: CniEnv;
  conf: NetConf;
  /** the config's version, validated */
  version: string;
  prevResult: Result | undefined;
}

/** What a dispatcher returns: a result for ADD, nothing for the other commands. */
export type Dispatch = (inv: Invocation) => Promise<Result | void>;

export interface Outcome {
  stdout: string;
  exitCode: number;
  error?: CniError;
}

/** The minimum config version for each command that did not exist from the start. */
const MIN_VERSION: Partial<Record<string, string>> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

function parseStdin(stdin: string): NetConf {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(ErrorCode.DecodeFailure, `failed to decode network config on stdin: ${(err as Error).message}`);
  }
  if (!isRecord(parsed)) {
    throw new CniError(ErrorCode.DecodeFailure, `failed to decode network config on stdin: expected a JSON object, got ${JSON.stringify(parsed)}`);
  }
  for (const key of ['name', 'type', 'cniVersion'] as const) {
    if (parsed[key] !== undefined && typeof parsed[key] !== 'string') {
      throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${key} ${JSON.stringify(parsed[key])}: must be a string`);
    }
  }
  return parsed as NetConf;
}

function versionReply(stdin: string): string {
  // VERSION's stdin may be empty or carry {"cniVersion": …}; the reply echoes a supported one.
  let asked: string = CURRENT_VERSION;
  try {
    const conf = JSON.parse(stdin) as unknown;
    if (isRecord(conf) && typeof conf.cniVersion === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(conf.cniVersion)) {
      asked = conf.cniVersion;
    }
  } catch {
    // no config: answer in the current version
  }
  return JSON.stringify({ cniVersion: asked, supportedVersions: SUPPORTED_VERSIONS });
}

/** Runs one invocation to completion. Pure apart from what `dispatch` does. */
export async function handle(vars: NodeJS.ProcessEnv, stdin: string, dispatch: Dispatch): Promise<Outcome> {
  let version: string = CURRENT_VERSION;
  try {
    const command = parseCommand(vars.CNI_COMMAND);
    if (command === 'VERSION') return { stdout: versionReply(stdin), exitCode: 0 };
    const env = parseEnv(vars);
    const conf = parseStdin(stdin);
    version = requireSupportedVersion(conf.cniVersion);
    const min = MIN_VERSION[command];
    if (min && compareVersions(version, min) < 0) {
      throw new CniError(ErrorCode.IncompatibleVersion, `config version ${version} does not allow ${command} (needs ${min} or later)`);
    }
    const prevResult = conf.prevResult === undefined ? undefined : parseResult(conf.prevResult, version);
    const result = await dispatch({ env, conf, version, prevResult });
    if (command === 'ADD') {
      if (!result) throw new CniError(ErrorCode.Internal, 'plugin returned no result for ADD');
      return { stdout: JSON.stringify(formatResult(result, version)), exitCode: 0 };
    }
    return { stdout: '', exitCode: 0 };
  } catch (err) {
    const cniErr = asCniError(err);
    return { stdout: JSON.stringify(cniErr.toJSON(version)), exitCode: 1, error: cniErr };
  }
}
