import { describe, expect, it } from 'vitest';
import {
  AllocationIndex,
  assign,
  findOwned,
  lowestFree,
  releaseOwned,
  sortedAllocations,
} from '../../../src/ipam/allocator.js';
import type { Allocations } from '../../../src/ipam/documents.js';
import { addressAt, parseRange } from '../../../src/ipam/range.js';

const owner = (n: number, ifName = 'net1') => ({ containerId: `c${n}`, podRef: `ns/p${n}`, ifName });

function allocsOf(offsets: Array<number | bigint | string>): Allocations {
  const a: Allocations = {};
  offsets.forEach((o, i) => (a[String(o)] = { id: `c${i}`, podref: `ns/p${i}`, ifname: 'net1' }));
  return a;
}

describe('AllocationIndex', () => {
  it('finds the end of a run of consecutive offsets', () => {
    const idx = AllocationIndex.of(allocsOf([1, 2, 3, 4, 7, 8, 10]));
    expect(idx.nextUnallocated(1n)).toBe(5n);
    expect(idx.nextUnallocated(3n)).toBe(5n);
    expect(idx.nextUnallocated(5n)).toBe(5n);
    expect(idx.nextUnallocated(7n)).toBe(9n);
    expect(idx.nextUnallocated(10n)).toBe(11n);
    expect(idx.nextUnallocated(0n)).toBe(0n);
  });

  it('sorts keys that come out of order and sets aside keys that are not offsets', () => {
    const big = (1n << 63n) + 5n;
    const a: Allocations = {};
    a[String(big + 1n)] = { id: 'x', podref: '' };
    a[String(big)] = { id: 'y', podref: '' };
    a['007'] = { id: 'z', podref: '' };
    a['abc'] = { id: 'w', podref: '' };
    a['3'] = { id: 'v', podref: '' };
    const idx = AllocationIndex.of(a);
    expect(idx.offsets()).toEqual(['3', String(big), String(big + 1n)]);
    expect(idx.invalidKeys.sort()).toEqual(['007', 'abc']);
    expect(idx.nextUnallocated(big)).toBe(big + 2n);
    expect(Object.keys(sortedAllocations(a, idx))).toEqual(['3', String(big), String(big + 1n), '007', 'abc']);
  });

  it('insert and remove keep the order', () => {
    const idx = AllocationIndex.of(allocsOf([5, 1]));
    idx.insert(3n);
    idx.insert(3n);
    expect(idx.offsets()).toEqual(['1', '3', '5']);
    idx.remove(1n);
    idx.remove(42n);
    expect(idx.offsets()).toEqual(['3', '5']);
    expect(idx.has(5n)).toBe(true);
    expect(idx.has(4n)).toBe(false);
  });
});

describe('lowestFree', () => {
  it('is the lowest unallocated address from range start', () => {
    const r = parseRange({ range: '10.0.0.0/24' });
    expect(addressAt(r, lowestFree(AllocationIndex.of({}), r)!)).toBe('10.0.0.1');
    expect(addressAt(r, lowestFree(AllocationIndex.of(allocsOf([1, 2, 4])), r)!)).toBe('10.0.0.3');
  });

  it('skips excluded subnets, including ones that follow a run of allocations', () => {
    const r = parseRange({ range: '192.168.2.0/24', exclude: ['192.168.2.0/30', '192.168.2.6', '192.168.2.8/29'] });
    const idx = AllocationIndex.of(allocsOf([4, 5]));
    expect(addressAt(r, lowestFree(idx, r)!)).toBe('192.168.2.7');
    idx.insert(7n);
    expect(addressAt(r, lowestFree(idx, r)!)).toBe('192.168.2.16');
  });

  it('respects range_start and range_end, and says undefined when the range is full', () => {
    const r = parseRange({ range: '10.0.0.0/24', range_start: '10.0.0.10', range_end: '10.0.0.12' });
    const idx = AllocationIndex.of(allocsOf([10, 11]));
    expect(addressAt(r, lowestFree(idx, r)!)).toBe('10.0.0.12');
    idx.insert(12n);
    expect(lowestFree(idx, r)).toBeUndefined();
  });

  it('never hands out the all-ones address', () => {
    const r = parseRange({ range: '10.0.0.0/30' });
    const idx = AllocationIndex.of(allocsOf([1, 2]));
    expect(lowestFree(idx, r)).toBeUndefined();
  });

  it('IPv6 near the top of a /64: past 2^63 and up to the last usable address', () => {
    const r = parseRange({ range: 'fd00::/64', range_start: 'fd00::ffff:ffff:ffff:fffc' });
    const idx = AllocationIndex.of({});
    const got: string[] = [];
    for (;;) {
      const off = lowestFree(idx, r);
      if (off === undefined) break;
      assign({}, idx, off, owner(got.length));
      got.push(addressAt(r, off));
    }
    expect(got).toEqual(['fd00::ffff:ffff:ffff:fffc', 'fd00::ffff:ffff:ffff:fffd', 'fd00::ffff:ffff:ffff:fffe']);
    const mid = parseRange({ range: 'fd00::/64', range_start: 'fd00::8000:0:0:0' });
    expect(addressAt(mid, lowestFree(AllocationIndex.of({}), mid)!)).toBe('fd00::8000:0:0:0');
  });

  it('starts from a later candidate when asked (an address held elsewhere)', () => {
    const r = parseRange({ range: '10.0.0.0/24' });
    expect(lowestFree(AllocationIndex.of(allocsOf([1])), r, 2n)).toBe(3n - 1n);
  });

  it('stays logarithmic: a full /16 with one hole is found without scanning', () => {
    const r = parseRange({ range: '10.0.0.0/16' });
    const keys: string[] = [];
    for (let i = 1; i <= 65534; i++) if (i !== 40000) keys.push(String(i));
    const a: Allocations = {};
    for (const k of keys) a[k] = { id: 'c', podref: '' };
    const idx = AllocationIndex.of(a);
    let probes = 0;
    const at = (idx as unknown as { at: (i: number) => bigint }).at.bind(idx);
    (idx as unknown as { at: (i: number) => bigint }).at = (i: number) => (probes++, at(i));
    expect(lowestFree(idx, r)).toBe(40000n);
    expect(probes).toBeLessThan(64);
  });
});

describe('owners', () => {
  it('finds an allocation by pod and ifname, or without a pod by container and ifname', () => {
    const a: Allocations = {
      '1': { id: 'c1', podref: 'ns/p1', ifname: 'net1' },
      '2': { id: 'c1', podref: 'ns/p1', ifname: 'net2' },
      '3': { id: 'c3', podref: '', ifname: 'net1' },
    };
    expect(findOwned(a, { containerId: 'other', podRef: 'ns/p1', ifName: 'net2' })).toBe('2');
    expect(findOwned(a, { containerId: 'c3', podRef: '', ifName: 'net1' })).toBe('3');
    expect(findOwned(a, { containerId: 'c1', podRef: '', ifName: 'net1' })).toBe('1');
    expect(findOwned(a, { containerId: 'c9', podRef: '', ifName: 'net1' })).toBeUndefined();
  });

  it('releases every entry of a container and ifname (entries without ifname match any)', () => {
    const a: Allocations = {
      '1': { id: 'c1', podref: 'ns/p1', ifname: 'net1' },
      '2': { id: 'c1', podref: 'ns/p1', ifname: 'net2' },
      '3': { id: 'c1', podref: 'ns/p1' },
      '4': { id: 'c4', podref: 'ns/p4', ifname: 'net1' },
    };
    const idx = AllocationIndex.of(a);
    expect(releaseOwned(a, idx, 'c1', 'net1')).toEqual([1n, 3n]);
    expect(Object.keys(a)).toEqual(['2', '4']);
    expect(idx.offsets()).toEqual(['2', '4']);
    expect(releaseOwned(a, idx, 'nobody', 'net1')).toEqual([]);
  });
});
