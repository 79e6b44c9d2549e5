/**
 * The optimistic runner of the cluster stores over an in-memory backend with versions: the
 * allocator's result under interleaved writers, a partly applied commit taken back, the
 * deadline as code 11.
 */
import { describe, expect, it } from 'vitest';
import type { IPPool } from '../../../src/ipam/documents.js';
import { allocateAddresses } from '../../../src/ipam/ipam.js';
import { type CommitOp, type CommitOutcome, type Doc, type OptimisticBackend, StoreUnavailable, type Versioned, runOptimistic } from '../../../src/ipam/optimistic.js';
import { parseRange } from '../../../src/ipam/range.js';
import type { IpamStore, StoreTransaction } from '../../../src/ipam/store.js';

class MemoryBackend implements OptimisticBackend, IpamStore {
  readonly location = 'memory';
  docs = new Map<string, { doc: string; version: number }>();
  rev = 0;
  /** fail the next commits: 'conflict' | 'partial' | 'down' */
  faults: Array<'conflict' | 'partial' | 'down'> = [];
  down = false;
  commits = 0;
  constructor(readonly timeoutMs = 2000) {}

  async read(kind: string, name: string): Promise<Versioned | undefined> {
    if (this.down) throw new StoreUnavailable('down');
    await new Promise((r) => setImmediate(r));
    const d = this.docs.get(`${kind}/${name}`);
    return d ? { doc: JSON.parse(d.doc) as Doc, version: String(d.version) } : undefined;
  }

  private apply(op: CommitOp): void {
    const k = `${op.kind}/${op.name}`;
    if (op.doc === null) this.docs.delete(k);
    else if (op.doc) this.docs.set(k, { doc: JSON.stringify(op.doc), version: ++this.rev });
  }

  async commit(ops: CommitOp[]): Promise<CommitOutcome> {
    this.commits++;
    if (this.down) throw new StoreUnavailable('down');
    await new Promise((r) => setImmediate(r));
    const fault = this.faults.shift();
    if (fault === 'conflict') return 'conflict';
    const writes = ops.filter((o) => o.doc !== undefined);
    if (fault === 'partial') {
      // the first write lands, then the answer is lost
      this.apply(writes[0]!);
      throw new StoreUnavailable('connection reset');
    }
    if (fault === 'down') {
      this.down = true;
      throw new StoreUnavailable('down');
    }
    for (const op of ops) {
      const cur = this.docs.get(`${op.kind}/${op.name}`);
      if ((op.expect === null) !== (cur === undefined) || (cur && String(cur.version) !== op.expect)) return 'conflict';
    }
    for (const op of writes) this.apply(op);
    return 'ok';
  }

  transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    return runOptimistic(this, fn, { timeoutMs: this.timeoutMs });
  }
  async listPools(): Promise<IPPool[]> {
    return [...this.docs.entries()].filter(([k]) => k.startsWith('pool/')).map(([, v]) => JSON.parse(v.doc) as IPPool);
  }
  async listReservations() {
    return [...this.docs.entries()].filter(([k]) => k.startsWith('reservation/')).map(([, v]) => JSON.parse(v.doc));
  }
  async checkReady() {}
}

const req = { networkName: '', ranges: [parseRange({ range: '10.5.0.0/24' })], overlapping: true };
const owner = (n: number) => ({ containerId: `c${n}`, podRef: `ns/p${n}`, ifName: 'net1' });

describe('optimistic transactions', () => {
  it('50 interleaved writers: 50 distinct addresses, every one in the pool', async () => {
    const b = new MemoryBackend(10_000);
    const leases = await Promise.all(Array.from({ length: 50 }, (_, i) => allocateAddresses(b, req, owner(i))));
    expect(new Set(leases.map((l) => l[0]!.ip)).size).toBe(50);
    expect(Object.keys((await b.listPools())[0]!.spec.allocations)).toHaveLength(50);
    expect(await b.listReservations()).toHaveLength(50);
    expect(b.commits).toBeGreaterThan(50);
  });

  it('a commit applied in part is taken back before the retry', async () => {
    const b = new MemoryBackend();
    await allocateAddresses(b, req, owner(1));
    b.faults = ['partial'];
    const [l] = await allocateAddresses(b, req, owner(2));
    expect(l!.ip).toBe('10.5.0.2');
    expect((await b.listReservations()).map((r) => r.spec.containerid).sort()).toEqual(['c1', 'c2']);
  });

  it('a store that goes away mid-commit: code 11 by the deadline', async () => {
    const b = new MemoryBackend(600);
    await allocateAddresses(b, req, owner(1));
    b.faults = ['down'];
    const t = Date.now();
    await expect(allocateAddresses(b, req, owner(2))).rejects.toMatchObject({ code: 11 });
    expect(Date.now() - t).toBeLessThan(900);
    b.down = false;
    // nothing of c2 survived a commit the store may or may not have applied: it was never applied here
    expect(Object.values((await b.listPools())[0]!.spec.allocations).map((a) => a.id)).toEqual(['c1']);
  });

  it('conflicts that never end: code 11 naming them', async () => {
    const b = new MemoryBackend(300);
    b.faults = Array(10_000).fill('conflict');
    await expect(allocateAddresses(b, req, owner(1))).rejects.toThrow(/write conflicts/);
  });
});
