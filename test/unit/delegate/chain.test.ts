import { describe, expect, it } from 'vitest';
import { pluginConf, toConfList } from '../../../src/delegate/chain.js';
import { selectType } from '../../../src/delegate/entry.js';
import { CniError } from '../../../src/cni/errors.js';

describe('delegates as confs or conflists', () => {
  it('a single conf becomes a one-plugin list keeping name and version', () => {
    const list = toConfList({ cniVersion: '0.4.0', name: 'a', type: 'macvlan', master: 'eth1' }, 'delegates[1]');
    expect(list).toEqual({ cniVersion: '0.4.0', name: 'a', plugins: [{ type: 'macvlan', master: 'eth1' }] });
  });

  it('a conflist is kept as it is', () => {
    const raw = { cniVersion: '1.0.0', name: 'b', plugins: [{ type: 'macvlan' }, { type: 'tuning' }] };
    expect(toConfList(raw, 'x')).toBe(raw);
  });

  it.each([
    [{ cniVersion: '1.0.0', plugins: [{ type: 'macvlan' }] }, 'delegates[2].name'],
    [{ name: 'c', plugins: [{ master: 'eth1' }] }, 'delegates[2].plugins[0].type'],
    [{ name: 'c' }, 'delegates[2].type'],
    ['macvlan', 'delegates[2]'],
  ])('a malformed delegate is code 7 naming the key: %j', (raw, key) => {
    let err: unknown;
    try {
      toConfList(raw, 'delegates[2]');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).code).toBe(7);
    expect((err as CniError).message).toContain(key);
  });

  it('each plugin gets the list name and version, and only the runtime config it declares', () => {
    const list = {
      cniVersion: '1.0.0',
      name: 'n',
      plugins: [
        { type: 'macvlan', capabilities: { mac: true } },
        { type: 'sbr' },
      ],
    };
    const rc = { mac: '02:00:00:00:00:01', portMappings: [{ hostPort: 80 }] };
    expect(pluginConf(list, 0, rc)).toEqual({
      type: 'macvlan',
      capabilities: { mac: true },
      name: 'n',
      cniVersion: '1.0.0',
      runtimeConfig: { mac: '02:00:00:00:00:01' },
    });
    expect(pluginConf(list, 1, rc)).toEqual({ type: 'sbr', name: 'n', cniVersion: '1.0.0' });
  });
});

describe('which plugin runs', () => {
  it('the name we were run as wins over the config type', () => {
    expect(selectType('/opt/cni/bin/static', { cniVersion: '1.0.0', name: 'n', type: 'macvlan' })).toBe('static');
  });
  it('run as multinic (or node), the config type selects', () => {
    expect(selectType('/opt/cni/bin/multinic', { cniVersion: '1.0.0', name: 'n', type: 'macvlan' })).toBe('macvlan');
    expect(selectType('node', { cniVersion: '1.0.0', name: 'n', type: 'multinic' })).toBe('multinic');
  });
  it('a type that is not built in is code 7 naming it', () => {
    expect(() => selectType('multinic', { cniVersion: '1.0.0', name: 'n', type: 'calico' })).toThrow(/calico/);
  });
});
