/**
 * An allocation range as whereabouts reads one: a CIDR (or `A-B/len`), optional inclusive
 * bounds, excluded subnets. Everything is resolved here to offsets from the network address,
 * the unit the IPPool document counts in.
 */
import { type Family, type Prefix, bitsOf, formatIp, formatPrefix, hostMask, parseIp, parsePrefix } from './ip.js';

export interface RangeSpec {
  range: string;
  range_start?: string | undefined;
  range_end?: string | undefined;
  exclude?: string[] | undefined;
}

export interface IpRange {
  family: Family;
  network: bigint;
  prefix: number;
  /** the normalized CIDR ("192.168.1.32/28"): IPPool spec.range and the pool's name */
  cidr: string;
  /** first and last allocatable offsets from the network address, inclusive */
  first: bigint;
  last: bigint;
  /** excluded offsets as sorted, merged, inclusive [lo, hi] intervals clipped to first..last */
  excludes: Array<[bigint, bigint]>;
  /** the exclude list as configured, for messages */
  excludeText: string[];
}

/** A config problem: the key (relative to the range entry), the bad value, why. */
export class RangeConfigError extends Error {
  constructor(
    readonly key: string,
    readonly value: unknown,
    readonly why: string,
  ) {
    super(`invalid ${key} ${JSON.stringify(value)}: ${why}`);
    this.name = 'RangeConfigError';
  }
}

/** Strips a `/len` some old configs put on range_start/range_end (whereabouts accepts it). */
function parseBound(text: string, key: string): { family: Family; value: bigint } {
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) throw new RangeConfigError(key, text, 'must be an IP address');
  return ip;
}

/**
 * Resolves a range entry. Bounds outside the usable addresses are ignored as whereabouts
 * ignores them; `warn` is told which, naming the key.
 */
export function parseRange(spec: RangeSpec, warn: (msg: string) => void = () => {}): IpRange {
  const text = spec.range.trim();
  let prefix: Prefix | undefined;
  let start: bigint | undefined;
  let end: bigint | undefined;
  let startText = spec.range_start;
  let endText = spec.range_end;

  const dash = text.indexOf('-');
  if (dash >= 0) {
    // A-B/len: start A, end B, the network of B/len; A must lie in it.
    const a = parseIp(text.slice(0, dash).trim());
    if (!a) throw new RangeConfigError('range', spec.range, 'the start of an A-B/len range must be an IP address');
    prefix = parsePrefix(text.slice(dash + 1).trim());
    if (!prefix) throw new RangeConfigError('range', spec.range, 'the end of an A-B/len range must be an address with a prefix length, e.g. 10.0.0.20/24');
    if (a.family !== prefix.family || (a.value & ~hostMask(prefix.family, prefix.prefix)) !== prefix.network) {
      throw new RangeConfigError('range', spec.range, `start ${formatIp(a.value, a.family)} is outside the network ${formatPrefix(prefix)}`);
    }
    startText = formatIp(a.value, a.family);
    endText = text.slice(dash + 1).trim().split('/')[0];
  } else {
    prefix = parsePrefix(text);
    if (!prefix) throw new RangeConfigError('range', spec.range, 'must be a CIDR such as 192.168.1.0/24, or A-B/len');
  }
  const { family, network } = prefix;
  const hostBits = bitsOf(family) - prefix.prefix;
  if (hostBits < 2) {
    throw new RangeConfigError('range', spec.range, 'has no usable addresses: the prefix must leave at least 2 host bits');
  }
  const size = 1n << BigInt(hostBits);
  const cidr = formatPrefix(prefix);
  // The network address and the all-ones address are never handed out.
  let first = 1n;
  let last = size - 2n;

  const startKey = dash >= 0 ? 'range' : 'range_start';
  const endKey = dash >= 0 ? 'range' : 'range_end';
  if (startText !== undefined && startText !== '') {
    const ip = parseBound(startText, startKey);
    start = ip.family === family ? ip.value - network : undefined;
    if (start !== undefined && start >= first && start <= last) first = start;
    else warn(`${startKey} ${startText} is outside the usable addresses of ${cidr}; ignored`);
  }
  if (endText !== undefined && endText !== '') {
    const ip = parseBound(endText, endKey);
    end = ip.family === family ? ip.value - network : undefined;
    if (end !== undefined && end >= first && end <= last) last = end;
    else warn(`${endKey} ${endText} is outside the usable addresses of ${cidr} from ${formatIp(network + first, family)}; ignored`);
  }

  const intervals: Array<[bigint, bigint]> = [];
  for (const [i, ex] of (spec.exclude ?? []).entries()) {
    const p = typeof ex === 'string' ? parsePrefix(ex.trim(), true) : undefined;
    if (!p) throw new RangeConfigError(`exclude[${i}]`, ex, 'must be a CIDR or an IP address');
    if (p.family !== family) continue;
    const lo = p.network - network;
    const hi = lo + hostMask(family, p.prefix);
    if (hi < first || lo > last) continue;
    intervals.push([lo < first ? first : lo, hi > last ? last : hi]);
  }
  intervals.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const excludes: Array<[bigint, bigint]> = [];
  for (const iv of intervals) {
    const prev = excludes[excludes.length - 1];
    if (prev && iv[0] <= prev[1] + 1n) {
      if (iv[1] > prev[1]) prev[1] = iv[1];
    } else excludes.push([iv[0], iv[1]]);
  }
  return { family, network, prefix: prefix.prefix, cidr, first, last, excludes, excludeText: spec.exclude ?? [] };
}

export function addressAt(range: IpRange, offset: bigint): string {
  return formatIp(range.network + offset, range.family);
}

/** The offset of an address in the range's network, or undefined when it is not in it. */
export function offsetOf(range: IpRange, ip: string): bigint | undefined {
  const parsed = parseIp(ip);
  if (!parsed || parsed.family !== range.family) return undefined;
  const off = parsed.value - range.network;
  return off >= 0n && off <= hostMask(range.family, range.prefix) ? off : undefined;
}

export function describeRange(range: IpRange): string {
  const ex = range.excludeText.length ? range.excludeText.join(', ') : 'none';
  return `range ${range.cidr} (start ${addressAt(range, range.first)}, end ${addressAt(range, range.last)}, excludes ${ex})`;
}
