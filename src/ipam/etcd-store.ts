/**
 * Pools in etcd v3, for every node of a cluster: one key per document, holding the same JSON
 * the file store and Kubernetes hold (an IPPool or an OverlappingRangeIPReservation):
 *
 *   <prefix>/ippools/<pool name>
 *   <prefix>/overlappingrangeipreservations/<reservation name>
 *
 * prefix defaults to /whereabouts.cni.cncf.io (whereabouts' old etcd keys, /whereabouts/<cidr>
 * with a line format, are another shape and are left alone). A transaction is one etcd Txn
 * that compares the mod_revision of every key it read (create_revision 0 for a key it found
 * absent) and puts/deletes its writes: all or nothing, no lock (optimistic.ts retries).
 */
import { CniError, ErrorCode } from '../cni/errors.js';
import {
  type IPPool,
  type OverlappingRangeIPReservation,
  isSafeName,
  normalizePool,
  poolShapeError,
  reservationShapeError,
} from './documents.js';
import { type EtcdConfig, EtcdClient, EtcdError, type TxnOp } from './etcd-client.js';
import { type CommitOp, type CommitOutcome, type DocKind, type OptimisticBackend, StoreUnavailable, type Versioned, runOptimistic } from './optimistic.js';
import type { IpamStore, StoreTransaction } from './store.js';

export const DEFAULT_ETCD_PREFIX = '/whereabouts.cni.cncf.io';
export const DEFAULT_TIMEOUT_MS = 10_000;

export interface EtcdStoreOptions extends EtcdConfig {
  prefix?: string;
  timeoutMs?: number;
}

const DIRS: Record<DocKind, string> = { pool: 'ippools', reservation: 'overlappingrangeipreservations' };

function unavailable(err: unknown, location: string, timeoutMs: number): CniError {
  if (err instanceof StoreUnavailable) return new CniError(ErrorCode.TryAgainLater, `IPAM store ${location} unavailable within ${timeoutMs} ms: ${err.message}`);
  if (err instanceof EtcdError) return new CniError(ErrorCode.TryAgainLater, `IPAM store ${location}: ${err.message}`);
  return err as CniError;
}

export class EtcdStore implements IpamStore, OptimisticBackend {
  readonly location: string;
  readonly client: EtcdClient;
  private readonly prefix: string;
  private readonly timeoutMs: number;

  constructor(opts: EtcdStoreOptions) {
    this.client = new EtcdClient(opts);
    this.prefix = (opts.prefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.location = `etcd:${this.client.location}${this.prefix}`;
  }

  close(): void {
    this.client.close();
  }

  private key(kind: DocKind, name: string): string {
    if (!isSafeName(name)) throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${DIRS[kind]} name ${JSON.stringify(name)}: not a safe object name`);
    return `${this.prefix}/${DIRS[kind]}/${name}`;
  }

  private parse(kind: DocKind, key: string, value: string): IPPool | OverlappingRangeIPReservation {
    let doc: unknown;
    try {
      doc = JSON.parse(value);
    } catch (err) {
      throw new CniError(ErrorCode.IoFailure, `etcd key ${key} does not parse (${(err as Error).message}); it is left as it is: repair or remove it`);
    }
    const why = kind === 'pool' ? poolShapeError(doc) : reservationShapeError(doc);
    if (why) throw new CniError(ErrorCode.IoFailure, `etcd key ${key} is not an ${kind === 'pool' ? 'IPPool' : 'OverlappingRangeIPReservation'} (${why}); it is left as it is`);
    return kind === 'pool' ? normalizePool(doc as Record<string, unknown>) : (doc as OverlappingRangeIPReservation);
  }

  async read(kind: DocKind, name: string, deadline: number): Promise<Versioned | undefined> {
    const key = this.key(kind, name);
    const kv = await this.client.get(key, deadline);
    if (!kv) return undefined;
    return { doc: this.parse(kind, key, kv.value), version: kv.modRevision };
  }

  async commit(ops: CommitOp[], deadline: number): Promise<CommitOutcome> {
    const compares = ops.map((op) => {
      const key = this.key(op.kind, op.name);
      return op.expect === null ? { key, absent: true as const } : { key, modRevision: op.expect };
    });
    const writes = ops.flatMap((op): TxnOp[] => {
      if (op.doc === undefined) return [];
      const key = this.key(op.kind, op.name);
      if (op.doc === null) return [{ del: key }];
      // metadata as whereabouts' objects have it, without another store's bookkeeping
      const doc = { ...op.doc, metadata: { name: op.doc.metadata.name } };
      return [{ put: key, value: JSON.stringify(doc) }];
    });
    return (await this.client.txn(compares, writes, deadline)) ? 'ok' : 'conflict';
  }

  async transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    try {
      return await runOptimistic(this, fn, { timeoutMs: this.timeoutMs });
    } catch (err) {
      throw unavailable(err, this.location, this.timeoutMs);
    }
  }

  private async listKind<T>(kind: DocKind): Promise<T[]> {
    const dir = `${this.prefix}/${DIRS[kind]}/`;
    try {
      const kvs = await this.client.list(dir, Date.now() + this.timeoutMs);
      return kvs.filter((kv) => isSafeName(kv.key.slice(dir.length))).map((kv) => this.parse(kind, kv.key, kv.value) as T);
    } catch (err) {
      throw unavailable(err, this.location, this.timeoutMs);
    }
  }

  listPools(): Promise<IPPool[]> {
    return this.listKind<IPPool>('pool');
  }

  listReservations(): Promise<OverlappingRangeIPReservation[]> {
    return this.listKind<OverlappingRangeIPReservation>('reservation');
  }

  async checkReady(): Promise<void> {
    try {
      await this.client.get(`${this.prefix}/ippools/`, Date.now() + Math.min(this.timeoutMs, 5000));
    } catch (err) {
      throw new CniError(ErrorCode.PluginNotAvailable, `IPAM store ${this.location} is not usable: ${(err as Error).message}`);
    }
  }
}
