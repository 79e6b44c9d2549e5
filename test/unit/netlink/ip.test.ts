import { describe, expect, it } from 'vitest';
import { bufferToIp, canonicalCidr, cidrContains, ipToBuffer, networkOf, parseCidr } from '../../../src/netlink/ip.js';

describe('address encoding', () => {
  it.each([
    ['10.1.2.3', '0a010203'],
    ['::1', '00000000000000000000000000000001'],
    ['fd00::5', 'fd000000000000000000000000000005'],
    ['2001:db8:0:0:1::1', '20010db8000000000001000000000001'],
    ['::ffff:1.2.3.4', '00000000000000000000ffff01020304'],
  ])('%s encodes to %s and back', (ip, hex) => {
    expect(ipToBuffer(ip).toString('hex')).toBe(hex);
    expect(ipToBuffer(bufferToIp(ipToBuffer(ip))).toString('hex')).toBe(hex);
  });

  it('prints IPv6 in RFC 5952 form', () => {
    expect(bufferToIp(ipToBuffer('2001:0db8:0000:0000:0000:0000:0000:0001'))).toBe('2001:db8::1');
    expect(bufferToIp(ipToBuffer('fd00:0:0:1:0:0:0:0'))).toBe('fd00:0:0:1::');
    expect(canonicalCidr('FD00:0::5/64')).toBe('fd00::5/64');
  });

  it('parses CIDRs and rejects bad prefixes', () => {
    expect(parseCidr('10.0.0.1/24')).toEqual({ ip: '10.0.0.1', prefix: 24, family: 2 });
    expect(parseCidr('fd00::1')).toMatchObject({ prefix: 128, family: 10 });
    expect(() => parseCidr('10.0.0.1/33')).toThrow();
    expect(() => parseCidr('10.0.0.1/x')).toThrow();
    expect(() => parseCidr('300.0.0.1/24')).toThrow();
  });

  it('computes networks and containment', () => {
    expect(networkOf(parseCidr('192.168.1.44/28'))).toBe('192.168.1.32/28');
    expect(cidrContains(parseCidr('10.1.0.0/16'), '10.1.255.3')).toBe(true);
    expect(cidrContains(parseCidr('10.1.0.0/16'), '10.2.0.3')).toBe(false);
    expect(cidrContains(parseCidr('fd00::/64'), 'fd00::ffff')).toBe(true);
    expect(cidrContains(parseCidr('fd00::/64'), '10.0.0.1')).toBe(false);
  });
});
