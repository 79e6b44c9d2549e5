/**
 * Where the things under test live. Paths are absolute, resolved from the
 * repository root, so tests behave the same whatever vitest's cwd is.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The libcni driver built by `make test-deps`. */
export const CNITOOL = join(REPO_ROOT, 'build/cnitool');

/** Debian's reference plugins (containernetworking-plugins). */
export const REFERENCE_CNI_DIR = '/usr/lib/cni';

/** The product under test: $MULTINIC_BIN, default dist/multinic. */
export function multinicBin(): string {
  return resolve(REPO_ROOT, process.env.MULTINIC_BIN ?? 'dist/multinic');
}

/**
 * Every name the harness creates on the system (netns, temp dirs) starts with
 * this, followed by the creating process's pid, so leftovers of a crashed run
 * can be recognised and swept without touching a concurrent run's objects.
 */
export const TEST_PREFIX = 'mntest-';

let tmpRoot: string | undefined;

/**
 * This process's scratch directory (/tmp/mntest-<pid>-XXXXXX), created on
 * first use and removed after each test file (setup-file.ts) or, failing
 * that, at process exit. vitest may kill a worker without an 'exit' event,
 * so the next run's `sweepTmpDirs` is the final safety net.
 */
export function processTmpRoot(): string {
  if (tmpRoot === undefined || !existsSync(tmpRoot)) {
    const dir = mkdtempSync(join(tmpdir(), `${TEST_PREFIX}${process.pid}-`));
    tmpRoot = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return tmpRoot;
}

/** Removes this process's scratch directory; the next processTmpRoot() makes a new one. */
export function removeProcessTmpRoot(): void {
  if (tmpRoot !== undefined) rmSync(tmpRoot, { recursive: true, force: true });
  tmpRoot = undefined;
}

/** Parses the pid out of a harness-made name; undefined for foreign names. */
export function ownerPid(name: string): number | undefined {
  if (!name.startsWith(TEST_PREFIX)) return undefined;
  const pid = Number.parseInt(name.slice(TEST_PREFIX.length), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but is not ours. Only ESRCH means it is gone.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes harness temp dirs whose creating process is dead. */
export function sweepTmpDirs(): string[] {
  const removed: string[] = [];
  const base = tmpdir();
  if (!existsSync(base)) return removed;
  for (const name of readdirSync(base)) {
    const pid = ownerPid(name);
    if (pid === undefined || isAlive(pid)) continue;
    rmSync(join(base, name), { recursive: true, force: true });
    removed.push(join(base, name));
  }
  return removed;
}
