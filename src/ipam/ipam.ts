/**
 * IPAM operations over any store: allocate one address per range (all or nothing), release,
 * look up, garbage-collect. Each runs as one store transaction; the allocator decides, the
 * store only reads and writes documents.
 */
import { CniError, ErrorCode } from '../cni/errors.js';
import {
  AllocationIndex,
  type Owner,
  assign,
  findOwned,
  lowestFree,
  releaseOwned,
  releasedBy,
  sortedAllocations,
} from './allocator.js';
import {
  type IPAllocation,
  type IPPool,
  type OverlappingRangeIPReservation,
  newPool,
  newReservation,
  poolName,
  reservationName,
} from './documents.js';
import { type IpRange, addressAt, describeRange } from './range.js';
import type { IpamStore, StoreTransaction } from './store.js';

export interface IpamRequest {
  /** whereabouts' network_name; empty for the unnamed network */
  networkName: string;
  /** in the order the result lists them */
  ranges: IpRange[];
  /** enable_overlapping_ranges: keep an OverlappingRangeIPReservation per address */
  overlapping: boolean;
}

export interface Lease {
  range: IpRange;
  pool: string;
  offset: bigint;
  /** the bare address */
  ip: string;
  /** the address with the range's prefix length, as a CNI result writes it */
  address: string;
}

function lease(range: IpRange, pool: string, offset: bigint): Lease {
  const ip = addressAt(range, offset);
  return { range, pool, offset, ip, address: `${ip}/${range.prefix}` };
}

interface OpenPool {
  pool: IPPool;
  index: AllocationIndex;
  dirty: boolean;
}

/** The pools of one transaction, each read and indexed once. */
class PoolSet {
  private readonly open = new Map<string, OpenPool>();

  constructor(private readonly tx: StoreTransaction) {}

  async get(name: string, range: IpRange, create: boolean): Promise<OpenPool | undefined> {
    let p = this.open.get(name);
    if (p) return p;
    const stored = await this.tx.getPool(name);
    if (stored && stored.spec.range !== range.cidr) {
      throw new CniError(ErrorCode.IoFailure, `IPPool ${name} holds range ${stored.spec.range}, not ${range.cidr}; it is left as it is`);
    }
    if (!stored && !create) return undefined;
    const pool = stored ?? newPool(name, range.cidr);
    p = { pool, index: AllocationIndex.of(pool.spec.allocations), dirty: !stored };
    this.open.set(name, p);
    return p;
  }

  /** The request's existing pools, each once (two ranges may share a pool), with their range. */
  async *existing(req: IpamRequest): AsyncGenerator<{ range: IpRange; name: string; p: OpenPool }> {
    const seen = new Set<string>();
    for (const range of req.ranges) {
      const name = poolName(req.networkName, range.cidr);
      if (seen.has(name)) continue;
      seen.add(name);
      const p = await this.get(name, range, false);
      if (p) yield { range, name, p };
    }
  }

  /** Hands every changed pool to the store, its allocations in ascending offset order. */
  flush(): void {
    for (const p of this.open.values()) {
      if (!p.dirty) continue;
      const offsets = p.index.offsets();
      const last = offsets[offsets.length - 1];
      // Offsets >= 2^32 - 1 are not array indices: JavaScript keeps them in insertion order.
      if (last !== undefined && last.length >= 10 && BigInt(last) >= 0xffffffffn) {
        p.pool.spec.allocations = sortedAllocations(p.pool.spec.allocations, p.index);
      }
      this.tx.putPool(p.pool);
    }
  }
}

function heldByOther(r: OverlappingRangeIPReservation, owner: Owner): boolean {
  if (owner.podRef) return r.spec.podref !== owner.podRef;
  return (r.spec.containerid ?? '') !== owner.containerId;
}

export function exhaustedError(range: IpRange): CniError {
  return new CniError(ErrorCode.Internal, `no free address in ${describeRange(range)}: every address is allocated or excluded`);
}

/**
 * One address from each range, in order: the owner's existing allocation when it has one
 * (its container ID updated), else the lowest free address. Nothing is written unless every
 * range succeeds.
 */
export async function allocateAddresses(store: IpamStore, req: IpamRequest, owner: Owner): Promise<Lease[]> {
  return store.transaction(async (tx) => {
    const pools = new PoolSet(tx);
    const leases: Lease[] = [];
    for (const range of req.ranges) {
      const name = poolName(req.networkName, range.cidr);
      const p = (await pools.get(name, range, true))!;
      const allocs = p.pool.spec.allocations;

      const key = findOwned(allocs, owner);
      if (key !== undefined && /^(0|[1-9]\d*)$/.test(key)) {
        const entry = allocs[key]!;
        if (entry.id !== owner.containerId) {
          entry.id = owner.containerId;
          p.dirty = true;
        }
        const l = lease(range, name, BigInt(key));
        if (req.overlapping) {
          const rname = reservationName(req.networkName, l.ip);
          if (!(await tx.getReservation(rname))) tx.putReservation(newReservation(rname, owner));
        }
        leases.push(l);
        continue;
      }

      let from = range.first;
      for (;;) {
        const off = lowestFree(p.index, range, from);
        if (off === undefined) throw exhaustedError(range);
        const l = lease(range, name, off);
        if (req.overlapping) {
          const rname = reservationName(req.networkName, l.ip);
          const r = await tx.getReservation(rname);
          if (r && heldByOther(r, owner)) {
            // held through another pool of this network: skip it, as whereabouts does
            from = off + 1n;
            continue;
          }
          if (!r) tx.putReservation(newReservation(rname, owner));
        }
        assign(allocs, p.index, off, owner);
        p.dirty = true;
        leases.push(l);
        break;
      }
    }
    pools.flush();
    return leases;
  });
}

/** Deletes the reservation of a released address when it is the released owner's. */
async function dropReservation(tx: StoreTransaction, networkName: string, ip: string, released: IPAllocation): Promise<void> {
  const rname = reservationName(networkName, ip);
  const r = await tx.getReservation(rname);
  if (!r) return;
  const sameContainer = r.spec.containerid !== undefined && r.spec.containerid === released.id;
  const samePod = !!released.podref && r.spec.podref === released.podref;
  if (sameContainer || samePod) tx.deleteReservation(rname);
}

/**
 * Releases containerId/ifName's addresses in every range of the request (not stopping at a
 * range without one). Succeeds when nothing matches; creates no pool.
 */
export async function releaseAddresses(store: IpamStore, req: IpamRequest, containerId: string, ifName: string): Promise<Lease[]> {
  return store.transaction(async (tx) => {
    const pools = new PoolSet(tx);
    const released: Lease[] = [];
    for await (const { range, name, p } of pools.existing(req)) {
      const entries = new Map<string, IPAllocation>();
      for (const [k, v] of Object.entries(p.pool.spec.allocations)) if (releasedBy(v, containerId, ifName)) entries.set(k, v);
      if (entries.size === 0) continue;
      for (const off of releaseOwned(p.pool.spec.allocations, p.index, containerId, ifName)) {
        const l = lease(range, name, off);
        released.push(l);
        await dropReservation(tx, req.networkName, l.ip, entries.get(off.toString())!);
      }
      p.dirty = true;
    }
    pools.flush();
    return released;
  });
}

/** The owner's allocation in each range (undefined where it has none). */
export async function findAddresses(store: IpamStore, req: IpamRequest, owner: Owner): Promise<Array<Lease | undefined>> {
  return store.transaction(async (tx) => {
    const pools = new PoolSet(tx);
    const out: Array<Lease | undefined> = [];
    for (const range of req.ranges) {
      const name = poolName(req.networkName, range.cidr);
      const p = await pools.get(name, range, false);
      const key = p ? findOwned(p.pool.spec.allocations, owner) : undefined;
      out.push(key === undefined ? undefined : lease(range, name, BigInt(key)));
    }
    return out;
  });
}

/** Releases, in the request's pools, every allocation whose container/ifname is not in `valid`. */
export async function collectGarbage(
  store: IpamStore,
  req: IpamRequest,
  valid: ReadonlyArray<{ containerID: string; ifname: string }>,
): Promise<Lease[]> {
  const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
  return store.transaction(async (tx) => {
    const pools = new PoolSet(tx);
    const released: Lease[] = [];
    for await (const { range, name, p } of pools.existing(req)) {
      const allocs = p.pool.spec.allocations;
      for (const [k, v] of Object.entries(allocs)) {
        if (keep.has(`${v.id}\0${v.ifname ?? ''}`) || !/^(0|[1-9]\d*)$/.test(k)) continue;
        delete allocs[k];
        const off = BigInt(k);
        p.index.remove(off);
        p.dirty = true;
        const l = lease(range, name, off);
        released.push(l);
        await dropReservation(tx, req.networkName, l.ip, v);
      }
    }
    pools.flush();
    return released;
  });
}
