import { describe, expect, it } from 'vitest';
import { handle, type Dispatch } from '../../../src/cni/skel.js';
import { CniError, ErrorCode } from '../../../src/cni/errors.js';
import { SUPPORTED_VERSIONS } from '../../../src/cni/version.js';
import type { Result } from '../../../src/cni/types.js';

const ADD_ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
const RESULT: Result = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'net1', mac: '02:00:00:00:00:01', mtu: 1400, sandbox: '/run/netns/x' }],
  ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 0 }, { address: 'fd00::5/64', interface: 0 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 9000, table: 100 }],
};

function conf(version: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ cniVersion: version, name: 'n', type: 'macvlan', ...extra });
}

const ok: Dispatch = async () => RESULT;
const mustNotRun: Dispatch = async () => {
  throw new Error('dispatch must not run');
};

describe('skeleton: errors before any work', () => {
  it('bad JSON on stdin is code 6 with a non-zero exit', async () => {
    const out = await handle(ADD_ENV, '{not json', mustNotRun);
    expect(out.exitCode).not.toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 6, cniVersion: '1.1.0' });
  });

  it('ADD without CNI_CONTAINERID is code 4 naming the variable', async () => {
    const { CNI_CONTAINERID: _, ...env } = ADD_ENV;
    const out = await handle(env, conf('1.0.0'), mustNotRun);
    const err = JSON.parse(out.stdout);
    expect(err.code).toBe(4);
    expect(err.msg).toContain('CNI_CONTAINERID');
    expect(out.exitCode).toBe(1);
  });

  it.each(['CNI_NETNS', 'CNI_IFNAME'])('ADD without %s is code 4 naming it', async (name) => {
    const env: Record<string, string> = { ...ADD_ENV };
    delete env[name];
    const err = JSON.parse((await handle(env, conf('1.0.0'), mustNotRun)).stdout);
    expect(err).toMatchObject({ code: 4 });
    expect(err.msg).toContain(name);
  });

  it('DEL does not need CNI_NETNS', async () => {
    const { CNI_NETNS: _, ...env } = ADD_ENV;
    const out = await handle({ ...env, CNI_COMMAND: 'DEL' }, conf('1.0.0'), async () => undefined);
    expect(out).toMatchObject({ exitCode: 0, stdout: '' });
  });

  it('an unknown cniVersion is code 1', async () => {
    const out = await handle(ADD_ENV, conf('9.9.9'), mustNotRun);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 1 });
    expect(JSON.parse(out.stdout).msg).toContain('9.9.9');
  });

  it('an unknown CNI_COMMAND is code 4', async () => {
    const out = await handle({ ...ADD_ENV, CNI_COMMAND: 'FROB' }, conf('1.0.0'), mustNotRun);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 4 });
  });

  it('an interface name over 15 characters is code 4', async () => {
    const out = await handle({ ...ADD_ENV, CNI_IFNAME: 'a-very-long-ifname' }, conf('1.0.0'), mustNotRun);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 4 });
  });

  it.each([
    ['CHECK', '0.3.1'],
    ['GC', '1.0.0'],
    ['STATUS', '1.0.0'],
  ])('%s with config version %s is code 1', async (command, version) => {
    const out = await handle({ ...ADD_ENV, CNI_COMMAND: command }, conf(version), mustNotRun);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 1, cniVersion: version });
  });

  it('a CniError from the plugin is printed with its code and the config version', async () => {
    const out = await handle(ADD_ENV, conf('0.4.0'), async () => {
      throw new CniError(ErrorCode.InvalidNetworkConfig, 'invalid master "eth9": no such interface');
    });
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: '0.4.0', code: 7, msg: 'invalid master "eth9": no such interface' });
  });

  it('any other exception is code 999', async () => {
    const out = await handle(ADD_ENV, conf('1.0.0'), async () => {
      throw new Error('boom');
    });
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 999, msg: 'boom' });
  });
});

describe('VERSION', () => {
  it('lists every supported version, with or without stdin', async () => {
    for (const stdin of ['', '{"cniVersion":"0.4.0"}']) {
      const out = await handle({ CNI_COMMAND: 'VERSION' }, stdin, mustNotRun);
      const reply = JSON.parse(out.stdout);
      expect(reply.supportedVersions).toEqual(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
      expect(SUPPORTED_VERSIONS).toEqual(reply.supportedVersions);
    }
  });
});

describe('results are printed in the config version', () => {
  it('1.1.0 keeps interface mtu and route table', async () => {
    const r = JSON.parse((await handle(ADD_ENV, conf('1.1.0'), ok)).stdout);
    expect(r.interfaces[0].mtu).toBe(1400);
    expect(r.routes[0]).toMatchObject({ mtu: 9000, table: 100 });
    expect(r.ips[0].version).toBeUndefined();
  });

  it('1.0.0 drops the 1.1 fields and carries no ip version', async () => {
    const r = JSON.parse((await handle(ADD_ENV, conf('1.0.0'), ok)).stdout);
    expect(r.cniVersion).toBe('1.0.0');
    expect(r.interfaces[0].mtu).toBeUndefined();
    expect(r.routes[0]).toEqual({ dst: '0.0.0.0/0', gw: '10.1.0.1' });
    expect(r.ips[0].version).toBeUndefined();
  });

  it.each(['0.3.0', '0.3.1', '0.4.0'])('%s gives each ip a version', async (v) => {
    const r = JSON.parse((await handle(ADD_ENV, conf(v), ok)).stdout);
    expect(r.cniVersion).toBe(v);
    expect(r.ips.map((ip: { version: string }) => ip.version)).toEqual(['4', '6']);
    expect(r.interfaces[0]).toEqual({ name: 'net1', mac: '02:00:00:00:00:01', sandbox: '/run/netns/x' });
  });
});

describe('prevResult and args reach the plugin', () => {
  it('a 0.4.0 prevResult is parsed into the 1.x shape', async () => {
    let seen: unknown;
    const prevResult = { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.0.0.2/24', interface: 0 }], interfaces: [{ name: 'eth0' }] };
    await handle({ ...ADD_ENV, CNI_COMMAND: 'CHECK', CNI_ARGS: 'K8S_POD_NAME=p;IgnoreUnknown=1' }, conf('0.4.0', { prevResult }), async (inv) => {
      seen = { prev: inv.prevResult, args: Object.fromEntries(inv.env.args) };
    });
    expect(seen).toEqual({
      prev: { cniVersion: '0.4.0', ips: [{ address: '10.0.0.2/24', interface: 0 }], interfaces: [{ name: 'eth0' }] },
      args: { K8S_POD_NAME: 'p', IgnoreUnknown: '1' },
    });
  });

  it('a malformed prevResult is code 6', async () => {
    const out = await handle({ ...ADD_ENV, CNI_COMMAND: 'CHECK' }, conf('1.0.0', { prevResult: { ips: [{ gateway: 'x' }] } }), mustNotRun);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 6 });
  });

  it('a malformed CNI_ARGS is code 4', async () => {
    const out = await handle({ ...ADD_ENV, CNI_ARGS: 'novalue' }, conf('1.0.0'), mustNotRun);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 4 });
  });
});
