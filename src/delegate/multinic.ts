/**
 * The meta-plugin (type `multinic`): the pod's primary network plus its secondary attachments,
 * each a chain of plugins, added all-or-nothing and deleted from the cache.
 *
 * Attachments, in order: the primary (`clusterNetwork`, or `delegates[0]`) on CNI_IFNAME; then
 * `defaultNetworks` (not for pods in `systemNamespaces`) or `delegates[1…]`; then, with a
 * kubeconfig, the networks the pod's annotation asks for. Attachment i is named `net<i>`
 * unless it asks for a name. The resolved list, each with its full config, is cached before
 * the first delegate runs; DEL, CHECK and GC read only the cache.
 */
import { accessSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrorCode, asCniError, invalidConfig } from '../cni/errors.js';
import type { CniEnv } from '../cni/env.js';
import { validateIfName } from '../cni/env.js';
import type { Attachment, Plugin, PluginContext } from '../cni/plugin.js';
import type { NetConf, NetConfList, Result } from '../cni/types.js';
import { isRecord } from '../cni/types.js';
import { NETWORKS_ANNOTATION, NETWORK_STATUS_ANNOTATION, type NetworkSelection, networkStatus, parseNetworksAnnotation } from './annotations.js';
import { type AttachmentCache, type CachedAttachment, listCaches, readCache, removeCache, removeCacheFile, writeCache } from './cache.js';
import { type ChainRun, addChain, checkChain, delChain, toConfList } from './chain.js';
import { invoke } from './invoke.js';
import type { KubeClient, KubeObject } from './k8s/client.js';

export const DEFAULT_CNI_DIR = '/var/lib/cni/multinic';
export const DEFAULT_CONF_DIR = '/etc/cni/multus/net.d';
const DEFAULT_API_TIMEOUT_MS = 5000;
const DEFAULT_READINESS_TIMEOUT_MS = 10_000;

export interface MultinicConf {
  name: string;
  cniVersion: string;
  cniDir: string;
  confDir: string;
  binDir: string[];
  /** the delegates, when there is no clusterNetwork: delegates[i] is `net<i>` unless it says `ifname` */
  attachments: Array<{ ifName: string; list: NetConfList }>;
  clusterNetwork: string | undefined;
  defaultNetworks: string[];
  kubeconfig: string | undefined;
  apiTimeoutMs: number;
  namespaceIsolation: boolean;
  globalNamespaces: string[];
  systemNamespaces: string[];
  multusNamespace: string;
  readinessIndicatorFile: string | undefined;
  readinessTimeoutMs: number;
  retryDeleteOnError: boolean;
  runtimeConfig: Record<string, unknown>;
}

function stringList(raw: NetConf, key: string, fallback: string[]): string[] {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  // Multus writes globalNamespaces as a comma-separated string; a list reads better.
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
  throw invalidConfig(key, v, 'must be a list of strings');
}

function optString(raw: NetConf, key: string): string | undefined {
  const v = raw[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw invalidConfig(key, v, 'must be a string');
  return v;
}

function absPath(raw: NetConf, key: string, fallback: string): string {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'string' || !v.startsWith('/')) throw invalidConfig(key, v, 'must be an absolute path');
  return v;
}

function positiveMs(raw: NetConf, key: string, fallback: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw invalidConfig(key, v, 'must be a positive number of milliseconds');
  return v;
}

function bool(raw: NetConf, key: string): boolean {
  const v = raw[key] ?? false;
  if (typeof v !== 'boolean') throw invalidConfig(key, v, 'must be true or false');
  return v;
}

function loadConf(raw: NetConf, env: CniEnv): MultinicConf {
  const clusterNetwork = optString(raw, 'clusterNetwork');
  let attachments: MultinicConf['attachments'] = [];
  if (clusterNetwork === undefined) {
    if (!Array.isArray(raw.delegates) || raw.delegates.length === 0) {
      throw invalidConfig('delegates', raw.delegates, 'must be a non-empty list of confs or conflists (or set clusterNetwork)');
    }
    attachments = raw.delegates.map((d: unknown, i: number) => {
      const where = `delegates[${i}]`;
      let ifName: string | undefined;
      let delegate = d;
      if (isRecord(d) && d.ifname !== undefined) {
        if (typeof d.ifname !== 'string') throw invalidConfig(`${where}.ifname`, d.ifname, 'must be a string');
        try {
          validateIfName(d.ifname, `${where}.ifname`);
        } catch (err) {
          throw new CniError(ErrorCode.InvalidNetworkConfig, asCniError(err).message);
        }
        ifName = d.ifname;
        const { ifname: _ifname, ...rest } = d;
        delegate = rest;
      }
      const list = toConfList(delegate, where);
      if (!list.cniVersion) list.cniVersion = String(raw.cniVersion);
      if (!list.name) list.name = `${raw.name}-${i}`;
      return { ifName: ifName ?? (i === 0 ? env.ifName : `net${i}`), list };
    });
  }
  const defaultNetworks = stringList(raw, 'defaultNetworks', []);
  if (defaultNetworks.length > 0 && clusterNetwork === undefined) {
    throw invalidConfig('defaultNetworks', defaultNetworks, 'needs clusterNetwork (with delegates, list the networks there)');
  }
  const binDir = raw.binDir === undefined ? [] : raw.binDir;
  if (typeof binDir !== 'string' && !(Array.isArray(binDir) && binDir.every((d) => typeof d === 'string'))) {
    throw invalidConfig('binDir', binDir, 'must be a path or a list of paths');
  }
  const multusNamespace = optString(raw, 'multusNamespace') ?? 'kube-system';
  return {
    name: raw.name,
    cniVersion: raw.cniVersion,
    cniDir: absPath(raw, 'cniDir', DEFAULT_CNI_DIR),
    confDir: absPath(raw, 'confDir', DEFAULT_CONF_DIR),
    binDir: typeof binDir === 'string' ? [binDir] : binDir,
    attachments,
    clusterNetwork,
    defaultNetworks,
    kubeconfig: optString(raw, 'kubeconfig'),
    apiTimeoutMs: positiveMs(raw, 'apiTimeoutMs', DEFAULT_API_TIMEOUT_MS),
    namespaceIsolation: bool(raw, 'namespaceIsolation'),
    globalNamespaces: stringList(raw, 'globalNamespaces', []),
    systemNamespaces: stringList(raw, 'systemNamespaces', ['kube-system']),
    multusNamespace,
    readinessIndicatorFile: optString(raw, 'readinessindicatorfile'),
    readinessTimeoutMs: positiveMs(raw, 'readinessTimeoutMs', DEFAULT_READINESS_TIMEOUT_MS),
    retryDeleteOnError: bool(raw, 'retryDeleteOnError'),
    runtimeConfig: isRecord(raw.runtimeConfig) ? raw.runtimeConfig : {},
  };
}

// ---- resolving networks: files in confDir, paths, NetworkAttachmentDefinitions ----

const CONF_FILE = /\.(conf|conflist|json)$/;

function readConfFile(path: string, where: string): NetConfList | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${where}: cannot read ${path}: ${(err as Error).message}`);
  }
  // Never delegate to ourselves: a directory holding our own conf would recurse.
  if (isRecord(parsed) && parsed.type === 'multinic') return undefined;
  return toConfList(parsed, `${where} (${path})`);
}

function confFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => CONF_FILE.test(f)).sort().map((f) => join(dir, f));
  } catch {
    return [];
  }
}

interface Kube {
  client: KubeClient;
  pod: KubeObject | undefined;
}

function withDefaults(list: NetConfList, conf: MultinicConf, name: string): NetConfList {
  if (!list.cniVersion) list.cniVersion = conf.cniVersion;
  if (!list.name) list.name = name;
  return list;
}

async function getNad(kube: Kube, namespace: string, name: string, conf: MultinicConf, where: string): Promise<NetConfList> {
  const nad = await kube.client.getNetworkAttachmentDefinition(namespace, name);
  const text = nad.spec?.config;
  if (typeof text !== 'string' || text.trim() === '') {
    // As Multus: a NAD without config names a conf file in confDir.
    const byName = confFiles(conf.confDir).map((f) => readConfFile(f, where)).find((l) => l?.name === name);
    if (byName) return byName;
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${where}: NetworkAttachmentDefinition ${namespace}/${name} has no spec.config and confDir has no conf named ${JSON.stringify(name)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid spec.config of NetworkAttachmentDefinition ${namespace}/${name}: ${(err as Error).message}`);
  }
  return withDefaults(toConfList(parsed, `spec.config of NetworkAttachmentDefinition ${namespace}/${name}`), conf, name);
}

/** clusterNetwork / defaultNetworks: a path (file or directory), a conf name in confDir, or a NAD. */
async function resolveRef(ref: string, where: string, conf: MultinicConf, kube: Kube | undefined): Promise<{ list: NetConfList; network: string }> {
  if (ref.startsWith('/')) {
    let isDir = false;
    try {
      isDir = statSync(ref).isDirectory();
    } catch (err) {
      throw invalidConfig(where, ref, `cannot read it: ${(err as Error).message}`);
    }
    if (!isDir) {
      const list = readConfFile(ref, where);
      if (!list) throw invalidConfig(where, ref, 'is a multinic conf itself');
      return { list: withDefaults(list, conf, ref), network: list.name };
    }
    for (const file of confFiles(ref)) {
      const list = readConfFile(file, where);
      if (list) return { list: withDefaults(list, conf, file), network: list.name };
    }
    throw invalidConfig(where, ref, 'has no .conf, .conflist or .json file');
  }
  for (const file of confFiles(conf.confDir)) {
    let list: NetConfList | undefined;
    try {
      list = readConfFile(file, where);
    } catch {
      continue; // a broken neighbour does not hide the conf asked for
    }
    if (list?.name === ref) return { list: withDefaults(list, conf, ref), network: ref };
  }
  if (kube) {
    const [ns, name] = ref.includes('/') ? ref.split('/', 2) as [string, string] : [conf.multusNamespace, ref];
    return { list: await getNad(kube, ns, name, conf, where), network: `${ns}/${name}` };
  }
  throw invalidConfig(where, ref, `no conf of that name in confDir ${conf.confDir}, and no kubeconfig to look for a NetworkAttachmentDefinition`);
}

function applySelection(list: NetConfList, sel: NetworkSelection): Pick<CachedAttachment, 'runtimeConfig' | 'cniArgs' | 'defaultRoute'> {
  if (sel.cniArgs) {
    for (const p of list.plugins) {
      const args = isRecord(p.args) ? p.args : {};
      p.args = { ...args, cni: { ...(isRecord(args.cni) ? args.cni : {}), ...sel.cniArgs } };
    }
  }
  const runtimeConfig: Record<string, unknown> = {};
  const cniArgs: Record<string, string> = {};
  if (sel.ips?.length) {
    runtimeConfig.ips = sel.ips;
    cniArgs.IP = sel.ips.join(',');
  }
  if (sel.mac) {
    runtimeConfig.mac = sel.mac;
    cniArgs.MAC = sel.mac;
  }
  if (sel.portMappings) runtimeConfig.portMappings = sel.portMappings;
  if (sel.bandwidth) runtimeConfig.bandwidth = sel.bandwidth;
  const out: Pick<CachedAttachment, 'runtimeConfig' | 'cniArgs' | 'defaultRoute'> = { runtimeConfig };
  if (Object.keys(cniArgs).length > 0) out.cniArgs = { IgnoreUnknown: '1', ...cniArgs };
  if (sel.defaultRoute?.length) out.defaultRoute = sel.defaultRoute;
  return out;
}

function podRef(env: CniEnv): { namespace: string; name: string } | undefined {
  const namespace = env.args.get('K8S_POD_NAMESPACE');
  const name = env.args.get('K8S_POD_NAME');
  return namespace && name ? { namespace, name } : undefined;
}

async function connect(conf: MultinicConf): Promise<KubeClient> {
  // Only here are the Kubernetes modules loaded: a conf without kubeconfig never pays for them.
  const [{ KubeClient }, { loadClientConfig }] = await Promise.all([import('./k8s/client.js'), import('./k8s/kubeconfig.js')]);
  return new KubeClient(loadClientConfig(conf.kubeconfig!), conf.apiTimeoutMs);
}

export interface Plan {
  attachments: CachedAttachment[];
  kube: Kube | undefined;
  pod: AttachmentCache['pod'];
}

/**
 * Every attachment of the pod, fully resolved. `usePod`: read the pod and its networks from the
 * API server (ADD, and DEL without a cache); errors from the API are code 11.
 */
export async function plan(conf: MultinicConf, ctx: PluginContext, usePod: boolean): Promise<Plan> {
  const ref = podRef(ctx.env);
  let kube: Kube | undefined;
  if (conf.kubeconfig && ref && usePod) {
    const client = await connect(conf);
    kube = { client, pod: await client.getPod(ref.namespace, ref.name) };
  }
  const podNamespace = ctx.env.args.get('K8S_POD_NAMESPACE');
  const named: Array<Omit<CachedAttachment, 'ifName'> & { ifName: string | undefined; where: string }> = [];
  if (conf.clusterNetwork !== undefined) {
    const primary = await resolveRef(conf.clusterNetwork, 'clusterNetwork', conf, kube);
    named.push({ ifName: ctx.env.ifName, where: 'clusterNetwork', list: primary.list, network: primary.network });
    if (!(podNamespace && conf.systemNamespaces.includes(podNamespace))) {
      for (const [i, n] of conf.defaultNetworks.entries()) {
        const r = await resolveRef(n, `defaultNetworks[${i}]`, conf, kube);
        named.push({ ifName: undefined, where: `defaultNetworks[${i}]`, list: r.list, network: r.network });
      }
    }
  } else {
    conf.attachments.forEach((d, i) => {
      // Each run gets its own copy: selections and results must not leak into the conf.
      const list = structuredClone(d.list);
      named.push({ ifName: d.ifName, where: `delegates[${i}]`, list, network: list.name });
    });
  }
  const annotation = kube?.pod?.metadata.annotations?.[NETWORKS_ANNOTATION];
  if (kube && annotation && podNamespace) {
    const selections = parseNetworksAnnotation(annotation, podNamespace);
    const where = (i: number, sel: NetworkSelection) => `${NETWORKS_ANNOTATION} entry #${i} ${sel.namespace}/${sel.name}`;
    for (const [i, sel] of selections.entries()) {
      if (conf.namespaceIsolation && sel.namespace !== podNamespace && sel.namespace !== 'default' && !conf.globalNamespaces.includes(sel.namespace)) {
        throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${where(i, sel)}: namespaceIsolation allows a pod in ${podNamespace} only its own namespace, default and globalNamespaces`);
      }
    }
    // Each NAD once, all at the same time: one round trip however many attachments.
    const nads = new Map<string, Promise<NetConfList>>();
    selections.forEach((sel, i) => {
      const key = `${sel.namespace}/${sel.name}`;
      if (!nads.has(key)) nads.set(key, getNad(kube, sel.namespace, sel.name, conf, where(i, sel)));
    });
    await Promise.allSettled(nads.values());
    for (const [i, sel] of selections.entries()) {
      // A copy per attachment: its selection (cni-args) must not reach another one.
      const list = structuredClone(await nads.get(`${sel.namespace}/${sel.name}`)!);
      named.push({ ifName: sel.interface, where: where(i, sel), list, network: `${sel.namespace}/${sel.name}`, ...applySelection(list, sel) });
    }
  }
  const used = new Map<string, string>();
  const attachments = named.map(({ ifName, where, ...a }, i) => {
    const name = ifName ?? `net${i}`;
    const other = used.get(name);
    if (other !== undefined) {
      throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid interface ${JSON.stringify(name)} of ${where}: ${other} uses it already`);
    }
    used.set(name, where);
    return { ...a, ifName: name };
  });
  const pod = kube?.pod && ref ? { namespace: ref.namespace, name: ref.name, ...(kube.pod.metadata.uid ? { uid: kube.pod.metadata.uid } : {}) } : undefined;
  return { attachments, kube, pod };
}

function chainRun(conf: MultinicConf, ctx: PluginContext, a: CachedAttachment, index: number): ChainRun {
  let args = ctx.env.args;
  if (a.cniArgs) {
    args = new Map(args);
    for (const [k, v] of Object.entries(a.cniArgs)) args.set(k, v);
  }
  return {
    list: a.list,
    env: { ...ctx.env, ifName: a.ifName, args, path: [...conf.binDir, ...ctx.env.path] },
    log: ctx.log,
    // The primary gets the runtime's capabilities (portMappings, bandwidth …); the others what
    // the pod asked for them (ips, mac …).
    runtimeConfig: index === 0 ? conf.runtimeConfig : (a.runtimeConfig ?? {}),
  };
}

async function waitReadiness(conf: MultinicConf): Promise<void> {
  const file = conf.readinessIndicatorFile;
  if (!file || existsSync(file)) return;
  const deadline = Date.now() + conf.readinessTimeoutMs;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    if (existsSync(file)) return;
  }
  throw new CniError(ErrorCode.TryAgainLater, `readinessindicatorfile ${file} did not appear within ${conf.readinessTimeoutMs} ms: the cluster network is not ready`);
}

// ---- after every delegate: default route, network-status ----

async function moveDefaultRoutes(netns: string, attachments: CachedAttachment[]): Promise<void> {
  const wanted = attachments.filter((a) => a.defaultRoute?.length);
  if (wanted.length === 0) return;
  const { NetlinkHandle } = await import('../netlink/index.js');
  const pod = NetlinkHandle.inNetnsPath(netns);
  try {
    for (const a of wanted) {
      const link = await pod.requireLink(a.ifName);
      for (const gw of a.defaultRoute!) {
        const v6 = gw.includes(':');
        const family = v6 ? 10 : 2;
        const dst = v6 ? '::/0' : '0.0.0.0/0';
        for (const r of await pod.listRoutes({ family, table: 254 })) {
          if (r.dst === dst) await pod.delRoute({ dst, table: 254, ...(r.gw ? { gw: r.gw } : {}), ...(r.oif !== undefined ? { oif: r.oif } : {}) });
        }
        await pod.addRoute({ dst, gw, oif: link.index });
      }
    }
  } finally {
    pod.close();
  }
}

async function linkDetails(netns: string | undefined, names: string[]): Promise<Map<string, { mac?: string | undefined; mtu?: number | undefined }>> {
  const out = new Map<string, { mac?: string | undefined; mtu?: number | undefined }>();
  if (!netns) return out;
  const { NetlinkHandle } = await import('../netlink/index.js');
  const pod = NetlinkHandle.inNetnsPath(netns);
  try {
    for (const l of await pod.listLinks()) if (names.includes(l.name)) out.set(l.name, { mac: l.mac, mtu: l.mtu });
  } finally {
    pod.close();
  }
  return out;
}

async function writeNetworkStatus(kube: Kube, ctx: PluginContext, attachments: CachedAttachment[]): Promise<void> {
  const routed = attachments.some((a) => a.defaultRoute?.length);
  const links = await linkDetails(ctx.env.netns, attachments.map((a) => a.ifName));
  const status = attachments.map((a, i) =>
    networkStatus(a.network ?? a.list.name, a.ifName, a.result, {
      isDefault: routed ? !!a.defaultRoute?.length : i === 0,
      link: links.get(a.ifName),
    }),
  );
  await kube.client.setPodAnnotation(kube.pod!, NETWORK_STATUS_ANNOTATION, JSON.stringify(status, null, 4));
}

// ---- the commands ----

async function rollback(conf: MultinicConf, ctx: PluginContext, done: CachedAttachment[]): Promise<void> {
  for (let i = done.length - 1; i >= 0; i--) {
    const a = done[i]!;
    await delChain(chainRun(conf, ctx, a, i), a.result).catch((e) =>
      ctx.log.error(`rollback of attachment ${a.list.name} (${a.ifName}) failed: ${asCniError(e).message}`),
    );
  }
}

async function add(conf: MultinicConf, ctx: PluginContext): Promise<Result> {
  const { containerId, netns, ifName } = ctx.env;
  await waitReadiness(conf);
  const p = await plan(conf, ctx, true);
  const cache: AttachmentCache = { containerId, netns, attachments: p.attachments };
  if (p.pod) cache.pod = p.pod;
  writeCache(conf.cniDir, ifName, cache);
  const done: CachedAttachment[] = [];
  try {
    for (let i = 0; i < cache.attachments.length; i++) {
      const a = cache.attachments[i]!;
      ctx.log.info(`attachment ${i} ${a.network ?? a.list.name} as ${a.ifName}: ADD`);
      a.result = await addChain(chainRun(conf, ctx, a, i));
      done.push(a);
    }
    writeCache(conf.cniDir, ifName, cache);
    // All-or-nothing includes what comes after the delegates.
    if (netns) await moveDefaultRoutes(netns, cache.attachments);
    if (p.kube?.pod) await writeNetworkStatus(p.kube, ctx, cache.attachments);
  } catch (err) {
    // The failed chain removed itself; delete the ones before it, newest first.
    ctx.log.warn(`ADD failed (${asCniError(err).message}); deleting ${done.length} attachment(s)`);
    await rollback(conf, ctx, done);
    removeCache(conf.cniDir, containerId, ifName);
    throw err;
  } finally {
    p.kube?.client.close();
  }
  return cache.attachments[0]!.result!;
}

/** The attachments to delete when there is no cache: only from what needs no API, or from the API. */
async function planWithoutCache(conf: MultinicConf, ctx: PluginContext): Promise<CachedAttachment[]> {
  const { containerId, ifName } = ctx.env;
  const ref = podRef(ctx.env);
  if (!conf.kubeconfig || !ref) return (await plan(conf, ctx, false)).attachments;
  try {
    const p = await plan(conf, ctx, true);
    p.kube?.client.close();
    return p.attachments;
  } catch (err) {
    const e = asCniError(err);
    // The pod is gone: its networks cannot be known, but the static ones can.
    if ((err as { status?: unknown }).status === 404 && e.message.startsWith('GET pod ')) return (await plan(conf, ctx, false)).attachments;
    throw new CniError(
      e.code === ErrorCode.InvalidNetworkConfig ? e.code : ErrorCode.TryAgainLater,
      `DEL of container ${containerId} (${ifName}): no attachment cache in ${conf.cniDir} and the pod's networks cannot be read: ${e.message}`,
    );
  }
}

async function del(conf: MultinicConf, ctx: PluginContext): Promise<void> {
  const { containerId, ifName } = ctx.env;
  const cache = readCache(conf.cniDir, containerId, ifName);
  const attachments = cache?.attachments ?? (await planWithoutCache(conf, ctx));
  const failed: Array<{ i: number; err: CniError }> = [];
  for (let i = attachments.length - 1; i >= 0; i--) {
    const a = attachments[i]!;
    try {
      await delChain(chainRun(conf, ctx, a, i), a.result);
    } catch (err) {
      failed.push({ i, err: asCniError(err) });
    }
  }
  let errors = failed;
  if (conf.retryDeleteOnError && failed.length > 0) {
    errors = [];
    for (const f of failed) {
      const a = attachments[f.i]!;
      ctx.log.warn(`DEL of ${a.ifName} failed (${f.err.message}); retrying`);
      try {
        await delChain(chainRun(conf, ctx, a, f.i), a.result);
      } catch (err) {
        errors.push({ i: f.i, err: asCniError(err) });
      }
    }
  }
  if (errors.length > 0) {
    throw new CniError(errors[0]!.err.code, `DEL of container ${containerId}: ${errors.map((e) => `${attachments[e.i]!.ifName}: ${e.err.message}`).join('; ')}`);
  }
  removeCache(conf.cniDir, containerId, ifName);
}

async function check(conf: MultinicConf, ctx: PluginContext): Promise<void> {
  const { containerId, ifName } = ctx.env;
  const cache = readCache(conf.cniDir, containerId, ifName);
  if (!cache) {
    throw new CniError(ErrorCode.UnknownContainer, `no attachments cached for container ${containerId} interface ${ifName}`);
  }
  // Every attachment, not just the primary.
  for (let i = 0; i < cache.attachments.length; i++) {
    const a = cache.attachments[i]!;
    try {
      await checkChain(chainRun(conf, ctx, a, i), a.result);
    } catch (err) {
      const e = asCniError(err);
      throw new CniError(e.code, `attachment ${a.network ?? a.list.name} (${a.ifName}): ${e.message}`, e.details);
    }
  }
}

/**
 * GC: cache entries of attachments the runtime no longer knows are dropped; every delegate
 * (of the conf and of the remaining cache entries) gets GC with the valid attachments, each
 * runtime attachment expanded to the interfaces multinic made for it.
 */
async function gc(conf: MultinicConf, ctx: PluginContext, valid: Attachment[]): Promise<void> {
  const keep = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
  const delegateValid: Attachment[] = [...valid];
  const lists = new Map<string, NetConfList>();
  for (const { file, cache } of listCaches(conf.cniDir)) {
    if (!keep.has(`${cache.containerId}\0${cache.ifName ?? ''}`)) {
      ctx.log.info(`GC: dropping attachment cache ${file}`);
      removeCacheFile(conf.cniDir, file);
      continue;
    }
    for (const a of cache.attachments) {
      if (a.ifName !== cache.ifName) delegateValid.push({ containerID: cache.containerId, ifname: a.ifName });
      lists.set(JSON.stringify(a.list), a.list);
    }
  }
  try {
    for (const a of (await plan(conf, ctx, false)).attachments) lists.set(JSON.stringify(a.list), a.list);
  } catch (err) {
    ctx.log.warn(`GC: the configured networks cannot be resolved (${asCniError(err).message}); collecting the cached ones only`);
  }
  const errors: string[] = [];
  const env = { ...ctx.env, path: [...conf.binDir, ...ctx.env.path] };
  for (const list of lists.values()) {
    if (list.cniVersion !== '1.1.0' || list.disableGC) continue;
    for (const p of list.plugins) {
      const pluginConf: NetConf = { ...p, name: list.name, cniVersion: list.cniVersion, 'cni.dev/valid-attachments': delegateValid };
      try {
        await invoke('GC', pluginConf, env, ctx.log);
      } catch (err) {
        errors.push(`${list.name}/${p.type}: ${asCniError(err).message}`);
      }
    }
  }
  if (errors.length > 0) throw new CniError(ErrorCode.Internal, `GC failed: ${errors.join('; ')}`);
}

/** STATUS: the primary network's, then ours (the readiness file, a writable cache directory). */
async function status(conf: MultinicConf, ctx: PluginContext): Promise<void> {
  if (conf.readinessIndicatorFile && !existsSync(conf.readinessIndicatorFile)) {
    throw new CniError(ErrorCode.PluginNotAvailable, `readinessindicatorfile ${conf.readinessIndicatorFile} does not exist: the cluster network is not ready`);
  }
  try {
    mkdirSync(conf.cniDir, { recursive: true, mode: 0o700 });
    accessSync(conf.cniDir, constants.W_OK);
  } catch (err) {
    throw new CniError(ErrorCode.PluginNotAvailable, `attachment cache ${conf.cniDir} is not writable: ${(err as Error).message}`);
  }
  const primary = (await plan(conf, ctx, false)).attachments[0]!;
  if (primary.list.cniVersion !== '1.1.0') return;
  const env = { ...ctx.env, path: [...conf.binDir, ...ctx.env.path] };
  for (const p of primary.list.plugins) {
    await invoke('STATUS', { ...p, name: primary.list.name, cniVersion: primary.list.cniVersion }, env, ctx.log);
  }
}

const plugin: Plugin<MultinicConf> = { loadConf, add, del, check, gc, status };
export default plugin;
