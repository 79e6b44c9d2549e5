/**
 * Where pools live. A store has one operation shape, read-modify-write under a lock or a
 * transaction: `transaction(fn)` gives fn a consistent view; fn's writes are applied when it
 * returns, and none of them if it throws. The file store (file-store.ts) locks a directory;
 * an etcd or Kubernetes store maps the same calls onto its own transactions.
 *
 * Commit order (a store that cannot commit atomically must keep it): new reservations first,
 * then pools, then deleted reservations. A crash in between then leaves at worst a
 * reservation that holds an address nobody uses, never an address handed out twice.
 */
import type { IPPool, OverlappingRangeIPReservation } from './documents.js';

export interface StoreTransaction {
  /** The pool of that name, or undefined when the store has none. */
  getPool(name: string): Promise<IPPool | undefined>;
  /** Writes the pool at commit (the document passed, as it is then). */
  putPool(pool: IPPool): void;
  getReservation(name: string): Promise<OverlappingRangeIPReservation | undefined>;
  putReservation(doc: OverlappingRangeIPReservation): void;
  deleteReservation(name: string): void;
}

export interface IpamStore {
  /** Where the store is, for messages ("file:/var/lib/cni/whereabouts"). */
  readonly location: string;
  transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T>;
  /** Every pool, read without the lock (a consistent snapshot of each file). */
  listPools(): Promise<IPPool[]>;
  listReservations(): Promise<OverlappingRangeIPReservation[]>;
  /** Throws (CNI code 50) when the store cannot take allocations now: STATUS. */
  checkReady(): Promise<void>;
}
