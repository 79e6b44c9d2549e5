/**
 * Process running for the test helpers. Everything the harness does to the
 * system (ip, the driver, the product) goes through `run`, which never throws
 * on a non-zero exit: tests assert on exit codes, so a failure is data.
 */
import { spawn } from 'node:child_process';

export interface RunOptions {
  /** Full environment of the child. Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed. */
  input?: string;
  cwd?: string;
  /** Killed with SIGKILL after this long; default 60 s. */
  timeoutMs?: number;
}

export interface RunResult {
  /** Exit status; -1 when the child was killed by a signal or timed out. */
  exitCode: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('run: empty argv');
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ exitCode: code ?? -1, signal, stdout, stderr, timedOut });
    });
    // A child that exits without reading stdin makes the write fail with EPIPE;
    // that is the child's business (its exit code tells), not a harness error.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** Like `run`, but a non-zero exit is an error carrying the command's output. */
export async function runOk(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.exitCode !== 0) {
    throw new Error(
      `command failed (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}): ${argv.join(' ')}\n${r.stderr}${r.stdout}`,
    );
  }
  return r.stdout;
}

/** Parses JSON, returning undefined instead of throwing (for "maybe JSON" output). */
export function tryParseJson(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  try {
    return JSON.parse(trimmed) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Polls `check` until it returns a value other than undefined/false, or
 * throws after timeoutMs. For kernel state that settles asynchronously
 * (veth carrier, IPv6 link-local addresses).
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 5_000, intervalMs = 25 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** n jobs across `nodes` concurrent workers, job i on worker i % nodes (named node0, node1, …). */
export async function onNodes<T>(n: number, nodes: number, job: (i: number, node: string) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  await Promise.all(
    Array.from({ length: nodes }, async (_, w) => {
      for (let i = w; i < n; i += nodes) out[i] = await job(i, `node${w}`);
    }),
  );
  return out;
}
