import { describe, expect, it } from 'vitest';
import { formatIp, parseIp, parsePrefix } from '../../../src/ipam/ip.js';
import { RangeConfigError, addressAt, describeRange, offsetOf, parseRange } from '../../../src/ipam/range.js';

describe('ip: BigInt parsing and formatting', () => {
  it.each([
    ['192.0.2.1', 4, 0xc0000201n],
    ['0.0.0.0', 4, 0n],
    ['255.255.255.255', 4, 0xffffffffn],
    ['::', 6, 0n],
    ['2001:db8::1', 6, 0x20010db8000000000000000000000001n],
    ['::ffff:192.0.2.1', 6, 0xffffc0000201n],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 6, (1n << 128n) - 1n],
  ])('%s', (text, family, value) => {
    expect(parseIp(text)).toEqual({ family, value });
  });

  it('rejects non-addresses and zones', () => {
    for (const bad of ['', '1.2.3', '1.2.3.256', 'fe80::1%eth0', '10.0.0.0/24', 'x']) expect(parseIp(bad)).toBeUndefined();
  });

  it('formats IPv6 as RFC 5952', () => {
    expect(formatIp(0x20010db8000000000000000000000001n, 6)).toBe('2001:db8::1');
    expect(formatIp(0x20010db8000000010000000000000000n, 6)).toBe('2001:db8:0:1::');
    expect(formatIp(0x20010db8000100000001000000000001n, 6)).toBe('2001:db8:1:0:1::1');
    expect(formatIp(0n, 6)).toBe('::');
  });

  it('parsePrefix masks host bits and needs a length unless bare is allowed', () => {
    expect(parsePrefix('192.168.2.229/30')).toEqual({ family: 4, network: 0xc0a802e4n, prefix: 30 });
    expect(parsePrefix('10.0.0.1')).toBeUndefined();
    expect(parsePrefix('10.0.0.1', true)).toEqual({ family: 4, network: 0x0a000001n, prefix: 32 });
    expect(parsePrefix('10.0.0.0/33')).toBeUndefined();
    expect(parsePrefix('10.0.0.0/x')).toBeUndefined();
  });
});

describe('range: whereabouts range semantics', () => {
  it('a CIDR drops its host bits and skips the network and all-ones addresses', () => {
    const r = parseRange({ range: '192.168.1.44/28' });
    expect(r.cidr).toBe('192.168.1.32/28');
    expect(addressAt(r, r.first)).toBe('192.168.1.33');
    expect(addressAt(r, r.last)).toBe('192.168.1.46');
  });

  it('A-B/len: start A, end B, network of B/len', () => {
    const r = parseRange({ range: '192.168.1.10-192.168.1.20/24' });
    expect(r.cidr).toBe('192.168.1.0/24');
    expect(addressAt(r, r.first)).toBe('192.168.1.10');
    expect(addressAt(r, r.last)).toBe('192.168.1.20');
  });

  it('A-B/len with A outside the network of B is an error naming range', () => {
    expect(() => parseRange({ range: '192.168.2.10-192.168.1.20/24' })).toThrow(RangeConfigError);
    try {
      parseRange({ range: '192.168.2.10-192.168.1.20/24' });
    } catch (e) {
      expect((e as RangeConfigError).key).toBe('range');
      expect((e as Error).message).toContain('192.168.2.10');
      expect((e as Error).message).toContain('192.168.1.0/24');
    }
  });

  it('range_start and range_end are inclusive', () => {
    const r = parseRange({ range: '10.0.0.0/24', range_start: '10.0.0.100', range_end: '10.0.0.110' });
    expect(addressAt(r, r.first)).toBe('10.0.0.100');
    expect(addressAt(r, r.last)).toBe('10.0.0.110');
  });

  it('a bound outside the usable range is ignored with a warning naming the key', () => {
    const warnings: string[] = [];
    const r = parseRange({ range: '10.0.0.0/24', range_start: '10.0.1.5', range_end: '10.0.0.255' }, (m) => warnings.push(m));
    expect(addressAt(r, r.first)).toBe('10.0.0.1');
    expect(addressAt(r, r.last)).toBe('10.0.0.254');
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^range_start 10\.0\.1\.5/);
    expect(warnings[1]).toMatch(/^range_end 10\.0\.0\.255/);
  });

  it('range_end below range_start is ignored', () => {
    const warnings: string[] = [];
    const r = parseRange({ range: '10.0.0.0/24', range_start: '10.0.0.50', range_end: '10.0.0.10' }, (m) => warnings.push(m));
    expect(addressAt(r, r.first)).toBe('10.0.0.50');
    expect(addressAt(r, r.last)).toBe('10.0.0.254');
    expect(warnings[0]).toMatch(/^range_end/);
  });

  it('a non-address bound is an error naming the key', () => {
    expect(() => parseRange({ range: '10.0.0.0/24', range_start: 'ten' })).toThrow(/invalid range_start "ten"/);
  });

  it('excludes: CIDRs are masked, bare IPs are single addresses, other families ignored', () => {
    const r = parseRange({ range: '192.168.2.0/24', exclude: ['192.168.2.229/30', '192.168.2.5', 'fd00::/64', '192.168.2.6/32'] });
    expect(r.excludes.map(([a, b]) => [addressAt(r, a), addressAt(r, b)])).toEqual([
      ['192.168.2.5', '192.168.2.6'],
      ['192.168.2.228', '192.168.2.231'],
    ]);
  });

  it('a bad exclude is an error naming its index', () => {
    expect(() => parseRange({ range: '10.0.0.0/24', exclude: ['10.0.0.0/24', 'nope'] })).toThrow(/invalid exclude\[1\] "nope"/);
  });

  it('prefixes leaving fewer than 2 host bits have no usable address', () => {
    expect(() => parseRange({ range: '10.0.0.0/31' })).toThrow(/no usable/);
    expect(() => parseRange({ range: 'fd00::/127' })).toThrow(/no usable/);
    expect(() => parseRange({ range: '10.0.0.0/30' })).not.toThrow();
  });

  it('bad ranges are errors naming range', () => {
    for (const bad of ['10.0.0.0', 'banana', '10.0.0.0/40', '10.0.0.1-banana/24']) {
      expect(() => parseRange({ range: bad }), bad).toThrow(/invalid range/);
    }
  });

  it('IPv6 /64 offsets are full 128-bit', () => {
    const r = parseRange({ range: 'fd00:1::/64' });
    expect(r.last).toBe((1n << 64n) - 2n);
    expect(addressAt(r, r.last)).toBe('fd00:1::ffff:ffff:ffff:fffe');
    expect(offsetOf(r, 'fd00:1::8000:0:0:1')).toBe((1n << 63n) + 1n);
    expect(offsetOf(r, 'fd00:2::1')).toBeUndefined();
  });

  it('describeRange names range, start, end and excludes', () => {
    const r = parseRange({ range: '10.0.0.0/29', exclude: ['10.0.0.2'] });
    expect(describeRange(r)).toBe('range 10.0.0.0/29 (start 10.0.0.1, end 10.0.0.6, excludes 10.0.0.2)');
  });
});
