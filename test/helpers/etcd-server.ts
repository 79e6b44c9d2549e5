/**
 * A real etcd (Debian's etcd-server) for the store tests: one member on 127.0.0.1, free ports
 * chosen at start, a data directory under the test's temp root. `kill()` ends it with SIGKILL
 * (a crash); `start()` again brings it back on the same ports and data, as a restarted member.
 *
 *   const etcd = await new EtcdServer().start();   etcd.endpoint  ->  http://127.0.0.1:<port>
 *   await etcd.kill(); await etcd.start(); await etcd.stop();
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { processTmpRoot } from './paths.js';

export const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let seq = 0;

export class EtcdServer {
  readonly dataDir = join(processTmpRoot(), `etcd-${process.pid}-${seq++}`);
  clientPort = 0;
  peerPort = 0;
  private child: ChildProcess | undefined;
  log = '';

  get endpoint(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  async start(timeoutMs = 15_000): Promise<this> {
    if (!this.clientPort) {
      this.clientPort = await freePort();
      this.peerPort = await freePort();
      mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    }
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const child = spawn(ETCD_BIN, [
      '--name', 'test',
      '--data-dir', join(this.dataDir, 'data'),
      '--listen-client-urls', this.endpoint,
      '--advertise-client-urls', this.endpoint,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `test=${peer}`,
      '--log-level', 'error',
    ], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' } });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.log += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.log += d));
    this.child = child;
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (child.exitCode !== null) throw new Error(`etcd exited with ${child.exitCode}: ${this.log.slice(-2000)}`);
      try {
        const res = await fetch(`${this.endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: 'AA==' }), signal: AbortSignal.timeout(500) });
        if (res.ok) return this;
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd did not answer within ${timeoutMs} ms: ${this.log.slice(-2000)}`);
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.kill(signal);
    await closed;
  }

  /** SIGKILL: a crashed member; start() brings it back with its data. */
  kill(): Promise<void> {
    return this.end('SIGKILL');
  }

  /** Stops it and removes its data. */
  async stop(): Promise<void> {
    await this.end('SIGTERM');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
