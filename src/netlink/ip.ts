/**
 * Address encoding for netlink attributes. A small parser rather than ip-num: this runs on
 * every ADD, and the start-up path must stay lean.
 */
import { isIPv4, isIPv6 } from 'node:net';

export const AF_INET = 2;
export const AF_INET6 = 10;

export interface Cidr {
  /** the address as written (host bits kept) */
  ip: string;
  prefix: number;
  family: typeof AF_INET | typeof AF_INET6;
}

export function familyOf(ip: string): typeof AF_INET | typeof AF_INET6 {
  if (isIPv4(ip)) return AF_INET;
  if (isIPv6(ip)) return AF_INET6;
  throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
}

/** Parses "a.b.c.d/n" or "x::y/n"; a bare address gets the full-length prefix. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const ip = slash < 0 ? text : text.slice(0, slash);
  const family = familyOf(ip);
  const max = family === AF_INET ? 32 : 128;
  const prefix = slash < 0 ? max : Number(text.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (slash >= 0 && !/^\d+$/.test(text.slice(slash + 1)))) {
    throw new Error(`invalid prefix length in ${JSON.stringify(text)}`);
  }
  return { ip, prefix, family };
}

export function ipToBuffer(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
  let text = ip;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = text.slice(0, v4.index) + ((b[0]! << 8) | b[1]!).toString(16) + ':' + ((b[2]! << 8) | b[3]!).toString(16);
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const fill = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(fill).fill('0'), ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function bufferToIp(buf: Buffer): string {
  if (buf.length === 4) return `${buf[0]}.${buf[1]}.${buf[2]}.${buf[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(buf.readUInt16BE(i));
  // RFC 5952: compress the longest run of two or more zero groups.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** The network address of a CIDR, as a string ("10.1.2.0/24" for "10.1.2.3/24"). */
export function networkOf(cidr: Cidr): string {
  const buf = ipToBuffer(cidr.ip);
  for (let bit = cidr.prefix; bit < buf.length * 8; bit++) buf[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return `${bufferToIp(buf)}/${cidr.prefix}`;
}

/** Whether `ip` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  if (familyOf(ip) !== cidr.family) return false;
  const a = ipToBuffer(cidr.ip);
  const b = ipToBuffer(ip);
  for (let bit = 0; bit < cidr.prefix; bit++) {
    const mask = 0x80 >> (bit & 7);
    if ((a[bit >> 3]! & mask) !== (b[bit >> 3]! & mask)) return false;
  }
  return true;
}

export function macToBuffer(mac: string): Buffer {
  if (!/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(mac)) throw new Error(`invalid MAC address ${JSON.stringify(mac)}`);
  return Buffer.from(mac.split(/[:-]/).map((h) => parseInt(h, 16)));
}

export function bufferToMac(buf: Buffer): string {
  return [...buf].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** A CIDR in canonical text (RFC 5952 for IPv6), so that two spellings compare equal. */
export function canonicalCidr(text: string): string {
  const c = parseCidr(text);
  return `${bufferToIp(ipToBuffer(c.ip))}/${c.prefix}`;
}

export function canonicalIp(ip: string): string {
  return bufferToIp(ipToBuffer(ip));
}
