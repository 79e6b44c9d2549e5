/**
 * Address encoding for netlink attributes. A small parser rather than ip-num: this runs on
 * every ADD, and the start-up path must stay lean.
 */
import { formatIpBytes, parseIpBytes } from '../ip/text.js';

export const AF_INET = 2;
export const AF_INET6 = 10;

export interface Cidr {
  /** the address as written (host bits kept) */
  ip: string;
  prefix: number;
  family: typeof AF_INET | typeof AF_INET6;
}

export function familyOf(ip: string): typeof AF_INET | typeof AF_INET6 {
  return ipToBuffer(ip).length === 4 ? AF_INET : AF_INET6;
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
  const bytes = parseIpBytes(ip);
  if (!bytes) throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

export function bufferToIp(buf: Uint8Array): string {
  return formatIpBytes(buf);
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
