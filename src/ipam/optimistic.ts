/**
 * Optimistic transactions for the cluster stores (etcd, Kubernetes): the store.ts transaction
 * shape without a lock. A transaction reads documents with their versions (etcd mod_revision,
 * Kubernetes resourceVersion), runs fn on private copies, and commits its writes only if what
 * it read is unchanged; on a conflict it runs fn again on fresh reads, after a jittered pause.
 * There is no lease and no lock, so a slow or dead writer never holds anyone else up, and
 * writers that are not us (whereabouts itself, during a migration) conflict the same way.
 *
 * Bounded time: the whole transaction, retries included, ends by its deadline. A store that
 * does not answer, or conflicts that never stop, end it with code 11 (try again later). The
 * last part of the budget is kept for undoing a commit that was partly applied or whose answer
 * was lost: the writes are compensated (see compensate()), so a failed ADD leaves no entry.
 */
import { CniError, ErrorCode } from '../cni/errors.js';
import type { IPAllocation, IPPool, OverlappingRangeIPReservation } from './documents.js';
import type { StoreTransaction } from './store.js';

export type DocKind = 'pool' | 'reservation';
export type Doc = IPPool | OverlappingRangeIPReservation;

/** A document as stored: parsed, with the version to compare at commit and the stored text. */
export interface Versioned<T extends Doc = Doc> {
  doc: T;
  version: string;
}

/** One operation of a commit: the document must still be at `expect` (null: absent). */
export interface CommitOp {
  kind: DocKind;
  name: string;
  /** the version read, or null when it was absent */
  expect: string | null;
  /** the new document; null deletes it; undefined only compares (a read that decided something) */
  doc?: Doc | null;
}

export type CommitOutcome = 'ok' | 'conflict' | 'partial-conflict';

/**
 * What a cluster store provides. `commit` applies the writing ops if every op's document is
 * still at its expected version: 'conflict' when one moved and nothing was written,
 * 'partial-conflict' when a store without multi-document transactions (Kubernetes) wrote a
 * part before the conflict. It throws StoreUnavailable on errors worth retrying (no answer,
 * 5xx, 429); the runner then treats the commit as maybe applied.
 */
export interface OptimisticBackend {
  readonly location: string;
  read(kind: DocKind, name: string, deadline: number): Promise<Versioned | undefined>;
  commit(ops: CommitOp[], deadline: number): Promise<CommitOutcome>;
}

/** The store did not answer, or answered "later": retried until the deadline, then code 11. */
export class StoreUnavailable extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'StoreUnavailable';
  }
}

export interface OptimisticOptions {
  /** the whole transaction's budget, retries and undo included */
  timeoutMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function jitter(attempt: number): number {
  return Math.random() * Math.min(200, 4 * 2 ** Math.min(attempt, 6));
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

interface Read {
  kind: DocKind;
  name: string;
  /** what the store held (undefined: absent); fn never sees this object */
  stored: Versioned | undefined;
}

/** The part of the budget kept for undoing a commit that may have been applied in part. */
export function undoReserve(timeoutMs: number): number {
  return Math.min(2000, Math.floor(timeoutMs / 4));
}

export async function runOptimistic<T>(
  backend: OptimisticBackend,
  fn: (tx: StoreTransaction) => Promise<T>,
  opts: OptimisticOptions,
): Promise<T> {
  const start = Date.now();
  const end = start + opts.timeoutMs;
  const workEnd = end - undoReserve(opts.timeoutMs);
  let lastProblem = '';
  let conflicts = 0;
  for (let attempt = 0; ; attempt++) {
    if (Date.now() >= workEnd) {
      const why = lastProblem || (conflicts ? `${conflicts} write conflicts` : 'no time left');
      throw new CniError(ErrorCode.TryAgainLater, `IPAM store ${backend.location}: could not commit within ${opts.timeoutMs} ms (${why}); nothing was written`);
    }
    const reads = new Map<string, Read>();
    const writes = new Map<string, { kind: DocKind; name: string; doc: Doc | null }>();
    const key = (kind: DocKind, name: string) => `${kind}\0${name}`;
    const get = async (kind: DocKind, name: string): Promise<Doc | undefined> => {
      const k = key(kind, name);
      const w = writes.get(k);
      if (w) return w.doc === null ? undefined : w.doc;
      let r = reads.get(k);
      if (!r) {
        r = { kind, name, stored: await backend.read(kind, name, workEnd) };
        reads.set(k, r);
      }
      // fn mutates what it gets; the stored copy stays as read, for compensation
      return r.stored ? (structuredClone(r.stored.doc) as Doc) : undefined;
    };
    const tx: StoreTransaction = {
      getPool: async (name) => (await get('pool', name)) as IPPool | undefined,
      putPool: (pool) => void writes.set(key('pool', pool.metadata.name), { kind: 'pool', name: pool.metadata.name, doc: pool }),
      getReservation: async (name) => (await get('reservation', name)) as OverlappingRangeIPReservation | undefined,
      putReservation: (doc) => void writes.set(key('reservation', doc.metadata.name), { kind: 'reservation', name: doc.metadata.name, doc }),
      deleteReservation: (name) => void writes.set(key('reservation', name), { kind: 'reservation', name, doc: null }),
    };

    let result: T;
    try {
      result = await fn(tx);
    } catch (err) {
      if (!(err instanceof StoreUnavailable)) throw err;
      lastProblem = err.message;
      await sleep(Math.min(jitter(attempt) + 50, Math.max(0, workEnd - Date.now())));
      continue;
    }
    if (writes.size === 0) return result;

    const ops: CommitOp[] = [];
    for (const [k, r] of reads) {
      const w = writes.get(k);
      const op: CommitOp = { kind: r.kind, name: r.name, expect: r.stored?.version ?? null };
      if (w) op.doc = w.doc;
      ops.push(op);
    }
    for (const [k, w] of writes) {
      if (reads.has(k)) continue;
      // written without reading (import, migrate): replaces whatever is there
      const cur = await backend.read(w.kind, w.name, workEnd).catch((err) => {
        if (err instanceof StoreUnavailable) return err;
        throw err;
      });
      if (cur instanceof StoreUnavailable) {
        lastProblem = cur.message;
        ops.length = 0;
        break;
      }
      reads.set(k, { kind: w.kind, name: w.name, stored: cur });
      ops.push({ kind: w.kind, name: w.name, expect: cur?.version ?? null, doc: w.doc });
    }
    if (ops.length === 0) continue;

    let outcome: CommitOutcome | StoreUnavailable;
    try {
      outcome = await backend.commit(ops, workEnd);
    } catch (err) {
      if (!(err instanceof StoreUnavailable)) {
        await compensate(backend, ops, reads, end);
        throw err;
      }
      outcome = err;
    }
    if (outcome === 'ok') return result;
    if (outcome === 'conflict') {
      conflicts++;
      lastProblem = '';
    } else {
      // maybe applied in part (or whole, with the answer lost): take back what is ours
      if (outcome instanceof StoreUnavailable) lastProblem = outcome.message;
      else conflicts++;
      await compensate(backend, ops, reads, end);
    }
    await sleep(Math.min(jitter(attempt), Math.max(0, workEnd - Date.now())));
  }
}

/**
 * Takes back whatever part of a commit reached the store, without touching what others wrote
 * since: in a pool, each allocation the commit changed goes back to what it was if it still is
 * what the commit wrote; a reservation the commit created is deleted if it is still ours; one
 * it deleted is left deleted (its address is released in the pool only if the pool write went
 * through). Each fix is itself a conditional write, retried on conflict until `end`.
 */
export async function compensate(backend: OptimisticBackend, ops: CommitOp[], reads: Map<string, Read>, end: number): Promise<boolean> {
  let clean = true;
  for (const op of ops) {
    if (op.doc === undefined || op.doc === null) continue;
    const before = reads.get(`${op.kind}\0${op.name}`)?.stored?.doc;
    for (let attempt = 0; ; attempt++) {
      if (Date.now() >= end) {
        clean = false;
        break;
      }
      try {
        const cur = await backend.read(op.kind, op.name, end);
        if (!cur) break;
        let fixed: Doc | null | undefined;
        if (op.kind === 'pool') fixed = undoPool(cur.doc as IPPool, before as IPPool | undefined, op.doc as IPPool);
        else if (!before && same((cur.doc as OverlappingRangeIPReservation).spec, (op.doc as OverlappingRangeIPReservation).spec)) fixed = null;
        if (fixed === undefined) break;
        const outcome = await backend.commit([{ kind: op.kind, name: op.name, expect: cur.version, doc: fixed }], end);
        if (outcome === 'ok') break;
      } catch (err) {
        if (!(err instanceof StoreUnavailable)) throw err;
      }
      await sleep(Math.min(jitter(attempt) + 20, Math.max(0, end - Date.now())));
    }
  }
  return clean;
}

/** The pool with the commit's changes taken back where they are still the commit's; undefined when none is. */
function undoPool(cur: IPPool, before: IPPool | undefined, wrote: IPPool): IPPool | undefined {
  const was: Record<string, IPAllocation> = before?.spec.allocations ?? {};
  const now = wrote.spec.allocations;
  const allocs = { ...cur.spec.allocations };
  let changed = false;
  for (const k of new Set([...Object.keys(was), ...Object.keys(now)])) {
    if (same(was[k], now[k])) continue;
    if (!same(allocs[k], now[k])) continue;
    if (was[k] === undefined) delete allocs[k];
    else allocs[k] = was[k]!;
    changed = true;
  }
  if (!changed) return undefined;
  return { ...cur, spec: { ...cur.spec, allocations: allocs } };
}
