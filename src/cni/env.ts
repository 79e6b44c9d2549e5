import { parseCniArgs } from './args.js';
import { CniError, ErrorCode } from './errors.js';
import type { Command } from './types.js';

const COMMANDS: readonly Command[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'];

/** The runtime's environment for one invocation, validated. */
export interface CniEnv {
  command: Command;
  containerId: string;
  /** absent on DEL when the runtime no longer has the namespace */
  netns: string | undefined;
  ifName: string;
  args: Map<string, string>;
  /** CNI_PATH split on ':' */
  path: string[];
}

/** Which variables each command requires (CNI spec 1.1, "Parameters"). */
const REQUIRED: Record<Command, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  VERSION: [],
  GC: [],
  STATUS: [],
};

// A container ID is an alphanumeric string that may contain '_', '.' and '-' (spec 1.1).
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
// Linux IFNAMSIZ is 16 with the NUL: names are 1..15 bytes, no '/', ':' or whitespace, not '.' or '..'.
const INVALID_IFNAME = /[/:\s]/;

export function parseCommand(raw: string | undefined): Command {
  if (!raw) throw new CniError(ErrorCode.InvalidEnvironment, 'required environment variable CNI_COMMAND is not set');
  if (!(COMMANDS as readonly string[]).includes(raw)) {
    throw new CniError(ErrorCode.InvalidEnvironment, `unknown CNI_COMMAND ${JSON.stringify(raw)}`);
  }
  return raw as Command;
}

export function validateIfName(name: string, source = 'CNI_IFNAME'): void {
  if (name.length === 0 || Buffer.byteLength(name) > 15 || name === '.' || name === '..' || INVALID_IFNAME.test(name)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `invalid ${source} ${JSON.stringify(name)}: an interface name is 1 to 15 characters without '/', ':' or spaces`,
    );
  }
}

export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = parseCommand(env.CNI_COMMAND);
  for (const name of REQUIRED[command]) {
    if (!env[name]) throw new CniError(ErrorCode.InvalidEnvironment, `required environment variable ${name} is not set`);
  }
  const containerId = env.CNI_CONTAINERID ?? '';
  if (containerId && !CONTAINER_ID.test(containerId)) {
    throw new CniError(ErrorCode.InvalidEnvironment, `invalid CNI_CONTAINERID ${JSON.stringify(containerId)}: must be alphanumeric with '_', '.' or '-'`);
  }
  const ifName = env.CNI_IFNAME ?? '';
  if (ifName) validateIfName(ifName);
  return {
    command,
    containerId,
    netns: env.CNI_NETNS || undefined,
    ifName,
    args: parseCniArgs(env.CNI_ARGS),
    path: (env.CNI_PATH ?? '').split(':').filter((p) => p !== ''),
  };
}
