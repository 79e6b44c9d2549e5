import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exportPools, importPools, listPools, parseImport, releaseFromPools, showPool } from '../../../src/cli/pool.js';
import { FileStore } from '../../../src/ipam/file-store.js';
import { allocateAddresses } from '../../../src/ipam/ipam.js';
import { parseRange } from '../../../src/ipam/range.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pool-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const pod = (n: number) => ({ containerId: `c${n}`, podRef: `ns/p${n}`, ifName: 'net1' });

async function seeded(): Promise<FileStore> {
  const store = new FileStore(join(dir, 'a'));
  const blue = { networkName: 'blue', ranges: [parseRange({ range: '10.9.0.0/24' }), parseRange({ range: 'fd00:9::/64' })], overlapping: true };
  for (const n of [1, 2, 3]) await allocateAddresses(store, blue, pod(n));
  return store;
}

describe('multinic pool', () => {
  it('list and show', async () => {
    const store = await seeded();
    expect(await listPools(store)).toBe('NAME              RANGE        ALLOCATED\nblue-10.9.0.0-24  10.9.0.0/24  3\nblue-fd00-9---64  fd00:9::/64  3\n');
    expect(await showPool(store, 'blue-fd00-9---64')).toBe(
      'pool blue-fd00-9---64, range fd00:9::/64, 3 allocated\n' +
        'IP         POD    CONTAINER  IFNAME\n' +
        'fd00:9::1  ns/p1  c1         net1\n' +
        'fd00:9::2  ns/p2  c2         net1\n' +
        'fd00:9::3  ns/p3  c3         net1\n',
    );
    await expect(showPool(store, 'nope')).rejects.toThrow(/no pool "nope"/);
  });

  it('release by address and by pod, with their reservations', async () => {
    const store = await seeded();
    expect(await releaseFromPools(store, { ip: '10.9.0.2' })).toEqual(['blue-10.9.0.0-24 10.9.0.2 (ns/p2)']);
    expect(await releaseFromPools(store, { pod: 'ns/p3' })).toEqual(['blue-10.9.0.0-24 10.9.0.3 (ns/p3)', 'blue-fd00-9---64 fd00:9::3 (ns/p3)']);
    expect(await releaseFromPools(store, { ip: '10.9.0.200' })).toEqual([]);
    const names = (await store.listReservations()).map((r) => r.metadata.name).sort();
    expect(names).toEqual(['blue-10.9.0.1', 'blue-fd00-9--1', 'blue-fd00-9--2']);
    await expect(releaseFromPools(store, {})).rejects.toThrow(/one of them/);
    await expect(releaseFromPools(store, { ip: 'x' })).rejects.toThrow(/not an IP/);
  });

  it('export prints IPPool YAML with the same allocations, and import restores them elsewhere', async () => {
    const store = await seeded();
    const yaml = await exportPools(store, 'kube-system');
    expect(yaml).toContain('kind: "IPPool"');
    expect(yaml).toContain('namespace: "kube-system"');
    expect(yaml).toContain('"1":\n      id: "c1"\n      podref: "ns/p1"\n      ifname: "net1"');
    const other = new FileStore(join(dir, 'b'));
    expect(await importPools(other, yaml)).toMatch(/imported 2 pool\(s\) with 6 allocation\(s\) and 6 reservation\(s\)/);
    const strip = (ps: Awaited<ReturnType<FileStore['listPools']>>) => ps.map((p) => ({ name: p.metadata.name, spec: p.spec }));
    expect(strip(await other.listPools())).toEqual(strip(await store.listPools()));
    expect((await other.listReservations()).length).toBe(6);
    // and allocation goes on from there
    const next = await allocateAddresses(other, { networkName: 'blue', ranges: [parseRange({ range: '10.9.0.0/24' })], overlapping: true }, pod(4));
    expect(next[0]!.ip).toBe('10.9.0.4');
  });

  it('import takes kubectl JSON lists and refuses unsafe names and bad entries', async () => {
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        {
          apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
          kind: 'IPPool',
          metadata: { name: '10.1.0.0-24', namespace: 'kube-system', resourceVersion: '5', uid: 'u' },
          spec: { range: '10.1.0.0/24', allocations: { '7': { id: 'x', podref: 'a/b', ifname: 'net1' } } },
        },
      ],
    };
    const parsed = await parseImport(JSON.stringify(list));
    expect(parsed.pools[0]!.metadata).toEqual({ name: '10.1.0.0-24' });
    const bad = (name: string, allocs: object = {}) =>
      JSON.stringify({ kind: 'IPPool', metadata: { name }, spec: { range: '10.1.0.0/24', allocations: allocs } });
    await expect(parseImport(bad('../../etc'))).rejects.toThrow(/not a safe object name/);
    await expect(parseImport(bad('ok', { x: { id: 'a', podref: '' } }))).rejects.toThrow(/allocation "x"/);
    await expect(parseImport('kind: Pod\nmetadata: {name: x}\n')).rejects.toThrow(/neither IPPool/);
  });
});
