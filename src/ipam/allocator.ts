/**
 * The allocator: pure functions over one IPPool document's allocations and a resolved range.
 * It knows nothing of where the pool is stored or how it is locked.
 *
 * Cost. Finding the lowest free address is O((1 + excludes) · log n) in the n live
 * allocations: the offsets are kept sorted, and the first gap at or after a candidate is
 * found by binary search (in a run of consecutive allocated offsets, offset[i] - i is
 * constant, so the end of the run is a binary search). Building the sorted index from a
 * parsed document is one O(n) pass when the keys come in order, which they do for every
 * offset below 2^32 - 1 (JavaScript enumerates array-index keys in ascending order) and for
 * pools this module wrote (it writes larger offsets in order). Finding an existing allocation
 * by owner, and releasing by container, are O(n) scans: no index by owner survives in the
 * whereabouts document, and parsing it is O(n) anyway.
 *
 * Measured (bench/ipam-scale.ts, 2 cores, node 22), with 0 / 1k / 10k / 50k live allocations
 * in a /16: choosing an address 0.1 / 1.7 / 2.1 / 2.5 µs; building the index from parsed keys
 * 0 / 0.03 / 0.24 / 2.5 ms; JSON.parse of the allocations 0 / 0.3 / 3.3 / 24 ms. The linear
 * part of an ADD is the document's JSON (parse, serialise, write), not the allocation.
 */
import type { Allocations, IPAllocation } from './documents.js';
import { isAllocation } from './documents.js';
import type { IpRange } from './range.js';

/** Who an allocation belongs to. */
export interface Owner {
  containerId: string;
  /** "namespace/name", or empty when the runtime gave no pod */
  podRef: string;
  ifName: string;
}

/** Compares two canonical decimal strings numerically. */
function compareDecimal(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A canonical non-negative decimal: digits, no leading zero. Hand-rolled: a regex costs more on 50k keys. */
function isCanonicalDecimal(s: string): boolean {
  const n = s.length;
  if (n === 0 || (n > 1 && s.charCodeAt(0) === 48)) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** The allocated offsets of a pool, sorted; keys that are not offsets are left out. */
export class AllocationIndex {
  private constructor(
    /** canonical decimal offsets, ascending */
    private readonly keys: string[],
    /** keys of the document that are not canonical offsets (kept in the document, never used) */
    readonly invalidKeys: string[],
  ) {}

  static of(allocations: Allocations): AllocationIndex {
    const all = Object.keys(allocations);
    let sorted = true;
    let valid = true;
    for (let i = 0; i < all.length; i++) {
      const k = all[i]!;
      if (!isCanonicalDecimal(k)) {
        valid = false;
        break;
      }
      if (i > 0 && compareDecimal(all[i - 1]!, k) >= 0) sorted = false;
    }
    if (valid && sorted) return new AllocationIndex(all, []);
    const keys = valid ? all : all.filter(isCanonicalDecimal);
    const invalid = valid ? [] : all.filter((k) => !isCanonicalDecimal(k));
    keys.sort(compareDecimal);
    return new AllocationIndex(keys, invalid);
  }

  get size(): number {
    return this.keys.length;
  }

  /** Offsets in ascending order. */
  offsets(): string[] {
    return this.keys;
  }

  private at(i: number): bigint {
    return BigInt(this.keys[i]!);
  }

  /** The first index whose offset is >= off. */
  private lowerBound(off: bigint): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.at(mid) < off) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  has(off: bigint): boolean {
    const i = this.lowerBound(off);
    return i < this.keys.length && this.at(i) === off;
  }

  /** The lowest offset >= off that is not allocated. */
  nextUnallocated(off: bigint): bigint {
    const i = this.lowerBound(off);
    if (i === this.keys.length || this.at(i) !== off) return off;
    // keys[i..j] is the run off, off+1, …: the last j with at(j) - j === off - i.
    let lo = i;
    let hi = this.keys.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.at(mid) - BigInt(mid - i) === off) lo = mid;
      else hi = mid - 1;
    }
    return off + BigInt(lo - i) + 1n;
  }

  insert(off: bigint): void {
    const i = this.lowerBound(off);
    if (i < this.keys.length && this.at(i) === off) return;
    this.keys.splice(i, 0, off.toString());
  }

  remove(off: bigint): void {
    const i = this.lowerBound(off);
    if (i < this.keys.length && this.at(i) === off) this.keys.splice(i, 1);
  }
}

/**
 * The lowest offset >= from (and >= range.first, <= range.last) that is neither allocated nor
 * excluded; undefined when there is none.
 */
export function lowestFree(index: AllocationIndex, range: IpRange, from: bigint = range.first): bigint | undefined {
  let cand = from < range.first ? range.first : from;
  let ex = 0;
  while (cand <= range.last) {
    while (ex < range.excludes.length && range.excludes[ex]![1] < cand) ex++;
    const block = range.excludes[ex];
    if (block && block[0] <= cand) {
      cand = block[1] + 1n;
      continue;
    }
    const free = index.nextUnallocated(cand);
    if (free === cand) return cand;
    cand = free;
  }
  return undefined;
}

/** Whether an allocation belongs to an owner: by pod and ifname, or without a pod by container and ifname. */
export function ownedBy(a: IPAllocation, owner: Owner): boolean {
  if ((a.ifname ?? '') !== owner.ifName) return false;
  return owner.podRef ? a.podref === owner.podRef : a.id === owner.containerId;
}

/** The offset key of the owner's allocation in a pool, if it has one. */
export function findOwned(allocations: Allocations, owner: Owner): string | undefined {
  for (const key in allocations) {
    const a = allocations[key];
    if (isAllocation(a) && ownedBy(a, owner)) return key;
  }
  return undefined;
}

/**
 * Whether an allocation is the one a DEL for containerId/ifName releases. An entry without
 * ifname (written by whereabouts releases before ifname was recorded) matches any ifName.
 */
export function releasedBy(a: IPAllocation, containerId: string, ifName: string): boolean {
  return a.id === containerId && (!a.ifname || a.ifname === ifName);
}

/** Records an allocation at `off` (the document and the index both). */
export function assign(allocations: Allocations, index: AllocationIndex, off: bigint, owner: Owner): IPAllocation {
  const entry: IPAllocation = { id: owner.containerId, podref: owner.podRef, ifname: owner.ifName };
  allocations[off.toString()] = entry;
  index.insert(off);
  return entry;
}

/** Removes every allocation of containerId/ifName; returns their offsets. */
export function releaseOwned(allocations: Allocations, index: AllocationIndex | undefined, containerId: string, ifName: string): bigint[] {
  const released: bigint[] = [];
  for (const key in allocations) {
    const a = allocations[key];
    if (!isAllocation(a) || !releasedBy(a, containerId, ifName)) continue;
    delete allocations[key];
    if (isCanonicalDecimal(key)) {
      const off = BigInt(key);
      index?.remove(off);
      released.push(off);
    }
  }
  return released;
}

/**
 * The allocations in ascending offset order, as a new object: JavaScript keeps array-index
 * keys (< 2^32 - 1) in numeric order by itself, but larger IPv6 offsets in insertion order.
 */
export function sortedAllocations(allocations: Allocations, index: AllocationIndex): Allocations {
  const out: Allocations = {};
  for (const k of index.offsets()) if (allocations[k] !== undefined) out[k] = allocations[k]!;
  for (const k of index.invalidKeys) if (allocations[k] !== undefined) out[k] = allocations[k]!;
  return out;
}
