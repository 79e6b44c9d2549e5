/**
 * A small synchronous logger: CNI plugins are short-lived processes, and a log line must be on
 * disk before the process exits. Levels follow Multus (error, warning, info, debug, verbose).
 */
import { appendFileSync } from 'node:fs';

export type LogLevel = 'panic' | 'error' | 'warning' | 'info' | 'debug' | 'verbose';
const RANK: Record<LogLevel, number> = { panic: 0, error: 1, warning: 2, info: 3, debug: 4, verbose: 5 };

export interface LoggerOptions {
  file?: string;
  level?: string;
  stderr?: boolean;
  /** a prefix naming the invocation, e.g. the container id */
  context?: string;
}

export class Logger {
  private file: string | undefined;
  private rank: number;
  private stderr: boolean;
  private context: string;

  constructor(opts: LoggerOptions = {}) {
    this.file = opts.file || undefined;
    this.rank = RANK[(opts.level as LogLevel) ?? 'info'] ?? RANK.info;
    this.stderr = opts.stderr ?? false;
    this.context = opts.context ?? '';
  }

  /** Reconfigures from a network config's logFile/logLevel/logToStderr once it has been read. */
  configure(opts: LoggerOptions): void {
    if (opts.file !== undefined) this.file = opts.file || undefined;
    if (opts.level !== undefined) this.rank = RANK[opts.level as LogLevel] ?? this.rank;
    if (opts.stderr !== undefined) this.stderr = opts.stderr;
    if (opts.context !== undefined) this.context = opts.context;
  }

  enabled(level: LogLevel): boolean {
    return (this.file !== undefined || this.stderr) && RANK[level] <= this.rank;
  }

  log(level: LogLevel, msg: string): void {
    if (!this.enabled(level)) return;
    const line = `${new Date().toISOString()} [${level}] ${this.context ? this.context + ' ' : ''}${msg}\n`;
    if (this.file) {
      try {
        appendFileSync(this.file, line, { mode: 0o600 });
      } catch {
        // a log that cannot be written must never fail the pod
      }
    }
    if (this.stderr) process.stderr.write(line);
  }

  error(msg: string): void { this.log('error', msg); }
  warn(msg: string): void { this.log('warning', msg); }
  info(msg: string): void { this.log('info', msg); }
  debug(msg: string): void { this.log('debug', msg); }
}
