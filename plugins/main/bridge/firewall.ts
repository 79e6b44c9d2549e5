/**
 * The bridge plugin's packet filtering on the node: IP masquerade (iptables, with the
 * reference plugin's chain and comment names, or nftables) and the MAC spoof check (nftables).
 * These are the one place the product runs a tool: netfilter rules have no netlink API here.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { CniError, ErrorCode } from '../../../src/cni/errors.js';
import { parseCidr, networkOf } from '../../../src/netlink/index.js';

export type MasqBackend = 'iptables' | 'nftables';

const SBIN = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

function tool(name: string): string | undefined {
  for (const dir of SBIN) if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  return undefined;
}

/** iptables when installed (the reference's backend, so its rules look the same), else nftables. */
export function defaultMasqBackend(): MasqBackend {
  return tool('iptables') ? 'iptables' : 'nftables';
}

function runTool(name: string, args: string[], input?: string): { ok: boolean; out: string; err: string } {
  const path = tool(name);
  if (!path) throw new CniError(ErrorCode.Internal, `${name} is not installed on the node`);
  const r = spawnSync(path, args, { input, encoding: 'utf8' });
  return { ok: r.status === 0, out: r.stdout ?? '', err: (r.stderr ?? '').trim() || String(r.error ?? '') };
}

function mustRun(name: string, args: string[], input?: string): string {
  const r = runTool(name, args, input);
  if (!r.ok) throw new CniError(ErrorCode.Internal, `${name} ${args.join(' ')}: ${r.err}`);
  return r.out;
}

/** The reference's per-container chain name (utils.FormatChainName) and comment (utils.FormatComment). */
export function masqChainName(network: string, containerId: string): string {
  return `CNI-${createHash('sha512').update(network + containerId).digest('hex')}`.slice(0, 28);
}

function masqComment(network: string, containerId: string): string {
  return `name: ${JSON.stringify(network)} id: ${JSON.stringify(containerId)}`;
}

const NFT_MASQ_TABLE = 'multinic_masq';

/** Masquerades what `addresses` (CIDRs of the pod) send outside their subnets, except multicast. */
export function setupMasq(backend: MasqBackend, network: string, containerId: string, addresses: string[]): void {
  const chain = masqChainName(network, containerId);
  const comment = masqComment(network, containerId);
  if (backend === 'iptables') {
    for (const cidr of addresses) {
      const c = parseCidr(cidr);
      const ipt = c.family === 2 ? 'iptables' : 'ip6tables';
      const multicast = c.family === 2 ? '224.0.0.0/4' : 'ff00::/8';
      const subnet = networkOf(c);
      if (!runTool(ipt, ['-w', '-t', 'nat', '-S', chain]).ok) mustRun(ipt, ['-w', '-t', 'nat', '-N', chain]);
      const rules: string[][] = [
        [chain, '-d', subnet, '-j', 'ACCEPT', '-m', 'comment', '--comment', comment],
        [chain, '!', '-d', multicast, '-j', 'MASQUERADE', '-m', 'comment', '--comment', comment],
        ['POSTROUTING', '-s', c.ip, '-j', chain, '-m', 'comment', '--comment', comment],
      ];
      for (const rule of rules) {
        if (!runTool(ipt, ['-w', '-t', 'nat', '-C', ...rule]).ok) mustRun(ipt, ['-w', '-t', 'nat', '-A', ...rule]);
      }
    }
    return;
  }
  const lines = [
    `table inet ${NFT_MASQ_TABLE} {`,
    '  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }',
    `  chain ${chain} { }`,
    '}',
    `flush chain inet ${NFT_MASQ_TABLE} ${chain}`,
  ];
  for (const cidr of addresses) {
    const c = parseCidr(cidr);
    const fam = c.family === 2 ? 'ip' : 'ip6';
    const multicast = c.family === 2 ? '224.0.0.0/4' : 'ff00::/8';
    lines.push(`add rule inet ${NFT_MASQ_TABLE} ${chain} ${fam} daddr ${networkOf(c)} accept`);
    lines.push(`add rule inet ${NFT_MASQ_TABLE} ${chain} ${fam} daddr != ${multicast} masquerade`);
    lines.push(`add rule inet ${NFT_MASQ_TABLE} postrouting ${fam} saddr ${c.ip} jump ${chain} comment ${nftString(comment)}`);
  }
  mustRun('nft', ['-f', '-'], lines.join('\n') + '\n');
}

/**
 * A quoted nft string: nft has no escape for `"` inside one (the reference's comment quotes the
 * network and the container id, which made `nft -f` reject the whole ruleset), and caps
 * comments at 128 bytes.
 */
function nftString(text: string): string {
  return `"${text.replaceAll('"', '').slice(0, 128)}"`;
}

/** Removes the masquerade of one container; anything already gone is fine. */
export function teardownMasq(backend: MasqBackend, network: string, containerId: string): void {
  const chain = masqChainName(network, containerId);
  if (backend === 'iptables') {
    for (const ipt of ['iptables', 'ip6tables']) {
      if (!tool(ipt)) continue;
      const listed = runTool(ipt, ['-w', '-t', 'nat', '-S', 'POSTROUTING']);
      for (const line of listed.out.split('\n')) {
        if (!line.startsWith('-A POSTROUTING ') || !line.includes(`-j ${chain}`)) continue;
        const args = splitRule(line.slice(3));
        runTool(ipt, ['-w', '-t', 'nat', '-D', ...args]);
      }
      if (runTool(ipt, ['-w', '-t', 'nat', '-S', chain]).ok) {
        runTool(ipt, ['-w', '-t', 'nat', '-F', chain]);
        runTool(ipt, ['-w', '-t', 'nat', '-X', chain]);
      }
    }
    return;
  }
  if (!tool('nft')) return;
  deleteNftRules('inet', NFT_MASQ_TABLE, 'postrouting', (line) => line.includes(`jump ${chain}`));
  runTool('nft', ['delete', 'chain', 'inet', NFT_MASQ_TABLE, chain]);
}

/** Splits an `iptables -S` line into arguments, keeping quoted comments whole. */
function splitRule(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

function deleteNftRules(family: string, table: string, chain: string, match: (line: string) => boolean): void {
  const listed = runTool('nft', ['-a', 'list', 'chain', family, table, chain]);
  if (!listed.ok) return;
  for (const line of listed.out.split('\n')) {
    const handle = /# handle (\d+)\s*$/.exec(line);
    if (handle && match(line)) runTool('nft', ['delete', 'rule', family, table, chain, 'handle', handle[1]!]);
  }
}

const NFT_SPOOF_TABLE = 'multinic_macspoof';

function spoofTag(containerId: string, ifName: string): string {
  return `macspoofchk ${containerId}/${ifName}`;
}

/** Drops frames the pod sends through `hostVeth` with any source MAC but `mac`. */
export function setupMacSpoofCheck(hostVeth: string, mac: string, containerId: string, ifName: string): void {
  const tag = nftString(spoofTag(containerId, ifName));
  mustRun(
    'nft',
    ['-f', '-'],
    [
      `table bridge ${NFT_SPOOF_TABLE} {`,
      '  chain prerouting { type filter hook prerouting priority -300; policy accept; }',
      '}',
      `add rule bridge ${NFT_SPOOF_TABLE} prerouting iifname ${JSON.stringify(hostVeth)} ether saddr != ${mac} drop comment ${tag}`,
      '',
    ].join('\n'),
  );
}

export function teardownMacSpoofCheck(containerId: string, ifName: string): void {
  if (!tool('nft')) return;
  const tag = `comment "${spoofTag(containerId, ifName)}"`;
  deleteNftRules('bridge', NFT_SPOOF_TABLE, 'prerouting', (line) => line.includes(tag));
}
