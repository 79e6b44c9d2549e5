import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { formatIpBytes, parseIpBytes } from '../../../src/ip/text.js';

// Our parser must accept exactly what node:net accepts (zone ids aside, which CNI never uses).
const CORPUS = [
  '0.0.0.0', '10.1.2.3', '255.255.255.255', '256.1.1.1', '01.2.3.4', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.4 ', ' 1.2.3.4',
  '1.2.3.a', '', '.', '::', '::1', '1::', 'fd00::5', 'FD00::5', '2001:db8::1:0:0:1', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9',
  '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4:5:6::7:8', ':::', '1:::2', '1::2::3', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:',
  '12345::1', 'g::1', '::ffff:1.2.3.4', '::ffff:1.2.3.256', '1.2.3.4::', '::1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4',
  '::ffff:01.2.3.4', 'fe80::1', '0:0:0:0:0:0:0:0', '00000::1',
];

describe('IP text', () => {
  it.each(CORPUS)('accepts %j exactly when node:net does', (text) => {
    expect(parseIpBytes(text) !== undefined).toBe(isIP(text) !== 0);
  });

  it.each([
    ['10.1.2.3', '10.1.2.3'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['fd00:0:0:1:0:0:0:0', 'fd00:0:0:1::'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['::ffff:1.2.3.4', '::ffff:102:304'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['1:2:3:4:5:6:7:0', '1:2:3:4:5:6:7:0'],
  ])('%s prints as %s', (text, canonical) => {
    expect(formatIpBytes(parseIpBytes(text)!)).toBe(canonical);
  });
});
