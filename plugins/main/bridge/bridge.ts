/**
 * bridge (type `bridge`): a Linux bridge on the node (`bridge`, default cni0) and a veth pair
 * per pod, the pod end created directly in the pod under a temporary name and renamed, the
 * node end enslaved to the bridge. Keys and defaults are the reference plugin's; ours:
 * `uplink` enslaves a node NIC to the bridge (refused when that NIC carries node addresses),
 * `ipMasqBackend` picks iptables or nftables.
 */
import { randomBytes } from 'node:crypto';
import { CniError, ErrorCode, invalidConfig } from '../../../src/cni/errors.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { Plugin, PluginContext } from '../../../src/cni/plugin.js';
import type { IpConfig, NetConf, Result, Route } from '../../../src/cni/types.js';
import { isRecord } from '../../../src/cni/types.js';
import {
  AF_INET,
  AF_INET6,
  type BridgeVlan,
  type LinkInfo,
  NetlinkHandle,
  addBridgeVlans,
  bufferToIp,
  cidrContains,
  delBridgeVlans,
  ipToBuffer,
  isNotFound,
  macToBuffer,
  parseCidr,
  setBridgePortFlags,
  setSysctls,
} from '../../../src/netlink/index.js';
import { ipsOfInterface } from '../../pkg/iface.js';
import {
  addressLink,
  addressMismatches,
  announceOnChange,
  createInPod,
  linkMismatches,
  openNamespaces,
  podHandleForDel,
  prevInterface,
  requireIfNameFree,
  runIpam,
  throwMismatches,
} from '../../pkg/link.js';
import { optBool, optInt, optString } from '../../pkg/validate.js';
import {
  type MasqBackend,
  defaultMasqBackend,
  setupMacSpoofCheck,
  setupMasq,
  teardownMacSpoofCheck,
  teardownMasq,
} from './firewall.js';

export interface BridgeConf {
  raw: NetConf;
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  ipMasqBackend: MasqBackend;
  mtu: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  vlan: number;
  vlanTrunk: BridgeVlan[];
  preserveDefaultVlan: boolean;
  macspoofchk: boolean;
  enableDad: boolean;
  disableContainerInterface: boolean;
  portIsolation: boolean;
  uplink: string | undefined;
  mac: string | undefined;
  hasIpam: boolean;
}

function parseTrunk(value: unknown): BridgeVlan[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalidConfig('vlanTrunk', value, 'must be a list of {id} or {minID, maxID}');
  // As the reference reads an entry: its range (minID and maxID together), then its id.
  return value.flatMap((t, i) => {
    const where = `vlanTrunk[${i}]`;
    if (!isRecord(t)) throw invalidConfig(where, t, 'must be {id} or {minID, maxID}');
    const id = optInt(t, 'id', 1, 4094, `${where}.id`);
    const min = optInt(t, 'minID', 1, 4094, `${where}.minID`);
    const max = optInt(t, 'maxID', 1, 4094, `${where}.maxID`);
    const out: BridgeVlan[] = [];
    if (min !== undefined || max !== undefined) {
      if (min === undefined || max === undefined || min > max) throw invalidConfig(where, t, 'needs minID ≤ maxID, both set');
      out.push({ vid: min, vidEnd: max });
    }
    if (id !== undefined) out.push({ vid: id });
    if (!out.length) throw invalidConfig(where, t, 'needs id, or minID ≤ maxID');
    return out;
  });
}

function loadConf(raw: NetConf, env: CniEnv): BridgeConf {
  const isDefaultGateway = optBool(raw, 'isDefaultGateway') ?? false;
  const hairpinMode = optBool(raw, 'hairpinMode') ?? false;
  const promiscMode = optBool(raw, 'promiscMode') ?? false;
  if (hairpinMode && promiscMode) throw invalidConfig('promiscMode', true, 'cannot be set together with hairpinMode');
  const vlan = optInt(raw, 'vlan', 0, 4094) ?? 0;
  const vlanTrunk = parseTrunk(raw.vlanTrunk);
  if (vlan && vlanTrunk.length) throw invalidConfig('vlanTrunk', raw.vlanTrunk, 'cannot be set together with vlan');
  const backend = optString(raw, 'ipMasqBackend');
  if (backend !== undefined && backend !== 'iptables' && backend !== 'nftables') {
    throw invalidConfig('ipMasqBackend', backend, 'must be iptables or nftables');
  }
  const mtu = optInt(raw, 'mtu', 0, 65535) ?? 0;
  if (mtu !== 0 && mtu < 68) throw invalidConfig('mtu', mtu, 'must be at least 68');

  // MAC: runtimeConfig.mac, then args.cni.mac, then CNI_ARGS MAC, as the reference reads them.
  let mac: string | undefined = env.args.get('MAC') || undefined;
  const argsCni = isRecord(raw.args) && isRecord(raw.args.cni) ? raw.args.cni : {};
  if (typeof argsCni.mac === 'string' && argsCni.mac) mac = argsCni.mac;
  const rc = isRecord(raw.runtimeConfig) ? raw.runtimeConfig : {};
  if (typeof rc.mac === 'string' && rc.mac) mac = rc.mac;
  if (mac !== undefined) {
    try {
      if (macToBuffer(mac)[0]! & 1) throw new Error('multicast');
    } catch {
      throw invalidConfig('mac', mac, 'must be a unicast MAC address such as 02:00:00:00:00:01');
    }
  }
  if (raw.ipam !== undefined && !isRecord(raw.ipam)) throw invalidConfig('ipam', raw.ipam, 'must be an object');
  const ipamType = isRecord(raw.ipam) ? raw.ipam.type : undefined;
  if (ipamType !== undefined && (typeof ipamType !== 'string' || ipamType === '')) throw invalidConfig('ipam.type', ipamType, 'must be a plugin name');
  const disableContainerInterface = optBool(raw, 'disableContainerInterface') ?? false;
  // As the reference since it knows the key: the IPs would be promised in the result and never configured.
  if (disableContainerInterface && typeof ipamType === 'string') {
    throw invalidConfig('disableContainerInterface', true, `cannot be set together with ipam (type ${ipamType}): the pod end stays unconfigured`);
  }
  const bridge = optString(raw, 'bridge') || 'cni0';
  if (Buffer.byteLength(bridge) > 15 || /[/:\s]/.test(bridge)) throw invalidConfig('bridge', bridge, 'is not a valid interface name');
  const uplink = optString(raw, 'uplink') || undefined;
  return {
    raw,
    bridge,
    isGateway: (optBool(raw, 'isGateway') ?? false) || isDefaultGateway,
    isDefaultGateway,
    forceAddress: optBool(raw, 'forceAddress') ?? false,
    ipMasq: optBool(raw, 'ipMasq') ?? false,
    ipMasqBackend: (backend as MasqBackend | undefined) ?? defaultMasqBackend(),
    mtu,
    hairpinMode,
    promiscMode,
    vlan,
    vlanTrunk,
    preserveDefaultVlan: optBool(raw, 'preserveDefaultVlan') ?? true,
    macspoofchk: optBool(raw, 'macspoofchk') ?? false,
    enableDad: optBool(raw, 'enabledad') ?? false,
    disableContainerInterface,
    portIsolation: optBool(raw, 'portIsolation') ?? false,
    uplink,
    mac,
    hasIpam: typeof ipamType === 'string',
  };
}

/** The bridge, created (and registered for undo) when missing; code 7 when the name is another kind. */
async function ensureBridge(conf: BridgeConf, host: NetlinkHandle, ctx: PluginContext): Promise<LinkInfo> {
  const filtering = conf.vlan !== 0 || conf.vlanTrunk.length > 0;
  let br = await host.getLink(conf.bridge);
  if (!br) {
    try {
      await host.createLink({ name: conf.bridge, kind: { kind: 'bridge', vlanFiltering: filtering }, mtu: conf.mtu || undefined });
      br = await host.requireLink(conf.bridge);
      const index = br.index;
      ctx.rollback.push(`delete bridge ${conf.bridge}`, () => deleteHostLink(index));
    } catch (err) {
      // Another ADD made it first.
      br = await host.getLink(conf.bridge);
      if (!br) throw err;
    }
  }
  if (br.kind !== 'bridge') throw invalidConfig('bridge', conf.bridge, `already exists and is a ${br.kind ?? 'plain'} interface, not a bridge`);
  if (conf.promiscMode && !br.promisc) await host.setLinkPromisc(br.index, true);
  if (!br.up) await host.setLinkUp(br.index);
  return br;
}

async function deleteHostLink(index: number): Promise<void> {
  const host = NetlinkHandle.host();
  try {
    await host.deleteLink(index);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  } finally {
    host.close();
  }
}

/** Our option: a node NIC as the bridge's uplink. Never one that carries the node's own addresses. */
async function enslaveUplink(conf: BridgeConf, host: NetlinkHandle, br: LinkInfo, ctx: PluginContext): Promise<void> {
  const name = conf.uplink!;
  const nic = await host.getLink(name);
  if (!nic) throw invalidConfig('uplink', name, 'no such interface on the node');
  if (nic.masterIndex === br.index) return;
  if (nic.masterIndex !== undefined) throw invalidConfig('uplink', name, `is already enslaved to interface #${nic.masterIndex}`);
  const own = (await host.listAddresses(nic.index)).filter((a) => a.family === AF_INET || a.scope === 0);
  if (own.length) {
    throw invalidConfig(
      'uplink',
      name,
      `carries the node's addresses ${own.map((a) => a.address).join(', ')}; enslaving it would cut the node off (move them to ${conf.bridge} first)`,
    );
  }
  await host.setLinkMaster(nic.index, br.index);
  ctx.rollback.push(`free uplink ${name}`, async () => {
    const h = NetlinkHandle.host();
    try {
      await h.setLinkMaster(nic.index, 0);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    } finally {
      h.close();
    }
  });
  if (!nic.up) await host.setLinkUp(nic.index);
}

/** The gateway of each IP: its own, or the first address of its subnet (as the reference). */
function gatewayOf(ip: IpConfig): string {
  if (ip.gateway) return ip.gateway;
  const c = parseCidr(ip.address);
  const buf = ipToBuffer(c.ip);
  for (let bit = c.prefix; bit < buf.length * 8; bit++) buf[bit >> 3]! &= ~(0x80 >> (bit & 7));
  buf[buf.length - 1]! += 1;
  return bufferToIp(buf);
}

/**
 * With `vlan` and a gateway, the gateway lives on `<bridge>.<vlan>`, as in the reference: one end
 * of a veth pair on the node whose other end is an untagged port of that VLAN (the bridge
 * device itself is not a member of the VLAN). Made once, kept for the next pods.
 */
async function ensureVlanGateway(conf: BridgeConf, host: NetlinkHandle, br: LinkInfo, ctx: PluginContext): Promise<LinkInfo> {
  const name = `${conf.bridge}.${conf.vlan}`;
  const existing = await host.getLink(name);
  if (existing) return existing;
  if (Buffer.byteLength(name) > 15) throw invalidConfig('vlan', conf.vlan, `with isGateway needs the interface ${name}, a name longer than 15 bytes`);
  const peerName = hostVethName();
  await host.createLink({ name, kind: { kind: 'veth', peerName }, mtu: br.mtu || undefined, txQueueLen: 0 });
  const gw = await host.requireLink(name);
  const index = gw.index;
  ctx.rollback.push(`delete vlan gateway ${name}`, () => deleteHostLink(index));
  const peer = await host.requireLink(peerName);
  await host.setLinkTxQueueLen(peer.index, 0);
  await host.setLinkMaster(peer.index, br.index);
  if (!conf.preserveDefaultVlan) await delBridgeVlans(undefined, peer.index, [{ vid: 1 }]);
  await addBridgeVlans(undefined, peer.index, [{ vid: conf.vlan, pvid: true, untagged: true }]);
  await host.setLinkUp(peer.index);
  await host.setLinkUp(gw.index);
  return host.requireLink(name);
}

/** Puts gateway `gw` (with the prefix of its subnet) on `target` (the bridge or its VLAN gateway); forceAddress replaces a different one. */
async function ensureGatewayAddress(conf: BridgeConf, host: NetlinkHandle, br: LinkInfo, gwCidr: string, ctx: PluginContext): Promise<void> {
  const want = parseCidr(gwCidr);
  const present = await host.listAddresses(br.index, want.family);
  for (const a of present) {
    const c = parseCidr(a.address);
    if (c.ip === want.ip && c.prefix === want.prefix) return;
    if (want.family === AF_INET6 && c.ip.startsWith('fe80')) continue;
    if (cidrContains(c, want.ip) || cidrContains(want, c.ip)) {
      if (!conf.forceAddress) {
        throw new CniError(ErrorCode.Internal, `${br.name} already has address ${a.address}, different from gateway ${gwCidr} (set forceAddress to replace it)`);
      }
      await host.delAddress(br.index, a.address);
    }
  }
  if (want.family === AF_INET6) setSysctls(undefined, { [`net.ipv6.conf.${br.name}.disable_ipv6`]: '0' });
  await host.addAddress(br.index, gwCidr);
  const index = br.index;
  ctx.rollback.push(`delete gateway ${gwCidr} from ${br.name}`, async () => {
    const h = NetlinkHandle.host();
    try {
      await h.delAddress(index, gwCidr);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    } finally {
      h.close();
    }
  });
}

function hostVethName(): string {
  return `veth${randomBytes(4).toString('hex')}`;
}

async function add(conf: BridgeConf, ctx: PluginContext): Promise<Result> {
  const { ifName, netns, containerId } = ctx.env;
  const ns = openNamespaces(netns!, false);
  const host = ns.masterNs;
  try {
    await requireIfNameFree(ns.pod, ifName);
    const br = await ensureBridge(conf, host, ctx);
    if (conf.uplink) await enslaveUplink(conf, host, br, ctx);

    const peerName = hostVethName();
    const link = await createInPod(
      ctx,
      ns,
      host,
      { kind: { kind: 'veth', peerName }, mtu: conf.mtu || undefined, mac: conf.mac, txQueueLen: 0, netnsFd: ns.podFd },
      ifName,
    );
    const peer = await host.requireLink(peerName);
    if (conf.mtu && peer.mtu !== conf.mtu) await host.setLinkMtu(peer.index, conf.mtu);
    // As the reference, whose peer LinkAttrs carry TxQLen 0.
    await host.setLinkTxQueueLen(peer.index, 0);
    await host.setLinkMaster(peer.index, br.index);
    if (conf.hairpinMode || conf.portIsolation) {
      await setBridgePortFlags(undefined, peer.index, {
        ...(conf.hairpinMode ? { hairpin: true } : {}),
        ...(conf.portIsolation ? { isolated: true } : {}),
      });
    }
    if (conf.vlan) {
      if (!conf.preserveDefaultVlan) await delBridgeVlans(undefined, peer.index, [{ vid: 1 }]);
      await addBridgeVlans(undefined, peer.index, [{ vid: conf.vlan, pvid: true, untagged: true }]);
    } else if (conf.vlanTrunk.length) {
      if (!conf.preserveDefaultVlan) await delBridgeVlans(undefined, peer.index, [{ vid: 1 }]);
      await addBridgeVlans(undefined, peer.index, conf.vlanTrunk);
    }
    await host.setLinkUp(peer.index);
    if (!conf.disableContainerInterface) announceOnChange(ns.podFd, ifName);

    const result: Result = { cniVersion: conf.raw.cniVersion };
    let vlanGateway: string | undefined;
    if (conf.hasIpam) {
      const ipam = await runIpam(conf.raw, ctx);
      result.ips = ipam.ips!.map((ip) => ({ ...ip, interface: 2 }));
      const routes: Route[] = [...(ipam.routes ?? [])];
      if (ipam.dns) result.dns = ipam.dns;
      if (conf.isGateway) {
        for (const ip of result.ips) ip.gateway = gatewayOf(ip);
        if (conf.isDefaultGateway) {
          for (const family of [AF_INET, AF_INET6]) {
            const ip = result.ips.find((i) => parseCidr(i.address).family === family);
            if (!ip) continue;
            const def = family === AF_INET ? '0.0.0.0/0' : '::/0';
            if (routes.some((r) => r.dst === def)) {
              throw invalidConfig('isDefaultGateway', true, `is ineffective because IPAM sets the default route ${def}`);
            }
            routes.push({ dst: def, gw: ip.gateway! });
          }
        }
      }
      if (routes.length) result.routes = routes;
      if (!conf.disableContainerInterface) {
        if (!conf.enableDad) {
          try {
            setSysctls(ns.podFd, { [`net.ipv6.conf.${ifName}.accept_dad`]: '0' });
          } catch {
            // no IPv6 in this kernel
          }
        }
        await addressLink(ns, link, result.ips, result.routes ?? []);
      }
      if (conf.isGateway) {
        const gwLink = conf.vlan ? await ensureVlanGateway(conf, host, br, ctx) : br;
        if (gwLink !== br) vlanGateway = gwLink.name;
        for (const ip of result.ips) {
          const c = parseCidr(ip.address);
          await ensureGatewayAddress(conf, host, gwLink, `${ip.gateway}/${c.prefix}`, ctx);
        }
        const v4 = result.ips.some((ip) => parseCidr(ip.address).family === AF_INET);
        const v6 = result.ips.some((ip) => parseCidr(ip.address).family === AF_INET6);
        if (v4) setSysctls(undefined, { 'net.ipv4.ip_forward': '1' });
        if (v6) setSysctls(undefined, { 'net.ipv6.conf.all.forwarding': '1' });
      }
      if (conf.ipMasq) {
        ctx.rollback.push('remove masquerade', () => teardownMasq(conf.ipMasqBackend, conf.raw.name, containerId));
        setupMasq(conf.ipMasqBackend, conf.raw.name, containerId, result.ips.map((ip) => ip.address));
      }
    } else if (!conf.disableContainerInterface) {
      await ns.pod.setLinkUp(link.index);
    }

    const finalLink = await ns.pod.requireLink(ifName);
    if (conf.macspoofchk) {
      ctx.rollback.push('remove MAC spoof check', () => teardownMacSpoofCheck(containerId, ifName));
      setupMacSpoofCheck(peerName, finalLink.mac!, containerId, ifName);
    }
    const brNow = await host.requireLink(conf.bridge);
    const peerNow = await host.requireLink(peerName);
    result.interfaces = [
      { name: conf.bridge, mac: brNow.mac },
      { name: peerName, mac: peerNow.mac },
      { name: ifName, mac: finalLink.mac, mtu: finalLink.mtu, sandbox: netns },
    ];
    if (brNow.mtu) result.interfaces[0]!.mtu = brNow.mtu;
    if (peerNow.mtu) result.interfaces[1]!.mtu = peerNow.mtu;
    if (vlanGateway) {
      const gw = await host.requireLink(vlanGateway);
      result.interfaces.push({ name: gw.name, mac: gw.mac, ...(gw.mtu ? { mtu: gw.mtu } : {}) });
    }
    return result;
  } finally {
    ns.close();
  }
}

async function del(conf: BridgeConf, ctx: PluginContext): Promise<void> {
  const { containerId, ifName } = ctx.env;
  if (conf.hasIpam) await ctx.ipam.del(conf.raw);
  const pod = podHandleForDel(ctx.env.netns);
  if (pod) {
    try {
      // The node end of the pair goes with it.
      await pod.deleteLinkByName(ifName);
    } finally {
      pod.close();
    }
  }
  // Rules are keyed by network and container, not by address: they go even when the pod is gone.
  if (conf.ipMasq) teardownMasq(conf.ipMasqBackend, conf.raw.name, containerId);
  if (conf.macspoofchk) teardownMacSpoofCheck(containerId, ifName);
}

async function check(conf: BridgeConf, ctx: PluginContext): Promise<void> {
  const { prev, index } = prevInterface(ctx);
  const { netns, ifName } = ctx.env;
  const ns = openNamespaces(netns!, false);
  try {
    const mismatches: string[] = [];
    const br = await ns.masterNs.getLink(conf.bridge);
    if (!br) mismatches.push(`bridge ${conf.bridge} is missing`);
    else if (br.kind !== 'bridge') mismatches.push(`${conf.bridge} is a ${br.kind ?? 'plain'} interface, not a bridge`);
    const link = await ns.pod.getLink(ifName);
    if (!link) throw new CniError(ErrorCode.Internal, `interface ${ifName} is missing from ${netns}`);
    const want = prev.interfaces![index]!;
    mismatches.push(...linkMismatches(link, { kind: 'veth', mac: want.mac, mtu: conf.mtu }));
    // The node end: named in prevResult, enslaved to the bridge.
    const peerItf = (prev.interfaces ?? []).find((i, k) => k !== index && !i.sandbox && i.name !== conf.bridge);
    if (peerItf) {
      const peer = await ns.masterNs.getLink(peerItf.name);
      if (!peer) mismatches.push(`node end ${peerItf.name} is missing`);
      else if (br && peer.masterIndex !== br.index) mismatches.push(`node end ${peerItf.name} is not a port of ${conf.bridge}`);
    }
    if (!conf.disableContainerInterface) {
      mismatches.push(...(await addressMismatches(ns.pod, link, ipsOfInterface(prev, index), prev.routes ?? [])));
    }
    throwMismatches(ifName, mismatches);
    if (conf.hasIpam) await ctx.ipam.check(conf.raw);
  } finally {
    ns.close();
  }
}

const plugin: Plugin<BridgeConf> = { loadConf, add, del, check };
export default plugin;
