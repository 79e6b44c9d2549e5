/**
 * `multinic validate <file…>`: checks NetworkAttachmentDefinition manifests, confs and
 * conflists the way ADD would read them — the same normalisation into a conflist
 * (src/delegate/chain.ts) and each built-in plugin's own loadConf, IPAM included — without
 * touching the system. Other Kubernetes manifests get the fields the API server requires of
 * their kind checked, so conf/ can be linted with the same command.
 *
 * Every finding names where it is (document, key path) and the bad value.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { asCniError } from '../cni/errors.js';
import type { CniEnv } from '../cni/env.js';
import type { NetConf, NetConfList } from '../cni/types.js';
import { isRecord } from '../cni/types.js';
import { isSupportedVersion, SUPPORTED_VERSIONS } from '../cni/version.js';
import { pluginConf, toConfList } from '../delegate/chain.js';
import type { MultinicConf } from '../delegate/multinic.js';
import { isBuiltin, loadBuiltin } from '../delegate/registry.js';

export type Level = 'error' | 'warning' | 'info';

export interface Finding {
  level: Level;
  /** where: the document and the key path inside it */
  where: string;
  message: string;
}

const NAD_API_VERSION = 'k8s.cni.cncf.io/v1';
const NAD_KIND = 'NetworkAttachmentDefinition';
/** NAD names appear in pod annotations (ns/name@if): DNS-1123 labels, as Multus requires. */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** The environment ADD would see, for loadConf: nothing in it points at this machine. */
function validationEnv(ifName: string): CniEnv {
  return { command: 'ADD', containerId: 'multinic-validate', netns: '/var/run/netns/multinic-validate', ifName, args: new Map(), path: [] };
}

class Report {
  readonly findings: Finding[] = [];
  add(level: Level, where: string, message: string): void {
    this.findings.push({ level, where, message });
  }
  get errors(): number {
    return this.findings.filter((f) => f.level === 'error').length;
  }
}

// ---------------------------------------------------------------------------------------------
// CNI configs

interface NetConfContext {
  /** a NAD's spec.config: the meta-plugin fills name and cniVersion when they are missing */
  inNad?: { name: string } | undefined;
  ifName?: string;
}

/** A conf or conflist (already parsed), checked as ADD would check it. */
export async function checkNetConf(raw: unknown, where: string, report: Report, ctx: NetConfContext = {}): Promise<void> {
  let list: NetConfList;
  try {
    list = toConfList(structuredClone(raw), where);
  } catch (err) {
    report.add('error', where, asCniError(err).message);
    return;
  }
  const rawVersion = isRecord(raw) ? raw.cniVersion : undefined;
  if (rawVersion === undefined || rawVersion === '') {
    if (ctx.inNad) {
      report.add('info', `${where}.cniVersion`, "not set: the meta-plugin's cniVersion is used");
    } else {
      report.add('warning', `${where}.cniVersion`, 'not set: plugins then read the config as 0.3.0');
    }
    list.cniVersion = ctx.inNad ? '1.0.0' : '0.3.0';
  } else if (!isSupportedVersion(rawVersion)) {
    report.add('error', `${where}.cniVersion`, `invalid cniVersion ${JSON.stringify(rawVersion)}: must be one of ${SUPPORTED_VERSIONS.join(', ')}`);
    return;
  }
  if (!list.name) {
    if (ctx.inNad) {
      list.name = ctx.inNad.name;
    } else {
      report.add('error', `${where}.name`, `invalid name ${JSON.stringify(isRecord(raw) ? raw.name : undefined)}: a network config needs a name`);
      return;
    }
  }
  if (list.plugins.length === 0) {
    report.add('error', `${where}.plugins`, 'invalid plugins []: the list is empty');
    return;
  }
  const isList = isRecord(raw) && Array.isArray(raw.plugins);
  for (let i = 0; i < list.plugins.length; i++) {
    const at = isList ? `${where}.plugins[${i}]` : where;
    await checkPlugin(pluginConf(list, i, {}), at, report, ctx.ifName ?? 'net1');
  }
}

async function checkPlugin(conf: NetConf, at: string, report: Report, ifName: string): Promise<void> {
  const env = validationEnv(ifName);
  if (!isBuiltin(conf.type)) {
    report.add('info', `${at}.type`, `${JSON.stringify(conf.type)} is not built into multinic: it runs by exec from CNI_PATH, its keys are not checked here`);
  } else {
    let parsed: unknown;
    try {
      parsed = (await loadBuiltin(conf.type)).loadConf(structuredClone(conf), env);
    } catch (err) {
      report.add('error', at, asCniError(err).message);
      parsed = undefined;
    }
    if (conf.type === 'multinic') {
      if (parsed === undefined) return;
      const meta = parsed as MultinicConf;
      for (const [k, a] of meta.attachments.entries()) {
        await checkNetConf(a.list, `${at}.delegates[${k}]`, report, { ifName: a.ifName });
      }
      return;
    }
  }
  const ipam = conf.ipam;
  if (isRecord(ipam) && typeof ipam.type === 'string' && ipam.type !== '') {
    if (!isBuiltin(ipam.type)) {
      report.add('info', `${at}.ipam.type`, `${JSON.stringify(ipam.type)} is not built into multinic: it runs by exec from CNI_PATH, its keys are not checked here`);
      return;
    }
    try {
      // An IPAM plugin gets its parent's whole config, as the reference plugins pass it.
      (await loadBuiltin(ipam.type)).loadConf(structuredClone(conf), env);
    } catch (err) {
      report.add('error', at, asCniError(err).message);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

function get(obj: unknown, path: string): unknown {
  let v: unknown = obj;
  for (const key of path.split('.')) {
    if (!isRecord(v)) return undefined;
    v = v[key];
  }
  return v;
}

function requireString(doc: unknown, path: string, where: string, report: Report): string | undefined {
  const v = get(doc, path);
  if (typeof v !== 'string' || v === '') {
    report.add('error', `${where}.${path}`, `invalid ${path} ${JSON.stringify(v)}: required, a non-empty string`);
    return undefined;
  }
  return v;
}

function requireList(doc: unknown, path: string, where: string, report: Report): unknown[] {
  const v = get(doc, path);
  if (!Array.isArray(v) || v.length === 0) {
    report.add('error', `${where}.${path}`, `invalid ${path} ${JSON.stringify(v)}: required, a non-empty list`);
    return [];
  }
  return v;
}

/** What the API server requires of the kinds conf/ holds; any kind gets apiVersion, kind, name. */
function checkKind(doc: Record<string, unknown>, kind: string, where: string, report: Report): void {
  switch (kind) {
    case 'DaemonSet': {
      const sel = get(doc, 'spec.selector.matchLabels');
      if (!isRecord(sel) || Object.keys(sel).length === 0) {
        report.add('error', `${where}.spec.selector`, `invalid spec.selector.matchLabels ${JSON.stringify(sel)}: required`);
      } else {
        const labels = get(doc, 'spec.template.metadata.labels');
        for (const [k, v] of Object.entries(sel)) {
          if (!isRecord(labels) || labels[k] !== v) {
            report.add('error', `${where}.spec.template.metadata.labels`, `invalid labels ${JSON.stringify(labels)}: must include the selector's ${k}=${String(v)}`);
          }
        }
      }
      const podSpec = get(doc, 'spec.template.spec');
      checkPodSpec(podSpec, `${where}.spec.template.spec`, report);
      break;
    }
    case 'ClusterRole':
    case 'Role':
      requireList(doc, 'rules', where, report).forEach((r, i) => {
        const at = `${where}.rules[${i}]`;
        if (!isRecord(r) || !Array.isArray(r.verbs) || r.verbs.length === 0) report.add('error', `${at}.verbs`, `invalid verbs ${JSON.stringify(isRecord(r) ? r.verbs : r)}: required`);
        if (isRecord(r) && !Array.isArray(r.resources) && !Array.isArray(r.nonResourceURLs)) {
          report.add('error', `${at}.resources`, 'invalid resources undefined: resources (with apiGroups) or nonResourceURLs required');
        }
        if (isRecord(r) && Array.isArray(r.resources) && !Array.isArray(r.apiGroups)) report.add('error', `${at}.apiGroups`, 'invalid apiGroups undefined: required with resources');
      });
      break;
    case 'ClusterRoleBinding':
    case 'RoleBinding':
      for (const k of ['apiGroup', 'kind', 'name']) requireString(doc, `roleRef.${k}`, where, report);
      requireList(doc, 'subjects', where, report).forEach((s, i) => {
        requireString(s, 'kind', `${where}.subjects[${i}]`, report);
        requireString(s, 'name', `${where}.subjects[${i}]`, report);
        if (isRecord(s) && s.kind === 'ServiceAccount') requireString(s, 'namespace', `${where}.subjects[${i}]`, report);
      });
      break;
    case 'CustomResourceDefinition': {
      const group = requireString(doc, 'spec.group', where, report);
      const plural = requireString(doc, 'spec.names.plural', where, report);
      requireString(doc, 'spec.names.kind', where, report);
      const scope = get(doc, 'spec.scope');
      if (scope !== 'Namespaced' && scope !== 'Cluster') report.add('error', `${where}.spec.scope`, `invalid spec.scope ${JSON.stringify(scope)}: Namespaced or Cluster`);
      const name = get(doc, 'metadata.name');
      if (group && plural && name !== `${plural}.${group}`) {
        report.add('error', `${where}.metadata.name`, `invalid metadata.name ${JSON.stringify(name)}: must be ${plural}.${group}`);
      }
      const versions = requireList(doc, 'spec.versions', where, report);
      versions.forEach((v, i) => {
        const at = `${where}.spec.versions[${i}]`;
        requireString(v, 'name', at, report);
        for (const k of ['served', 'storage']) {
          if (typeof get(v, k) !== 'boolean') report.add('error', `${at}.${k}`, `invalid ${k} ${JSON.stringify(get(v, k))}: required, true or false`);
        }
        if (!isRecord(get(v, 'schema.openAPIV3Schema'))) report.add('error', `${at}.schema.openAPIV3Schema`, 'invalid schema.openAPIV3Schema: required in apiextensions.k8s.io/v1');
      });
      if (versions.length > 0 && versions.filter((v) => get(v, 'storage') === true).length !== 1) {
        report.add('error', `${where}.spec.versions`, 'exactly one version must have storage: true');
      }
      break;
    }
    default:
      break;
  }
}

function checkPodSpec(spec: unknown, where: string, report: Report): void {
  if (!isRecord(spec)) {
    report.add('error', where, `invalid pod spec ${JSON.stringify(spec)}: required`);
    return;
  }
  const volumes = new Set<string>();
  (Array.isArray(spec.volumes) ? spec.volumes : []).forEach((v, i) => {
    const name = requireString(v, 'name', `${where}.volumes[${i}]`, report);
    if (name) volumes.add(name);
    const path = get(v, 'hostPath.path');
    if (path !== undefined && (typeof path !== 'string' || !path.startsWith('/'))) {
      report.add('error', `${where}.volumes[${i}].hostPath.path`, `invalid hostPath.path ${JSON.stringify(path)}: must be absolute`);
    }
  });
  const containers = requireList(spec, 'containers', where, report);
  const all: Array<readonly [unknown, string]> = containers.map((c, i) => [c, `${where}.containers[${i}]`] as const);
  if (Array.isArray(spec.initContainers)) all.push(...spec.initContainers.map((c, i) => [c, `${where}.initContainers[${i}]`] as const));
  for (const [c, at] of all) {
    requireString(c, 'name', at, report);
    requireString(c, 'image', at, report);
    const mounts = get(c, 'volumeMounts');
    (Array.isArray(mounts) ? mounts : []).forEach((m, j) => {
      const name = requireString(m, 'name', `${at}.volumeMounts[${j}]`, report);
      requireString(m, 'mountPath', `${at}.volumeMounts[${j}]`, report);
      if (name && !volumes.has(name)) report.add('error', `${at}.volumeMounts[${j}].name`, `invalid name ${JSON.stringify(name)}: no volume of that name`);
    });
  }
}

/** One Kubernetes object: the common fields, its kind's, and a NAD's config as ADD reads it. */
export async function checkManifest(doc: unknown, where: string, report: Report): Promise<void> {
  if (!isRecord(doc)) {
    report.add('error', where, `invalid document ${JSON.stringify(doc)}: expected a Kubernetes object`);
    return;
  }
  const apiVersion = requireString(doc, 'apiVersion', where, report);
  const kind = requireString(doc, 'kind', where, report);
  if (kind === 'List') {
    const items = Array.isArray(doc.items) ? doc.items : [];
    for (let i = 0; i < items.length; i++) await checkManifest(items[i], `${where}.items[${i}]`, report);
    return;
  }
  const name = requireString(doc, 'metadata.name', where, report);
  if (name && kind !== NAD_KIND && !DNS1123_SUBDOMAIN.test(name)) {
    report.add('error', `${where}.metadata.name`, `invalid metadata.name ${JSON.stringify(name)}: must be a DNS-1123 subdomain`);
  }
  if (kind === NAD_KIND) {
    if (apiVersion !== NAD_API_VERSION) report.add('error', `${where}.apiVersion`, `invalid apiVersion ${JSON.stringify(apiVersion)}: must be ${NAD_API_VERSION}`);
    if (name && !DNS1123_LABEL.test(name)) report.add('error', `${where}.metadata.name`, `invalid metadata.name ${JSON.stringify(name)}: must be a DNS-1123 label (lower case, digits, '-', at most 63)`);
    if (name && name.length > 63) report.add('error', `${where}.metadata.name`, `invalid metadata.name ${JSON.stringify(name)}: longer than 63 characters`);
    await checkNad(doc, where, name ?? '', report);
    return;
  }
  if (kind) checkKind(doc, kind, where, report);
}

async function checkNad(doc: Record<string, unknown>, where: string, name: string, report: Report): Promise<void> {
  const config = get(doc, 'spec.config');
  if (config === undefined || config === '') {
    report.add('info', `${where}.spec.config`, `not set: the conf named ${JSON.stringify(name)} in the node's conf dir is used`);
    return;
  }
  if (typeof config !== 'string') {
    report.add('error', `${where}.spec.config`, `invalid spec.config ${JSON.stringify(config)}: must be a string holding JSON`);
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(config);
  } catch (err) {
    report.add('error', `${where}.spec.config`, `invalid spec.config: not JSON (${jsonErrorAt(config, err)})`);
    return;
  }
  await checkNetConf(parsed, `${where}.spec.config`, report, { inNad: { name } });
}

/** JSON.parse's message, with the line and column Node 20's V8 leaves out. */
function jsonErrorAt(text: string, err: unknown): string {
  const msg = (err as Error).message;
  const pos = /at position (\d+)/.exec(msg)?.[1];
  if (pos === undefined || /line \d+/.test(msg)) return msg;
  const before = text.slice(0, Number(pos));
  const line = before.split('\n').length;
  const col = Number(pos) - before.lastIndexOf('\n');
  return `${msg} (line ${line} column ${col})`;
}

// ---------------------------------------------------------------------------------------------
// Files

function looksLikeManifest(v: unknown): boolean {
  return isRecord(v) && (typeof v.apiVersion === 'string' || typeof v.kind === 'string');
}

/** Checks a file's text; the format follows the content (JSON conf/conflist, or YAML/JSON manifests). */
export async function validateText(text: string, file: string): Promise<Finding[]> {
  const report = new Report();
  const ext = extname(file).toLowerCase();
  let json: unknown;
  let jsonError: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    jsonError = err;
  }
  if (json !== undefined && !looksLikeManifest(json)) {
    await checkNetConf(json, file, report);
    return report.findings;
  }
  if (json === undefined && ['.conf', '.conflist', '.json'].includes(ext)) {
    report.add('error', file, `not JSON: ${jsonErrorAt(text, jsonError)}`);
    return report.findings;
  }
  // YAML (a superset of JSON), possibly several documents; only the CLI ever loads the parser.
  const YAML = await import('yaml');
  const docs = YAML.parseAllDocuments(text, { prettyErrors: true });
  const all = Array.isArray(docs) ? docs : [docs];
  let n = 0;
  for (const doc of all) {
    const where = all.length > 1 ? `${file}#${n}` : file;
    n++;
    // The first error is the cause; the parser's later ones follow from it.
    const first = doc.errors[0];
    if (first) report.add('error', where, `YAML: ${first.message.split('\n')[0]!.replace(/:$/, '')}${doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more)` : ''}`);
    if (doc.errors.length > 0) continue;
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue; // an empty document (a trailing ---)
    const kind = isRecord(value) ? value.kind : undefined;
    const name = get(value, 'metadata.name');
    const label = typeof kind === 'string' ? `${where} (${kind}${typeof name === 'string' ? ` ${name}` : ''})` : where;
    await checkManifest(value, label, report);
  }
  if (n === 0) report.add('error', file, 'no document in the file');
  return report.findings;
}

export async function validateFile(file: string): Promise<Finding[]> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return [{ level: 'error', where: file, message: `cannot read: ${(err as Error).message}` }];
  }
  return validateText(text, file);
}

export function formatFinding(f: Finding): string {
  return `${f.level}: ${f.where}: ${f.message}`;
}

// ---------------------------------------------------------------------------------------------
// Command line

interface ValidateArgs {
  files: string[];
  quiet: boolean;
}

export const validateCommand: CommandModule<object, ValidateArgs> = {
  command: 'validate <files..>',
  describe: 'check NetworkAttachmentDefinition manifests, confs and conflists as ADD would read them (changes nothing)',
  builder: (y) =>
    y
      .positional('files', { type: 'string', array: true, demandOption: true, describe: 'YAML/JSON manifests, .conf or .conflist files' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'print errors and warnings only' }) as unknown as Argv<ValidateArgs>,
  handler: async (a) => {
    let errors = 0;
    for (const file of a.files) {
      const findings = await validateFile(file);
      const fileErrors = findings.filter((f) => f.level === 'error').length;
      errors += fileErrors;
      for (const f of findings) {
        if (a.quiet && f.level === 'info') continue;
        (f.level === 'error' ? process.stderr : process.stdout).write(formatFinding(f) + '\n');
      }
      if (!a.quiet) process.stdout.write(`${file}: ${fileErrors === 0 ? 'ok' : `${fileErrors} error(s)`}\n`);
    }
    process.exitCode = errors === 0 ? 0 : 1;
  },
};
