import { describe, expect, it } from 'vitest';
import { checkRouteList, describeRoute, routeSpecs } from '../../../plugins/pkg/iface.js';

describe('static route lists', () => {
  const ips = [{ address: '192.0.2.40/24', gateway: '192.0.2.1' }];
  it('carries the 1.1 fields; a missing gw takes the IP gateway', () => {
    expect(routeSpecs(ips, [{ dst: '203.0.113.0/24', mtu: 1400, advmss: 1360, priority: 5, table: 200, scope: 0 }], 7)).toEqual([
      { dst: '203.0.113.0/24', oif: 7, gw: '192.0.2.1', mtu: 1400, advmss: 1360, metric: 5, table: 200, scope: 0 },
    ]);
  });
  it('names a duplicate', () => {
    const specs = routeSpecs(ips, [{ dst: '198.51.100.0/24' }, { dst: '198.51.100.0/24', gw: '192.0.2.1' }], 7);
    expect(() => checkRouteList(specs, 'net1')).toThrow('invalid routes: duplicate route 198.51.100.0/24 via 192.0.2.1 dev net1 (routes[0] and routes[1])');
  });
  it('names both of a conflicting pair', () => {
    const specs = routeSpecs([], [{ dst: '198.51.100.0/24', gw: '192.0.2.1' }, { dst: '198.51.100.0/24', gw: '192.0.2.2' }], 7);
    expect(() => checkRouteList(specs, 'net1')).toThrow(/conflicting routes\[0\] .* via 192\.0\.2\.1 dev net1 and routes\[1\] .* via 192\.0\.2\.2 dev net1/);
  });
  it('allows one destination in two tables or at two metrics', () => {
    const specs = routeSpecs([], [{ dst: '198.51.100.0/24' }, { dst: '198.51.100.0/24', table: 200 }, { dst: '198.51.100.0/24', priority: 9 }], 7);
    expect(() => checkRouteList(specs, 'net1')).not.toThrow();
    expect(describeRoute(specs[1]!, 'net1')).toBe('198.51.100.0/24 dev net1 table 200');
  });
});
