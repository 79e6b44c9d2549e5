/**
 * The node-local store: one JSON file per IPPool and per OverlappingRangeIPReservation under
 * data_dir, read-modified-written under one proper-lockfile lock for the whole directory.
 *
 *   <data_dir>/ippools/<pool name>.json
 *   <data_dir>/overlappingrangeipreservations/<reservation name>.json
 *   <data_dir>/pools.lock/            the lock (a directory, proper-lockfile's)
 *
 * One lock for all pools, as whereabouts serialises all allocations behind one leader lease:
 * overlapping-range checks span the pools of a network, and `multinic pool release` must lock
 * a pool knowing only its name. An ADD holds it for milliseconds.
 *
 * Writes are atomic: a temp file in the same directory, fsync, rename. A crash (or SIGKILL)
 * at any point leaves the old file or the new one. The directories are not fsynced (2 ms
 * each on the build machine, inside the lock): a power loss may then forget the last renames,
 * but it also ends every pod of this node, whose sandboxes are all ADDed again.
 * A file that does not parse is an error naming it (code 5), never reset.
 *
 * proper-lockfile brings signal-exit, which hooks SIGTERM, SIGINT, SIGHUP and the like (and
 * process.exit) to remove the locks this process holds before it dies. For a plugin that is
 * what we want: a runtime that kills a slow ADD with SIGTERM does not leave the lock to go
 * stale. Only SIGKILL leaves it, and then the stale timeout below frees it. Files are 0600 and
 * directories 0700, and every path is checked to stay inside data_dir.
 */
import {
  type FSWatcher,
  accessSync,
  constants,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  unlinkSync,
  watch,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import lockfile from 'proper-lockfile';
import { CniError, ErrorCode } from '../cni/errors.js';
import {
  type IPPool,
  type OverlappingRangeIPReservation,
  isSafeName,
  normalizePool,
  poolShapeError,
  reservationShapeError,
} from './documents.js';
import type { IpamStore, StoreTransaction } from './store.js';

export const DEFAULT_DATA_DIR = '/var/lib/cni/whereabouts';
const POOLS_DIR = 'ippools';
const RESERVATIONS_DIR = 'overlappingrangeipreservations';

export interface FileStoreOptions {
  /**
   * A lock whose holder has not touched it for this long is taken over (a holder killed with
   * SIGKILL leaves its lock behind). proper-lockfile's floor is 2000 ms; a live holder
   * refreshes it every `lockUpdateMs`, so only a holder stalled for longer loses it.
   */
  lockStaleMs?: number;
  lockUpdateMs?: number;
  /** How long to wait for the lock before failing with code 11 (try again later). */
  lockTimeoutMs?: number;
}

const DEFAULTS: Required<FileStoreOptions> = { lockStaleMs: 3000, lockUpdateMs: 1000, lockTimeoutMs: 60_000 };

function ioError(msg: string): CniError {
  return new CniError(ErrorCode.IoFailure, msg);
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Writes the temp files of a commit and makes them durable, all at once: the fsyncs run in
 * parallel (libuv's thread pool), so a commit of a reservation and a pool waits for about one
 * journal commit instead of two, inside the lock. Returns the renames still to do.
 */
async function stageAll(files: Array<{ path: string; data: string }>): Promise<Array<{ tmp: string; path: string }>> {
  return Promise.all(
    files.map(async ({ path, data }) => {
      const tmp = `${path}.tmp-${process.pid}`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return { tmp, path };
    }),
  );
}

export class FileStore implements IpamStore {
  readonly dataDir: string;
  readonly location: string;
  private readonly opts: Required<FileStoreOptions>;

  constructor(dataDir: string = DEFAULT_DATA_DIR, opts: FileStoreOptions = {}) {
    this.dataDir = resolve(dataDir);
    this.location = `file:${this.dataDir}`;
    this.opts = { ...DEFAULTS, ...opts };
  }

  /** The path of a document, refusing any name that could leave its directory. */
  private pathOf(kind: typeof POOLS_DIR | typeof RESERVATIONS_DIR, name: string): string {
    if (!isSafeName(name)) throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${kind} name ${JSON.stringify(name)}: not a safe object name`);
    const dir = join(this.dataDir, kind);
    const path = resolve(dir, `${name}.json`);
    if (!path.startsWith(dir + sep)) throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${kind} name ${JSON.stringify(name)}: leaves ${dir}`);
    return path;
  }

  private ensureDirs(): void {
    try {
      for (const d of [this.dataDir, join(this.dataDir, POOLS_DIR), join(this.dataDir, RESERVATIONS_DIR)]) {
        mkdirSync(d, { recursive: true, mode: 0o700 });
      }
    } catch (err) {
      throw ioError(`cannot create the IPAM data directory ${this.dataDir}: ${(err as Error).message}`);
    }
  }

  private readDoc(path: string): unknown {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw ioError(`cannot read ${path}: ${(err as Error).message}`);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw ioError(`${path} does not parse (${(err as Error).message}); it is left as it is: repair or remove it`);
    }
  }

  readPool(name: string): IPPool | undefined {
    const path = this.pathOf(POOLS_DIR, name);
    const doc = this.readDoc(path);
    if (doc === undefined) return undefined;
    const why = poolShapeError(doc);
    if (why) throw ioError(`${path} is not an IPPool (${why}); it is left as it is: repair or remove it`);
    return normalizePool(doc as Record<string, unknown>);
  }

  readReservation(name: string): OverlappingRangeIPReservation | undefined {
    const path = this.pathOf(RESERVATIONS_DIR, name);
    const doc = this.readDoc(path);
    if (doc === undefined) return undefined;
    const why = reservationShapeError(doc);
    if (why) throw ioError(`${path} is not an OverlappingRangeIPReservation (${why}); it is left as it is: repair or remove it`);
    return doc as OverlappingRangeIPReservation;
  }

  private async acquire(): Promise<{ release: () => Promise<void>; compromised: () => Error | undefined }> {
    this.ensureDirs();
    let compromised: Error | undefined;
    const deadline = Date.now() + this.opts.lockTimeoutMs;
    // Waiters sleep until the lock directory goes away (inotify on data_dir, which holds
    // nothing else that changes) rather than polling: 63 processes polling every few ms took
    // the CPU the holder needed, and 64 concurrent ADDs ran 2-3 times slower. The timer is a
    // fallback, and what notices a stale lock.
    let wake: (() => void) | undefined;
    let events = 0;
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(this.dataDir, { persistent: false }, () => {
        events++;
        wake?.();
      });
      watcher.on('error', () => {});
    } catch {
      // no inotify: the timer alone
    }
    try {
      for (let attempt = 0; ; attempt++) {
        const seen = events;
        try {
          const release = await lockfile.lock(this.dataDir, {
            lockfilePath: join(this.dataDir, 'pools.lock'),
            realpath: false,
            stale: this.opts.lockStaleMs,
            update: this.opts.lockUpdateMs,
            retries: 0,
            onCompromised: (err) => {
              compromised = err;
            },
          });
          return { release, compromised: () => compromised };
        } catch (err) {
          if (errno(err) !== 'ELOCKED') throw ioError(`cannot lock ${this.dataDir}: ${(err as Error).message}`);
          if (Date.now() >= deadline) {
            throw new CniError(ErrorCode.TryAgainLater, `timed out after ${this.opts.lockTimeoutMs} ms waiting for the IPAM lock in ${this.dataDir}`);
          }
          // A release between our attempt and now: try again at once rather than sleep on it.
          if (events !== seen) continue;
          const fallback = watcher ? 50 + Math.random() * 100 : 2 + Math.random() * Math.min(40, 5 + attempt * 2);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, fallback);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
      }
    } finally {
      watcher?.close();
    }
  }

  async transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    const lock = await this.acquire();
    try {
      const pools = new Map<string, IPPool>();
      const reservations = new Map<string, OverlappingRangeIPReservation | null>();
      const tx: StoreTransaction = {
        getPool: async (name) => pools.get(name) ?? this.readPool(name),
        putPool: (pool) => void pools.set(pool.metadata.name, pool),
        getReservation: async (name) => {
          const pending = reservations.get(name);
          if (pending !== undefined) return pending ?? undefined;
          return this.readReservation(name);
        },
        putReservation: (doc) => void reservations.set(doc.metadata.name, doc),
        deleteReservation: (name) => void reservations.set(name, null),
      };
      const result = await fn(tx);
      const failed = lock.compromised();
      if (failed) throw ioError(`lost the IPAM lock on ${this.dataDir} before writing (${failed.message}); nothing was written`);
      await this.commit(pools, reservations);
      return result;
    } finally {
      await lock.release().catch(() => {});
    }
  }

  /**
   * Writes in the order store.ts requires: new reservations, pools, deleted reservations. Every
   * new file is complete and fsynced before the first rename; each rename is atomic.
   */
  private async commit(pools: Map<string, IPPool>, reservations: Map<string, OverlappingRangeIPReservation | null>): Promise<void> {
    try {
      const files: Array<{ path: string; data: string }> = [];
      for (const [name, doc] of reservations) if (doc !== null) files.push({ path: this.pathOf(RESERVATIONS_DIR, name), data: JSON.stringify(doc) });
      for (const [name, pool] of pools) files.push({ path: this.pathOf(POOLS_DIR, name), data: JSON.stringify(pool) });
      for (const { tmp, path } of await stageAll(files)) renameSync(tmp, path);
      for (const [name, doc] of reservations) {
        if (doc !== null) continue;
        try {
          unlinkSync(this.pathOf(RESERVATIONS_DIR, name));
        } catch (err) {
          if (errno(err) !== 'ENOENT') throw err;
        }
      }
    } catch (err) {
      if (err instanceof CniError) throw err;
      throw ioError(`cannot write the IPAM store ${this.dataDir}: ${(err as Error).message}`);
    }
  }

  private names(kind: typeof POOLS_DIR | typeof RESERVATIONS_DIR): string[] {
    let files: string[];
    try {
      files = readdirSync(join(this.dataDir, kind));
    } catch (err) {
      if (errno(err) === 'ENOENT') return [];
      throw ioError(`cannot list ${join(this.dataDir, kind)}: ${(err as Error).message}`);
    }
    return files
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length))
      .filter(isSafeName)
      .sort();
  }

  /** The directories exist (or can be made) and are writable. */
  async checkReady(): Promise<void> {
    try {
      this.ensureDirs();
      for (const d of [this.dataDir, join(this.dataDir, POOLS_DIR), join(this.dataDir, RESERVATIONS_DIR)]) accessSync(d, constants.W_OK | constants.X_OK);
    } catch (err) {
      throw new CniError(ErrorCode.PluginNotAvailable, `IPAM store ${this.dataDir} is not usable: ${(err as Error).message}`);
    }
  }

  async listPools(): Promise<IPPool[]> {
    return this.names(POOLS_DIR).flatMap((n) => this.readPool(n) ?? []);
  }

  async listReservations(): Promise<OverlappingRangeIPReservation[]> {
    return this.names(RESERVATIONS_DIR).flatMap((n) => this.readReservation(n) ?? []);
  }
}
