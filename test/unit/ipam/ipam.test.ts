/**
 * IPAM operations against two stores: an in-memory one written here (the allocator must not
 * care which store it runs on) and the file store.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniError } from '../../../src/cni/errors.js';
import type { IPPool, OverlappingRangeIPReservation } from '../../../src/ipam/documents.js';
import { FileStore } from '../../../src/ipam/file-store.js';
import { type IpamRequest, allocateAddresses, collectGarbage, findAddresses, releaseAddresses } from '../../../src/ipam/ipam.js';
import { parseRange } from '../../../src/ipam/range.js';
import type { IpamStore, StoreTransaction } from '../../../src/ipam/store.js';

class MemoryStore implements IpamStore {
  readonly location = 'memory:';
  pools = new Map<string, string>();
  reservations = new Map<string, string>();

  async transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    const pools = new Map<string, IPPool>();
    const res = new Map<string, OverlappingRangeIPReservation | null>();
    const result = await fn({
      getPool: async (n) => pools.get(n) ?? (this.pools.has(n) ? JSON.parse(this.pools.get(n)!) : undefined),
      putPool: (p) => void pools.set(p.metadata.name, p),
      getReservation: async (n) => (res.has(n) ? res.get(n) ?? undefined : this.reservations.has(n) ? JSON.parse(this.reservations.get(n)!) : undefined),
      putReservation: (d) => void res.set(d.metadata.name, d),
      deleteReservation: (n) => void res.set(n, null),
    });
    for (const [n, p] of pools) this.pools.set(n, JSON.stringify(p));
    for (const [n, d] of res) d ? this.reservations.set(n, JSON.stringify(d)) : this.reservations.delete(n);
    return result;
  }
  async listPools(): Promise<IPPool[]> {
    return [...this.pools.values()].map((s) => JSON.parse(s));
  }
  async listReservations(): Promise<OverlappingRangeIPReservation[]> {
    return [...this.reservations.values()].map((s) => JSON.parse(s));
  }
  async checkReady(): Promise<void> {}
}

const req = (ranges: string[], extra: Partial<IpamRequest> = {}): IpamRequest => ({
  networkName: '',
  ranges: ranges.map((r) => parseRange({ range: r })),
  overlapping: true,
  ...extra,
});
const pod = (n: number, ifName = 'net1') => ({ containerId: `c${n}`, podRef: `ns/p${n}`, ifName });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ipam-unit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe.each([
  ['memory store', () => new MemoryStore() as IpamStore],
  ['file store', () => new FileStore(dir) as IpamStore],
])('IPAM on the %s', (_name, makeStore) => {
  it('allocates the lowest free address and writes an IPPool document', async () => {
    const store = makeStore();
    const [a] = await allocateAddresses(store, req(['10.1.0.0/24']), pod(1));
    const [b] = await allocateAddresses(store, req(['10.1.0.0/24']), pod(2));
    expect([a!.address, b!.address]).toEqual(['10.1.0.1/24', '10.1.0.2/24']);
    const [pool] = await store.listPools();
    expect(pool).toEqual({
      apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: '10.1.0.0-24' },
      spec: {
        range: '10.1.0.0/24',
        allocations: {
          '1': { id: 'c1', podref: 'ns/p1', ifname: 'net1' },
          '2': { id: 'c2', podref: 'ns/p2', ifname: 'net1' },
        },
      },
    });
    expect((await store.listReservations()).map((r) => r.metadata.name).sort()).toEqual(['10.1.0.1', '10.1.0.2']);
  });

  it('re-ADD of the same pod and ifname returns the same address with the new container ID', async () => {
    const store = makeStore();
    await allocateAddresses(store, req(['10.1.0.0/24']), pod(1));
    const [again] = await allocateAddresses(store, req(['10.1.0.0/24']), { ...pod(1), containerId: 'new' });
    expect(again!.address).toBe('10.1.0.1/24');
    const [pool] = await store.listPools();
    expect(pool!.spec.allocations['1']).toEqual({ id: 'new', podref: 'ns/p1', ifname: 'net1' });
    // another ifname of the same pod is another address
    const [net2] = await allocateAddresses(store, req(['10.1.0.0/24']), pod(1, 'net2'));
    expect(net2!.address).toBe('10.1.0.2/24');
  });

  it('without a pod, container ID and ifname identify the allocation', async () => {
    const store = makeStore();
    const anon = (c: string) => ({ containerId: c, podRef: '', ifName: 'eth0' });
    const [a] = await allocateAddresses(store, req(['10.1.0.0/24']), anon('x'));
    const [b] = await allocateAddresses(store, req(['10.1.0.0/24']), anon('y'));
    const [a2] = await allocateAddresses(store, req(['10.1.0.0/24']), anon('x'));
    expect([a!.ip, b!.ip, a2!.ip]).toEqual(['10.1.0.1', '10.1.0.2', '10.1.0.1']);
  });

  it('dual stack: one address per range, in the configured order', async () => {
    const store = makeStore();
    const leases = await allocateAddresses(store, req(['fd00:10::/64', '10.1.0.0/24']), pod(1));
    expect(leases.map((l) => l.address)).toEqual(['fd00:10::1/64', '10.1.0.1/24']);
    expect((await store.listPools()).map((p) => p.metadata.name).sort()).toEqual(['10.1.0.0-24', 'fd00-10---64']);
  });

  it('ADD across ranges is all-or-nothing: an exhausted second range leaves the first untouched', async () => {
    const store = makeStore();
    const r = req(['10.1.0.0/24', '10.2.0.0/30']);
    await allocateAddresses(store, req(['10.2.0.0/30']), pod(7));
    await allocateAddresses(store, req(['10.2.0.0/30']), pod(8));
    const err = await allocateAddresses(store, r, pod(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect((err as Error).message).toBe('no free address in range 10.2.0.0/30 (start 10.2.0.1, end 10.2.0.2, excludes none): every address is allocated or excluded');
    expect((await store.listPools()).map((p) => p.metadata.name)).toEqual(['10.2.0.0-30']);
  });

  it('exhaustion names range, start, end and excludes', async () => {
    const store = makeStore();
    const r: IpamRequest = { networkName: '', overlapping: false, ranges: [parseRange({ range: '10.3.0.0/29', range_start: '10.3.0.2', exclude: ['10.3.0.4/31'] })] };
    for (const n of [1, 2, 3]) await allocateAddresses(store, r, pod(n));
    await expect(allocateAddresses(store, r, pod(4))).rejects.toThrow('range 10.3.0.0/29 (start 10.3.0.2, end 10.3.0.6, excludes 10.3.0.4/31)');
  });

  it('DEL releases in every range, even after a range without a match, and succeeds on nothing', async () => {
    const store = makeStore();
    await allocateAddresses(store, req(['10.2.0.0/24']), pod(1));
    const both = req(['10.1.0.0/24', '10.2.0.0/24']);
    const released = await releaseAddresses(store, both, 'c1', 'net1');
    expect(released.map((l) => l.address)).toEqual(['10.2.0.1/24']);
    expect(await releaseAddresses(store, both, 'c1', 'net1')).toEqual([]);
    expect(await releaseAddresses(store, req(['10.9.0.0/24']), 'nobody', 'net1')).toEqual([]);
    // no pool is created by a DEL
    expect((await store.listPools()).map((p) => p.metadata.name)).toEqual(['10.2.0.0-24']);
    expect(await store.listReservations()).toEqual([]);
  });

  it('DEL of one ifname keeps the pod\'s other interfaces', async () => {
    const store = makeStore();
    await allocateAddresses(store, req(['10.1.0.0/24']), pod(1, 'net1'));
    await allocateAddresses(store, req(['10.1.0.0/24']), pod(1, 'net2'));
    await releaseAddresses(store, req(['10.1.0.0/24']), 'c1', 'net1');
    const [pool] = await store.listPools();
    expect(pool!.spec.allocations).toEqual({ '2': { id: 'c1', podref: 'ns/p1', ifname: 'net2' } });
  });

  it('overlapping ranges: an address held by another pod in another pool of the network is skipped', async () => {
    const store = makeStore();
    const wide = req(['10.5.0.0/24'], { networkName: 'blue' });
    const narrow = req(['10.5.0.0/28'], { networkName: 'blue' });
    await allocateAddresses(store, wide, pod(1));
    const [b] = await allocateAddresses(store, narrow, pod(2));
    expect(b!.ip).toBe('10.5.0.2');
    // the same pod may hold the same address through both pools
    const [a2] = await allocateAddresses(store, narrow, pod(1));
    expect(a2!.ip).toBe('10.5.0.1');
    expect((await store.listPools()).map((p) => p.metadata.name).sort()).toEqual(['blue-10.5.0.0-24', 'blue-10.5.0.0-28']);
    const res = await store.listReservations();
    expect(res.map((r) => r.metadata.name).sort()).toEqual(['blue-10.5.0.1', 'blue-10.5.0.2']);
    expect(res.find((r) => r.metadata.name === 'blue-10.5.0.2')).toEqual({
      apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
      kind: 'OverlappingRangeIPReservation',
      metadata: { name: 'blue-10.5.0.2' },
      spec: { containerid: 'c2', podref: 'ns/p2', ifname: 'net1' },
    });
  });

  it('overlapping disabled: pools of a network do not see each other, and no reservations are kept', async () => {
    const store = makeStore();
    await allocateAddresses(store, req(['10.5.0.0/24'], { overlapping: false }), pod(1));
    const [b] = await allocateAddresses(store, req(['10.5.0.0/28'], { overlapping: false }), pod(2));
    expect(b!.ip).toBe('10.5.0.1');
    expect(await store.listReservations()).toEqual([]);
  });

  it('IPv6 offsets past 2^63 are stored as exact decimal keys, in order', async () => {
    const store = makeStore();
    const r: IpamRequest = { networkName: '', overlapping: false, ranges: [parseRange({ range: 'fd00::/64', range_start: 'fd00::ffff:ffff:ffff:fffd' })] };
    const got = [];
    for (const n of [1, 2]) got.push((await allocateAddresses(store, r, pod(n)))[0]!.ip);
    expect(got).toEqual(['fd00::ffff:ffff:ffff:fffd', 'fd00::ffff:ffff:ffff:fffe']);
    await expect(allocateAddresses(store, r, pod(3))).rejects.toThrow(/no free address/);
    await releaseAddresses(store, r, 'c1', 'net1');
    const [pool] = await store.listPools();
    expect(Object.keys(pool!.spec.allocations)).toEqual(['18446744073709551614']);
    expect((await allocateAddresses(store, r, pod(4)))[0]!.ip).toBe('fd00::ffff:ffff:ffff:fffd');
    const [after] = await store.listPools();
    expect(Object.keys(after!.spec.allocations)).toEqual(['18446744073709551613', '18446744073709551614']);
  });

  it('findAddresses and GC', async () => {
    const store = makeStore();
    const r = req(['10.1.0.0/24']);
    for (const n of [1, 2, 3]) await allocateAddresses(store, r, pod(n));
    expect((await findAddresses(store, r, { containerId: 'c2', podRef: '', ifName: 'net1' }))[0]!.ip).toBe('10.1.0.2');
    expect(await findAddresses(store, r, { containerId: 'c9', podRef: '', ifName: 'net1' })).toEqual([undefined]);
    const released = await collectGarbage(store, r, [{ containerID: 'c2', ifname: 'net1' }]);
    expect(released.map((l) => l.ip)).toEqual(['10.1.0.1', '10.1.0.3']);
    const [pool] = await store.listPools();
    expect(Object.keys(pool!.spec.allocations)).toEqual(['2']);
    expect((await store.listReservations()).map((x) => x.metadata.name)).toEqual(['10.1.0.2']);
  });
});

describe('file store', () => {
  it('a pool file that does not parse is code 5 with its path, and is left as it is', async () => {
    const store = new FileStore(dir);
    await allocateAddresses(store, req(['10.1.0.0/24']), pod(1));
    const path = join(dir, 'ippools', '10.1.0.0-24.json');
    writeFileSync(path, '{"apiVersion": "whereabouts.cni.cncf.io/v1alpha1", "kind": "IPPool", "spe');
    const err = await allocateAddresses(store, req(['10.1.0.0/24']), pod(2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(5);
    expect((err as CniError).message).toContain(path);
    await expect(releaseAddresses(store, req(['10.1.0.0/24']), 'c1', 'net1')).rejects.toMatchObject({ code: 5 });
    expect(readFileSync(path, 'utf8')).toContain('"spe');
  });

  it('a JSON file that is not an IPPool is code 5 too', async () => {
    const store = new FileStore(dir);
    await allocateAddresses(store, req(['10.1.0.0/24']), pod(1));
    writeFileSync(join(dir, 'ippools', '10.1.0.0-24.json'), '[]');
    await expect(allocateAddresses(store, req(['10.1.0.0/24']), pod(2))).rejects.toMatchObject({ code: 5 });
  });

  it('files are 0600, directories 0700, and no temp files are left', async () => {
    const store = new FileStore(join(dir, 'data'));
    await allocateAddresses(store, req(['10.1.0.0/24'], { networkName: 'net-a' }), pod(1));
    const data = join(dir, 'data');
    expect(statSync(data).mode & 0o777).toBe(0o700);
    expect(statSync(join(data, 'ippools')).mode & 0o777).toBe(0o700);
    expect(statSync(join(data, 'ippools', 'net-a-10.1.0.0-24.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(data, 'overlappingrangeipreservations', 'net-a-10.1.0.1.json')).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(data, 'ippools'))).toEqual(['net-a-10.1.0.0-24.json']);
  });

  it('a stale lock (its holder killed) is taken over', async () => {
    const store = new FileStore(dir, { lockStaleMs: 2000 });
    await allocateAddresses(store, req(['10.1.0.0/24']), pod(1));
    const { mkdirSync, utimesSync } = await import('node:fs');
    const lock = join(dir, 'pools.lock');
    mkdirSync(lock);
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    const [b] = await allocateAddresses(store, req(['10.1.0.0/24']), pod(2));
    expect(b!.ip).toBe('10.1.0.2');
  });

  it('a held lock makes a transaction wait, then fail with code 11', async () => {
    const store = new FileStore(dir, { lockTimeoutMs: 100 });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    mkdirSync(join(dir, 'pools.lock'));
    await expect(allocateAddresses(store, req(['10.1.0.0/24']), pod(1))).rejects.toMatchObject({ code: 11 });
  });

  it('STATUS: ready when data_dir is usable, code 50 when it is not', async () => {
    await expect(new FileStore(join(dir, 'ok')).checkReady()).resolves.toBeUndefined();
    writeFileSync(join(dir, 'file'), '');
    await expect(new FileStore(join(dir, 'file', 'sub')).checkReady()).rejects.toMatchObject({ code: 50 });
  });

  it('refuses names that would leave the directory', async () => {
    const store = new FileStore(dir);
    await expect(store.transaction((tx) => tx.getPool('../../etc/passwd'))).rejects.toMatchObject({ code: 7 });
    await expect(store.transaction((tx) => tx.getReservation('..'))).rejects.toMatchObject({ code: 7 });
  });
});
