/**
 * Proves the harness itself, using only Debian's reference plugins
 * (/usr/lib/cni), so a failure here is the harness's and not the product's:
 * the driver, the netns fixture, the snapshot helpers and the cleanup.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  REFERENCE_CNI_DIR,
  TestEnv,
  addressesOf,
  createNetns,
  createNode,
  findLink,
  listTestNetns,
  netnsExists,
  normalize,
  ownerPid,
  routesInTable,
  runCnitool,
  runPluginDirect,
  snapshot,
  sweepLeftovers,
  useNetnsFixture,
  type CnitoolOptions,
  type Netns,
} from '../helpers/index.js';

describe('reference plugins through the libcni driver', () => {
  const fx = useNetnsFixture({
    nics: [{ name: 'eth1', address: '192.0.2.10/24', peerAddress: '192.0.2.1/24' }],
  });

  // bin: null = reference plugins only, no multinic aliases shadowing them.
  const cni = (o: Omit<CnitoolOptions, 'node' | 'bin'>) => runCnitool({ node: fx.node, bin: null, ...o });

  it('bridge + host-local: ADD puts eth0 with its address in the pod, CHECK passes, DEL removes it', async () => {
    const conflist = {
      cniVersion: '1.0.0',
      name: 'brnet',
      plugins: [
        {
          type: 'bridge',
          bridge: 'cnibr0',
          isGateway: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: '198.51.100.0/24' }]],
            // Keep IPAM state in the test's scratch dir, not the host's /var/lib/cni.
            dataDir: join(fx.tmpDir, 'host-local'),
          },
        },
      ],
    };
    const before = normalize(await snapshot(fx.pod));

    const add = await cni({ command: 'add', netName: 'brnet', confs: [conflist], netns: fx.pod });
    expect(add.exitCode, add.stderr).toBe(0);
    expect(add.json.cniVersion).toBe('1.0.0');
    expect(add.json.ips).toEqual([expect.objectContaining({ address: '198.51.100.2/24', gateway: '198.51.100.1' })]);

    const pod = await snapshot(fx.pod);
    expect(findLink(pod, 'eth0')?.linkinfo?.info_kind).toBe('veth');
    expect(addressesOf(pod, 'eth0', { family: 4 })).toEqual(['198.51.100.2/24']);
    expect(routesInTable(pod.routes4)).toContainEqual(
      expect.objectContaining({ dst: '198.51.100.0/24', dev: 'eth0' }),
    );
    // The bridge lives in the node netns: plugins really ran there.
    const node = await snapshot(fx.node);
    expect(addressesOf(node, 'cnibr0', { family: 4 })).toEqual(['198.51.100.1/24']);

    const check = await cni({ command: 'check', netName: 'brnet', confs: [conflist], netns: fx.pod });
    expect(check.exitCode, check.stderr).toBe(0);

    const del = await cni({ command: 'del', netName: 'brnet', confs: [conflist], netns: fx.pod });
    expect(del.exitCode, del.stderr).toBe(0);
    expect(findLink(await snapshot(fx.pod), 'eth0')).toBeUndefined();
    // Differential use of the normaliser: DEL restored the pod exactly.
    expect(normalize(await snapshot(fx.pod))).toEqual(before);
  });

  it('macvlan on the node eth1 with static IPAM (single .conf): ADD, traffic to the switch, DEL', async () => {
    const conf = {
      cniVersion: '1.0.0',
      name: 'mvnet',
      type: 'macvlan',
      master: 'eth1',
      mode: 'bridge',
      ipam: { type: 'static', addresses: [{ address: '192.0.2.20/24' }] },
    };
    const add = await cni({ command: 'add', netName: 'mvnet', confs: [conf], netns: fx.pod, ifName: 'net1' });
    expect(add.exitCode, add.stderr).toBe(0);
    expect(add.json.ips).toEqual([expect.objectContaining({ address: '192.0.2.20/24' })]);

    const pod = await snapshot(fx.pod);
    const link = findLink(pod, 'net1');
    expect(link?.linkinfo?.info_kind).toBe('macvlan');
    expect(link?.linkinfo?.info_data?.mode).toBe('bridge');
    expect(addressesOf(pod, 'net1', { family: 4 })).toEqual(['192.0.2.20/24']);

    // The pod reaches the switch end of eth1: the topology carries traffic.
    const ping = await fx.pod.exec(['ping', '-c', '1', '-W', '2', '192.0.2.1']);
    expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);

    const del = await cni({ command: 'del', netName: 'mvnet', confs: [conf], netns: fx.pod, ifName: 'net1' });
    expect(del.exitCode, del.stderr).toBe(0);
    expect(findLink(await snapshot(fx.pod), 'net1')).toBeUndefined();
  });

  it('normalised snapshots of two pods given the same config are equal', async () => {
    const conf = {
      cniVersion: '1.0.0',
      name: 'mvnet',
      type: 'macvlan',
      master: 'eth1',
      ipam: { type: 'static', addresses: [{ address: '192.0.2.30/24' }] },
    };
    const pods: Netns[] = [fx.pod, await fx.newPod()];
    const snaps = [];
    for (const pod of pods) {
      // One at a time: both pods get the same address.
      const add = await cni({ command: 'add', netName: 'mvnet', confs: [conf], netns: pod });
      expect(add.exitCode, add.stderr).toBe(0);
      snaps.push(await snapshot(pod));
      const del = await cni({ command: 'del', netName: 'mvnet', confs: [conf], netns: pod });
      expect(del.exitCode, del.stderr).toBe(0);
    }
    const [a, b] = snaps as [Awaited<ReturnType<typeof snapshot>>, Awaited<ReturnType<typeof snapshot>>];
    // Raw, they differ at least in MAC addresses...
    expect(findLink(a, 'eth0')?.address).not.toEqual(findLink(b, 'eth0')?.address);
    // ...normalised, they are the same configuration.
    expect(normalize(a)).toEqual(normalize(b));
  });

  it('capArgs reach plugins as runtimeConfig and args as CNI_ARGS', async () => {
    // Reference static IPAM takes addresses from runtimeConfig.ips (with the
    // "ips" capability) and from CNI_ARGS IP=…: one conf, two ways in.
    const conf = {
      cniVersion: '1.0.0',
      name: 'mvcap',
      type: 'macvlan',
      master: 'eth1',
      capabilities: { ips: true },
      ipam: { type: 'static' },
    };
    const viaCap = await cni({
      command: 'add',
      netName: 'mvcap',
      confs: [conf],
      netns: fx.pod,
      capArgs: { ips: ['192.0.2.40/24'] },
    });
    expect(viaCap.exitCode, viaCap.stderr).toBe(0);
    expect(addressesOf(await snapshot(fx.pod), 'eth0', { family: 4 })).toEqual(['192.0.2.40/24']);

    const pod2 = await fx.newPod();
    const viaArgs = await cni({
      command: 'add',
      netName: 'mvcap',
      confs: [conf],
      netns: pod2,
      // macvlan parses CNI_ARGS too and rejects keys it does not know.
      args: { IgnoreUnknown: '1', IP: '192.0.2.41/24' },
      containerId: 'explicit-id',
    });
    expect(viaArgs.exitCode, viaArgs.stderr).toBe(0);
    expect(addressesOf(await snapshot(pod2), 'eth0', { family: 4 })).toEqual(['192.0.2.41/24']);
    // No DEL: the fixture's teardown must cope with networks still attached.
  });

  it('a failing plugin gives a non-zero exit, the message, and the CNI error object', async () => {
    const conf = { cniVersion: '1.0.0', name: 'bad', type: 'macvlan', master: 'nosuchnic', ipam: { type: 'static' } };
    const add = await cni({ command: 'add', netName: 'bad', confs: [conf], netns: fx.pod });
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr).toMatch(/macvlan.*failed \(add\)/);
    expect(add.json).toEqual(expect.objectContaining({ code: expect.any(Number), msg: expect.any(String) }));
  });

  it('an unknown network name fails without running any plugin', async () => {
    const other = { cniVersion: '1.0.0', name: 'other', type: 'loopback' };
    const add = await cni({ command: 'add', netName: 'absent', confs: [other], netns: fx.pod });
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr).toMatch(/no net configuration with name "absent"/);
  });

  it('runPluginDirect runs a plugin with the given CNI env and stdin', async () => {
    const version = await runPluginDirect(
      join(REFERENCE_CNI_DIR, 'macvlan'),
      { CNI_COMMAND: 'VERSION' },
      { cniVersion: '1.0.0' },
      { netns: fx.node },
    );
    expect(version.exitCode, version.stderr).toBe(0);
    expect(version.json.supportedVersions).toContain('1.0.0');

    const garbage = await runPluginDirect(
      join(REFERENCE_CNI_DIR, 'macvlan'),
      { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_NETNS: fx.pod.path, CNI_IFNAME: 'eth0', CNI_PATH: REFERENCE_CNI_DIR },
      '{not json',
      { netns: fx.node },
    );
    expect(garbage.exitCode).not.toBe(0);
    expect(garbage.json).toEqual(expect.objectContaining({ code: expect.any(Number) }));
  });
});

describe('cleanup', () => {
  const mine = (): string[] => listTestNetns().filter((n) => ownerPid(n) === process.pid);

  it('the fixture tests above left no netns behind', () => {
    // Files run sequentially and tests in order, so every fixture-using test
    // of this file has finished (and its afterEach run) by now.
    expect(mine()).toEqual([]);
  });

  it('TestEnv.destroy deletes the node, switch and every pod', async () => {
    const env = await TestEnv.create();
    await env.newPod();
    expect(env.namespaces).toHaveLength(4);
    for (const ns of env.namespaces) expect(netnsExists(ns)).toBe(true);
    await env.destroy();
    for (const ns of env.namespaces) expect(netnsExists(ns)).toBe(false);
    expect(mine()).toEqual([]);
  });

  it('a node that fails half-way through setup is torn down', async () => {
    await expect(createNode({ nics: [{ name: 'eth1', address: 'not-an-address' }] })).rejects.toThrow();
    expect(mine()).toEqual([]);
  });

  it('sweepLeftovers removes netns of dead test processes only', async () => {
    // A pid that certainly is dead: a child that has already exited.
    const dead = spawnSync('true').pid;
    expect(dead).toBeGreaterThan(0);
    const ours = await createNetns('alive');
    const leftover = `mntest-${dead}-1-node`;
    spawnSync('ip', ['netns', 'add', leftover]);
    try {
      expect(netnsExists(leftover)).toBe(true);
      const { netns } = await sweepLeftovers();
      expect(netns).toContain(leftover);
      expect(netnsExists(leftover)).toBe(false);
      expect(netnsExists(ours)).toBe(true); // our pid is alive: kept
    } finally {
      spawnSync('ip', ['netns', 'del', leftover]);
      spawnSync('ip', ['netns', 'del', ours.name]);
    }
  });
});
