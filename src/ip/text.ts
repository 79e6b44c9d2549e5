/**
 * IP address text <-> bytes, shared by the netlink layer and IPAM. Hand-written rather than
 * node:net's isIPv4/isIPv6: those compile a large regular expression on first use, which the
 * bench measured at about a tenth of an ADD's JavaScript time.
 */

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Writes the dotted quad `text` into out[at..at+4]; false when it is not one. */
function parseV4Into(text: string, out: Uint8Array, at: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a final '.' closes the last part
    if (c === 46) {
      if (digits === 0 || part > 3) return false;
      out[at + part++] = value;
      value = 0;
      digits = 0;
    } else if (isDigit(c)) {
      if (digits > 0 && value === 0) return false; // no leading zeros, as node:net
      value = value * 10 + (c - 48);
      if (++digits > 3 || value > 255) return false;
    } else {
      return false;
    }
  }
  return part === 4;
}

/** Parses one side of '::' into 16-bit groups; undefined when malformed. */
function parseGroups(text: string, allowV4Tail: boolean): number[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (allowV4Tail && i === parts.length - 1 && p.includes('.')) {
      const b = new Uint8Array(4);
      if (!parseV4Into(p, b, 0)) return undefined;
      groups.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
      continue;
    }
    if (p.length === 0 || p.length > 4) return undefined;
    let g = 0;
    for (let j = 0; j < p.length; j++) {
      const v = hexValue(p.charCodeAt(j));
      if (v < 0) return undefined;
      g = (g << 4) | v;
    }
    groups.push(g);
  }
  return groups;
}

function parseV6(text: string): Uint8Array | undefined {
  const dbl = text.indexOf('::');
  let groups: number[] | undefined;
  if (dbl < 0) {
    groups = parseGroups(text, true);
    if (!groups || groups.length !== 8) return undefined;
  } else {
    if (text.indexOf('::', dbl + 1) >= 0) return undefined;
    const head = parseGroups(text.slice(0, dbl), false);
    const tail = parseGroups(text.slice(dbl + 2), true);
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    groups = [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 255;
  });
  return out;
}

/** The address as 4 (IPv4) or 16 (IPv6) bytes; undefined when `text` is not a bare address. */
export function parseIpBytes(text: string): Uint8Array | undefined {
  if (text.includes(':')) return parseV6(text);
  const out = new Uint8Array(4);
  return parseV4Into(text, out, 0) ? out : undefined;
}

/** Dotted quad, or RFC 5952 text: lower case, the longest run of two or more zero groups as '::'. */
export function formatIpBytes(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
