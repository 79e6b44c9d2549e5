/** The config loaders of the ipvlan and bridge plugins: defaults, every key, code 7 naming key and value. */
import { describe, expect, it } from 'vitest';
import bridge from '../../../plugins/main/bridge/bridge.js';
import ipvlan from '../../../plugins/main/ipvlan/ipvlan.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { NetConf } from '../../../src/cni/types.js';

function env(args: Record<string, string> = {}): CniEnv {
  return { command: 'ADD', containerId: 'c', netns: '/run/netns/p', ifName: 'net1', args: new Map(Object.entries(args)), path: [] };
}
const base = { cniVersion: '1.0.0', name: 'n' };

function errorOf(fn: () => unknown): { code: number; message: string } {
  try {
    fn();
  } catch (e) {
    return e as { code: number; message: string };
  }
  throw new Error('expected an error');
}

describe('ipvlan config', () => {
  const conf = (extra: Record<string, unknown>): NetConf => ({ ...base, type: 'ipvlan', ...extra });

  it('defaults: no master (default route or chained), l2, the master\'s mtu, link on the node, no IPAM', () => {
    const c = ipvlan.loadConf(conf({}), env());
    expect(c).toMatchObject({ master: undefined, mode: 'l2', mtu: 0, linkInContainer: false, hasIpam: false });
    // An empty master is no master, as in the reference.
    expect(ipvlan.loadConf(conf({ master: '' }), env()).master).toBeUndefined();
  });

  it('reads every key', () => {
    for (const mode of ['l2', 'l3', 'l3s']) expect(ipvlan.loadConf(conf({ mode }), env()).mode).toBe(mode);
    const c = ipvlan.loadConf(conf({ master: 'ens224', mode: 'l3', mtu: 1400, linkInContainer: true, ipam: { type: 'static' } }), env());
    expect(c).toMatchObject({ master: 'ens224', mode: 'l3', mtu: 1400, linkInContainer: true, hasIpam: true });
    expect(c.raw.ipam).toEqual({ type: 'static' });
    // An empty ipam object is no IPAM (chained: prevResult's IPs).
    expect(ipvlan.loadConf(conf({ ipam: {} }), env()).hasIpam).toBe(false);
    expect(ipvlan.loadConf(conf({ mtu: 68 }), env()).mtu).toBe(68);
    expect(ipvlan.loadConf(conf({ mtu: null, mode: null, master: null }), env())).toMatchObject({ mtu: 0, mode: 'l2', master: undefined });
  });

  it.each([
    [{ mode: 'bridge' }, 'mode', '"bridge"'],
    [{ mode: 'L2' }, 'mode', '"L2"'],
    [{ mode: 2 }, 'mode', '2'],
    [{ mtu: 20 }, 'mtu', '20'],
    [{ mtu: 70000 }, 'mtu', '70000'],
    [{ mtu: 1400.5 }, 'mtu', '1400.5'],
    [{ mtu: '1400' }, 'mtu', '"1400"'],
    [{ master: 224 }, 'master', '224'],
    [{ linkInContainer: 'yes' }, 'linkInContainer', '"yes"'],
    [{ ipam: 'static' }, 'ipam', '"static"'],
    [{ ipam: { type: '' } }, 'ipam.type', '""'],
    [{ ipam: { type: 7 } }, 'ipam.type', '7'],
  ])('rejects %j with code 7 naming %s and the value', (extra, key, value) => {
    const e = errorOf(() => ipvlan.loadConf(conf(extra), env()));
    expect(e.code).toBe(7);
    expect(e.message).toContain(`invalid ${key} ${value}`);
  });
});

describe('bridge config', () => {
  const conf = (extra: Record<string, unknown>): NetConf => ({ ...base, type: 'bridge', ...extra });

  it('defaults: the reference plugin\'s (cni0, no gateway, default VLAN preserved), no IPAM', () => {
    expect(bridge.loadConf(conf({}), env())).toMatchObject({
      bridge: 'cni0',
      isGateway: false,
      isDefaultGateway: false,
      forceAddress: false,
      ipMasq: false,
      mtu: 0,
      hairpinMode: false,
      promiscMode: false,
      vlan: 0,
      vlanTrunk: [],
      preserveDefaultVlan: true,
      macspoofchk: false,
      enableDad: false,
      disableContainerInterface: false,
      portIsolation: false,
      uplink: undefined,
      mac: undefined,
      hasIpam: false,
    });
    expect(['iptables', 'nftables']).toContain(bridge.loadConf(conf({}), env()).ipMasqBackend);
    expect(bridge.loadConf(conf({ bridge: '' }), env()).bridge).toBe('cni0');
  });

  it('reads every key (the MAC comes from runtimeConfig, args or CNI_ARGS only, as in the reference)', () => {
    const c = bridge.loadConf(
      conf({
        bridge: 'br-pods',
        isGateway: true,
        forceAddress: true,
        ipMasq: true,
        ipMasqBackend: 'nftables',
        mtu: 9000,
        hairpinMode: true,
        vlan: 100,
        preserveDefaultVlan: false,
        macspoofchk: true,
        enabledad: true,
        portIsolation: true,
        uplink: 'ens256',
        ipam: { type: 'host-local' },
      }),
      env(),
    );
    expect(c).toMatchObject({
      bridge: 'br-pods',
      isGateway: true,
      isDefaultGateway: false,
      forceAddress: true,
      ipMasq: true,
      ipMasqBackend: 'nftables',
      mtu: 9000,
      hairpinMode: true,
      vlan: 100,
      vlanTrunk: [],
      preserveDefaultVlan: false,
      macspoofchk: true,
      enableDad: true,
      disableContainerInterface: false,
      portIsolation: true,
      uplink: 'ens256',
      mac: undefined,
      hasIpam: true,
    });
    expect(bridge.loadConf(conf({ ipMasqBackend: 'iptables' }), env()).ipMasqBackend).toBe('iptables');
    expect(bridge.loadConf(conf({ promiscMode: true }), env()).promiscMode).toBe(true);
    expect(bridge.loadConf(conf({ disableContainerInterface: true }), env()).disableContainerInterface).toBe(true);
    expect(bridge.loadConf(conf({ disableContainerInterface: true, ipam: {} }), env()).hasIpam).toBe(false);
  });

  it('isDefaultGateway implies isGateway', () => {
    expect(bridge.loadConf(conf({ isDefaultGateway: true }), env())).toMatchObject({ isGateway: true, isDefaultGateway: true });
  });

  it('vlanTrunk: single ids and ranges, both in one entry as the reference reads them', () => {
    expect(bridge.loadConf(conf({ vlanTrunk: [{ id: 42 }, { minID: 100, maxID: 110 }] }), env()).vlanTrunk).toEqual([
      { vid: 42 },
      { vid: 100, vidEnd: 110 },
    ]);
    expect(bridge.loadConf(conf({ vlanTrunk: [{ minID: 5, maxID: 5 }] }), env()).vlanTrunk).toEqual([{ vid: 5, vidEnd: 5 }]);
    // The reference adds the range and the id of an entry that has both.
    expect(bridge.loadConf(conf({ vlanTrunk: [{ minID: 10, maxID: 20, id: 5 }] }), env()).vlanTrunk).toEqual([
      { vid: 10, vidEnd: 20 },
      { vid: 5 },
    ]);
  });

  it('MAC precedence: runtimeConfig.mac, then args.cni.mac, then CNI_ARGS MAC', () => {
    expect(bridge.loadConf(conf({}), env({ MAC: '02:00:00:00:00:02' })).mac).toBe('02:00:00:00:00:02');
    expect(bridge.loadConf(conf({ args: { cni: { mac: '02:00:00:00:00:03' } } }), env({ MAC: '02:00:00:00:00:02' })).mac).toBe('02:00:00:00:00:03');
    expect(
      bridge.loadConf(conf({ args: { cni: { mac: '02:00:00:00:00:03' } }, runtimeConfig: { mac: '02:00:00:00:00:04' } }), env({ MAC: '02:00:00:00:00:02' })).mac,
    ).toBe('02:00:00:00:00:04');
  });

  it.each([
    [{ bridge: 7 }, 'bridge', '7'],
    [{ bridge: 'a-very-long-bridge-name' }, 'bridge', '"a-very-long-bridge-name"'],
    [{ bridge: 'br/0' }, 'bridge', '"br/0"'],
    [{ isGateway: 'true' }, 'isGateway', '"true"'],
    [{ isDefaultGateway: 1 }, 'isDefaultGateway', '1'],
    [{ forceAddress: 'yes' }, 'forceAddress', '"yes"'],
    [{ ipMasq: 1 }, 'ipMasq', '1'],
    [{ ipMasqBackend: 'ebtables' }, 'ipMasqBackend', '"ebtables"'],
    [{ mtu: 20 }, 'mtu', '20'],
    [{ mtu: 'jumbo' }, 'mtu', '"jumbo"'],
    [{ hairpinMode: 'on' }, 'hairpinMode', '"on"'],
    [{ hairpinMode: true, promiscMode: true }, 'promiscMode', 'true'],
    [{ vlan: 4095 }, 'vlan', '4095'],
    [{ vlan: -1 }, 'vlan', '-1'],
    [{ vlan: '100' }, 'vlan', '"100"'],
    [{ vlan: 100, vlanTrunk: [{ id: 200 }] }, 'vlanTrunk', '[{"id":200}]'],
    [{ vlanTrunk: { id: 1 } }, 'vlanTrunk', '{"id":1}'],
    [{ vlanTrunk: [7] }, 'vlanTrunk[0]', '7'],
    [{ vlanTrunk: [{ id: 0 }] }, 'vlanTrunk[0].id', '0'],
    [{ vlanTrunk: [{ id: 4095 }] }, 'vlanTrunk[0].id', '4095'],
    [{ vlanTrunk: [{ id: 1 }, { minID: 20, maxID: 10 }] }, 'vlanTrunk[1]', '{"minID":20,"maxID":10}'],
    [{ vlanTrunk: [{ minID: 20 }] }, 'vlanTrunk[0]', '{"minID":20}'],
    [{ vlanTrunk: [{ maxID: 20 }] }, 'vlanTrunk[0]', '{"maxID":20}'],
    [{ vlanTrunk: [{ id: 5, minID: 20 }] }, 'vlanTrunk[0]', '{"id":5,"minID":20}'],
    [{ vlanTrunk: [{}] }, 'vlanTrunk[0]', '{}'],
    [{ vlanTrunk: [{ minID: 1, maxID: 5000 }] }, 'vlanTrunk[0].maxID', '5000'],
    [{ preserveDefaultVlan: 'no' }, 'preserveDefaultVlan', '"no"'],
    [{ macspoofchk: 1 }, 'macspoofchk', '1'],
    [{ enabledad: 'true' }, 'enabledad', '"true"'],
    [{ disableContainerInterface: 0 }, 'disableContainerInterface', '0'],
    [{ portIsolation: 'true' }, 'portIsolation', '"true"'],
    [{ disableContainerInterface: true, ipam: { type: 'static' } }, 'disableContainerInterface', 'true'],
    [{ uplink: 5 }, 'uplink', '5'],
    [{ runtimeConfig: { mac: '01:00:5e:00:00:01' } }, 'mac', '"01:00:5e:00:00:01"'],
    [{ args: { cni: { mac: 'nope' } } }, 'mac', '"nope"'],
    [{ ipam: [] }, 'ipam', '[]'],
    [{ ipam: { type: '' } }, 'ipam.type', '""'],
  ])('rejects %j with code 7 naming %s and the value', (extra, key, value) => {
    const e = errorOf(() => bridge.loadConf(conf(extra), env()));
    expect(e.code).toBe(7);
    expect(e.message).toContain(`invalid ${key} ${value}`);
  });

  it('rejects a bad CNI_ARGS MAC with code 7', () => {
    const e = errorOf(() => bridge.loadConf(conf({}), env({ MAC: 'xx:yy' })));
    expect(e.code).toBe(7);
    expect(e.message).toContain('invalid mac "xx:yy"');
  });
});
