import { describe, expect, it } from 'vitest';
import type { Result } from '../../../src/cni/types.js';
import type { RouteInfo, RuleInfo } from '../../../src/netlink/index.js';
import {
  checkState,
  nextFreeTable,
  parseGateways,
  planAdd,
  planAddWithTable,
  planDel,
  routeBelongsTo,
  selectIps,
} from '../../../plugins/meta/sbr/plan.js';
import sbr from '../../../plugins/meta/sbr/sbr.js';
import type { CniEnv } from '../../../src/cni/env.js';

const V4 = 2;
const V6 = 10;
const defaults: RuleInfo[] = [
  { family: V4, table: 255, action: 1, priority: 0 },
  { family: V4, table: 254, action: 1, priority: 32766 },
  { family: V4, table: 253, action: 1, priority: 32767 },
  { family: V6, table: 255, action: 1, priority: 0 },
  { family: V6, table: 254, action: 1, priority: 32766 },
];
const route = (r: Partial<RouteInfo> & { dst: string }): RouteInfo => ({
  family: r.dst.includes(':') ? V6 : V4,
  table: 254,
  scope: 0,
  type: 1,
  protocol: 3,
  ...r,
});
const subnet = route({ dst: '192.0.2.0/24', oif: 5, scope: 253, protocol: 2, src: '192.0.2.20' });
const staticRoute = route({ dst: '198.51.100.0/24', oif: 5, gw: '192.0.2.1' });
const eth0Default = route({ dst: '0.0.0.0/0', oif: 2, gw: '10.0.0.1' });

describe('sbr config', () => {
  const env = {} as CniEnv;
  it('reads table, gateways and addSourceHints', () => {
    const c = sbr.loadConf({ cniVersion: '1.0.0', name: 'n', type: 'sbr', table: 7, gateways: ['192.0.2.9', '2001:db8::9'], addSourceHints: true }, env);
    expect(c).toMatchObject({ table: 7, gateways: { v4: '192.0.2.9', v6: '2001:db8::9' }, addSourceHints: true });
  });
  it('names the bad key and value', () => {
    expect(() => parseGateways(['192.0.2.1', '192.0.2.2'])).toThrow(/gateways\[1\] "192.0.2.2": is a second IPv4 gateway after 192.0.2.1/);
    expect(() => parseGateways(['x'])).toThrow(/gateways\[0\] "x": must be an IP address/);
    expect(() => parseGateways(['192.0.2.1', '2001:db8::1', '192.0.2.3'])).toThrow(/at most 2 entries/);
    expect(() => sbr.loadConf({ cniVersion: '1.0.0', name: 'n', type: 'sbr', table: 'x' }, env)).toThrow(/invalid table "x"/);
  });
});

describe('selectIps', () => {
  const prev: Result = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'net1' }, { name: 'net2' }],
    ips: [
      { address: '192.0.2.20/24', interface: 0 },
      { address: '192.0.2.21/24', interface: 1 },
      { address: '192.0.2.22/24' },
    ],
  };
  it('takes the IPs of the interface and those without one', () => {
    expect(selectIps(prev, 'net1').map((i) => i.address)).toEqual(['192.0.2.20/24', '192.0.2.22/24']);
  });
  it('fails when none is left', () => {
    expect(() => selectIps({ cniVersion: '1.0.0', interfaces: [{ name: 'x' }], ips: [{ address: '192.0.2.1/24', interface: 0 }] }, 'net1')).toThrow(
      /no IP addresses on interface "net1"/,
    );
  });
});

describe('tables', () => {
  it('starts at 100 and skips tables in use and the reserved ones', () => {
    expect(nextFreeTable(new Set([254, 255]), 100)).toBe(100);
    expect(nextFreeTable(new Set([100, 101]), 100)).toBe(102);
    expect(nextFreeTable(new Set(), 253)).toBe(256);
  });
});

describe('planAdd', () => {
  it('rule, default route, copies, then removal from main, as the reference orders them', () => {
    const plan = planAdd({
      ips: [{ address: '192.0.2.20/24', gateway: '192.0.2.1' }],
      linkIndex: 5,
      rules: defaults,
      routes: [subnet, staticRoute, eth0Default],
      gateways: {},
      addSourceHints: false,
    });
    expect(plan.tables).toEqual([100]);
    expect(plan.changes.map((c) => c.change)).toEqual([
      { op: 'addRule', rule: { family: V4, src: '192.0.2.20/32', table: 100 } },
      { op: 'addRoute', route: { dst: '0.0.0.0/0', gw: '192.0.2.1', oif: 5, table: 100 } },
      { op: 'replaceRoute', route: expect.objectContaining({ dst: '192.0.2.0/24', table: 100, src: '192.0.2.20', protocol: 2, scope: 253 }) },
      { op: 'replaceRoute', route: expect.objectContaining({ dst: '198.51.100.0/24', table: 100, gw: '192.0.2.1' }) },
      { op: 'delRoute', route: expect.objectContaining({ dst: '192.0.2.0/24', table: 254 }) },
      { op: 'delRoute', route: expect.objectContaining({ dst: '198.51.100.0/24', table: 254 }) },
    ]);
    // every change has its undo
    expect(plan.changes.every((c) => c.undo !== undefined)).toBe(true);
    expect(plan.changes[4]!.undo).toEqual({ op: 'addRoute', route: expect.objectContaining({ dst: '192.0.2.0/24', table: 254 }) });
  });

  it('one table per IP, the next free one; a configured gateway wins', () => {
    const plan = planAdd({
      ips: [
        { address: '192.0.2.20/24', gateway: '192.0.2.1' },
        { address: '2001:db8::20/64', gateway: '2001:db8::1' },
      ],
      linkIndex: 5,
      rules: [...defaults, { family: V4, table: 101, action: 1, src: '203.0.113.5/32' }],
      routes: [subnet],
      gateways: { v6: '2001:db8::fe' },
      addSourceHints: false,
    });
    expect(plan.tables).toEqual([100, 102]);
    expect(plan.changes.map((c) => c.change)).toContainEqual({
      op: 'addRoute',
      route: { dst: '::/0', gw: '2001:db8::fe', oif: 5, table: 102 },
    });
  });

  it('copies a route when its source or gateway is in the subnet or it has neither', () => {
    const ip = { address: '192.0.2.20/24' };
    expect(routeBelongsTo(subnet, ip)).toBe(true);
    expect(routeBelongsTo(staticRoute, ip)).toBe(true);
    expect(routeBelongsTo(route({ dst: '224.0.0.0/4', oif: 5, scope: 253 }), ip)).toBe(true);
    expect(routeBelongsTo(route({ dst: '10.0.0.0/8', oif: 5, gw: '203.0.113.1' }), ip)).toBe(false);
  });

  it('addSourceHints: the subnet route stays in main with a hint, only the others leave main', () => {
    const plan = planAdd({
      ips: [{ address: '192.0.2.20/24', gateway: '192.0.2.1' }],
      linkIndex: 5,
      rules: defaults,
      routes: [subnet, staticRoute],
      gateways: {},
      addSourceHints: true,
    });
    const tail = plan.changes.slice(-2);
    expect(tail.map((c) => c.change)).toEqual([
      { op: 'replaceRoute', route: { dst: '192.0.2.0/24', src: '192.0.2.20', oif: 5, table: 254, scope: 253 } },
      { op: 'delRoute', route: expect.objectContaining({ dst: '198.51.100.0/24', table: 254 }) },
    ]);
    expect(tail.every((c) => c.optional)).toBe(true);
  });

  it('table mode: rules only', () => {
    const plan = planAddWithTable([{ address: '192.0.2.20/24' }, { address: '2001:db8::20/64' }], 42);
    expect(plan.changes.map((c) => c.change)).toEqual([
      { op: 'addRule', rule: { family: V4, src: '192.0.2.20/32', table: 42 } },
      { op: 'addRule', rule: { family: V6, src: '2001:db8::20/128', table: 42 } },
    ]);
  });
});

describe('planDel', () => {
  const ours: RuleInfo = { family: V4, table: 100, action: 1, src: '192.0.2.20/32', priority: 32765 };
  const other: RuleInfo = { family: V4, table: 101, action: 1, src: '192.0.2.21/32', priority: 32765 };
  const t100 = [route({ dst: '0.0.0.0/0', table: 100, oif: 5, gw: '192.0.2.1' }), route({ dst: '192.0.2.0/24', table: 100, oif: 5 })];
  const t101 = [route({ dst: '0.0.0.0/0', table: 101, oif: 6, gw: '192.0.2.1' })];

  it('removes our rule and empties our table, leaving the other attachment alone', () => {
    const changes = planDel({ addresses: ['192.0.2.20/24'], linkIndex: 5, rules: [...defaults, ours, other], routes: [...t100, ...t101], table: undefined });
    expect(changes).toEqual([
      { op: 'delRule', rule: { family: V4, src: '192.0.2.20/32', table: 100, priority: 32765 } },
      { op: 'delRoute', route: expect.objectContaining({ dst: '0.0.0.0/0', table: 100 }) },
      { op: 'delRoute', route: expect.objectContaining({ dst: '192.0.2.0/24', table: 100 }) },
    ]);
  });

  it('works without the link', () => {
    const changes = planDel({ addresses: ['192.0.2.20'], linkIndex: undefined, rules: [...defaults, ours], routes: t100, table: undefined });
    expect(changes).toHaveLength(3);
  });

  it('table mode: only the rules into that table', () => {
    const r: RuleInfo = { family: V4, table: 42, action: 1, src: '192.0.2.20/32' };
    expect(planDel({ addresses: ['192.0.2.20/24'], linkIndex: 5, rules: [...defaults, ours, r], routes: [], table: 42 })).toEqual([
      { op: 'delRule', rule: { family: V4, src: '192.0.2.20/32', table: 42 } },
    ]);
  });
});

describe('checkState', () => {
  const base = {
    ips: [{ address: '192.0.2.20/24', gateway: '192.0.2.1' }],
    linkIndex: 5,
    linkName: 'net1',
    gateways: {},
    table: undefined,
  };
  const rule: RuleInfo = { family: V4, table: 100, action: 1, src: '192.0.2.20/32' };
  it('passes when the rule and the table are there', () => {
    const routes = [route({ dst: '0.0.0.0/0', table: 100, oif: 5, gw: '192.0.2.1' }), route({ dst: '192.0.2.0/24', table: 100, oif: 5 })];
    expect(checkState({ ...base, rules: [...defaults, rule], routes })).toEqual([]);
  });
  it('names what is missing', () => {
    expect(checkState({ ...base, rules: [...defaults, rule], routes: [] })).toEqual([
      'route 0.0.0.0/0 via 192.0.2.1 dev net1 table 100 is missing',
      'route 192.0.2.0/24 dev net1 table 100 is missing',
    ]);
    expect(checkState({ ...base, rules: defaults, routes: [] })).toEqual(['rule from 192.0.2.20/32 lookup <table> is missing']);
  });
});
