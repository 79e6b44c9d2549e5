/**
 * Typed rtnetlink over the `netlink` package: one socket per network namespace. Changes to
 * addresses, routes and rules issued inside `batch` are encoded into one buffer and handed to
 * the kernel in one sendmsg: it runs them in order, answers only the failures plus an ACK for
 * the last message, and replies are matched to requests by sequence number. N changes cost one
 * system call and one reply instead of N round trips.
 */
import { closeSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { createRtNetlink, type RtNetlinkSocket } from 'netlink/dist/rt/rt.js';
import type * as rt from 'netlink/dist/rt/gen_structs.js';
import { MessageType, RouteProtocol, RouteScope, RouteType, RuleAction } from 'netlink/dist/rt/gen_structs.js';
import { formatAddressMessage, formatRuleMessage, type LinkMessage } from 'netlink/dist/rt/structs.js';
import * as ifla from 'netlink/dist/rt/ifla.js';
import { AttrStream, type NetlinkMessage, type StreamData } from 'netlink/dist/structs.js';
import { Flags, FlagsNew, MessageType as NlMessageType } from 'netlink/dist/constants.js';
import { rawAttr, u32 } from './attr.js';
import { NetlinkError, toNetlinkError } from './errors.js';
import { AF_INET, AF_INET6, bufferToIp, bufferToMac, ipToBuffer, macToBuffer, parseCidr } from './ip.js';
import { inNetns, openNetns } from './netns.js';

const CREATE_EXCL = FlagsNew.CREATE | FlagsNew.EXCL;
const RTM_NEWLINK_TYPE_ROUTE_UNICAST = 1;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RTPROT_STATIC = 4;
const FR_ACT_TO_TBL = 1;

export type MacvlanMode = 'private' | 'vepa' | 'bridge' | 'passthru' | 'source';
export type IpvlanMode = 'l2' | 'l3' | 'l3s';
export type IpvlanFlag = 'bridge' | 'private' | 'vepa';

const MACVLAN_MODES: Record<MacvlanMode, number> = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 };
const IPVLAN_MODES: Record<IpvlanMode, number> = { l2: 0, l3: 1, l3s: 2 };
const IPVLAN_FLAGS: Record<IpvlanFlag, number> = { bridge: 0, private: 1, vepa: 2 };

export type LinkKindSpec =
  | { kind: 'macvlan'; mode: MacvlanMode; bcQueueLen?: number | undefined }
  | { kind: 'ipvlan'; mode: IpvlanMode; flag?: IpvlanFlag }
  | { kind: 'bridge'; vlanFiltering?: boolean }
  | { kind: 'veth'; peerName: string; peerNetnsFd?: number; peerMac?: string }
  | { kind: 'vxlan'; id: number };

export interface LinkSpec {
  name: string;
  kind: LinkKindSpec;
  /** ifindex of the lower device (macvlan/ipvlan master), in the socket's namespace */
  parentIndex?: number;
  mtu?: number;
  mac?: string;
  txQueueLen?: number;
  /** create the link directly in this namespace */
  netnsFd?: number;
  up?: boolean;
}

export interface LinkInfo {
  index: number;
  name: string;
  kind: string | undefined;
  mtu: number;
  mac: string | undefined;
  up: boolean;
  /** ifindex of the bridge/bond this link is enslaved to */
  masterIndex: number | undefined;
  /** ifindex of the lower device (IFLA_LINK); refers to another namespace when linkNetnsId is set */
  parentIndex: number | undefined;
  linkNetnsId: number | undefined;
  txQueueLen: number | undefined;
  promisc: boolean;
  /** macvlan mode name or ipvlan mode name, when the kind has one */
  mode: string | undefined;
}

export interface AddressInfo {
  index: number;
  /** CIDR, e.g. 10.0.0.2/24 */
  address: string;
  family: number;
  scope: number;
  flags: rt.AddressFlags;
}

export interface RouteSpec {
  /** CIDR; 0.0.0.0/0 or ::/0 for a default route */
  dst: string;
  gw?: string;
  oif?: number;
  table?: number;
  scope?: number;
  metric?: number;
  mtu?: number;
  advmss?: number;
  src?: string;
  /** RTN_* type; unicast when unset */
  type?: number;
  protocol?: number;
}

export interface RouteInfo extends RouteSpec {
  family: number;
  table: number;
  scope: number;
  type: number;
  protocol: number;
}

export interface RuleSpec {
  family: number;
  /** CIDR the rule matches as source */
  src?: string;
  dst?: string;
  table: number;
  priority?: number;
  iifname?: string;
  oifname?: string;
}

export interface RuleInfo extends RuleSpec {
  action: number;
}

function materialize(data: StreamData): Buffer {
  const s = new AttrStream();
  s.emit(data);
  return Buffer.concat(s.bufs);
}

function encodeKind(kind: LinkKindSpec): Buffer {
  let data: StreamData | undefined;
  switch (kind.kind) {
    case 'macvlan': {
      const attrs = materialize(ifla.formatMacvlan({ mode: MACVLAN_MODES[kind.mode] }));
      // IFLA_MACVLAN_BC_QUEUE_LEN (7) is newer than the package's attribute table.
      data = kind.bcQueueLen === undefined ? attrs : Buffer.concat([attrs, rawAttr(7, u32(kind.bcQueueLen))]);
      break;
    }
    case 'ipvlan': {
      const flags = Buffer.alloc(2);
      flags.writeUInt16LE(IPVLAN_FLAGS[kind.flag ?? 'bridge']);
      data = ifla.formatIpvlan({ mode: IPVLAN_MODES[kind.mode], flags });
      break;
    }
    case 'bridge':
      data = kind.vlanFiltering ? ifla.formatBridge({ vlanFiltering: Buffer.from([1]) }) : undefined;
      break;
    case 'veth': {
      const peerAttrs: ifla.LinkAttrs = { ifname: kind.peerName };
      if (kind.peerNetnsFd !== undefined) peerAttrs.netNsFd = kind.peerNetnsFd;
      if (kind.peerMac) peerAttrs.address = macToBuffer(kind.peerMac);
      // VETH_INFO_PEER carries a whole ifinfomsg followed by the peer's attributes.
      const peer = Buffer.concat([Buffer.alloc(16), materialize(ifla.formatLinkAttrs(peerAttrs))]);
      data = ifla.formatVethInfo({ peer });
      break;
    }
    case 'vxlan':
      data = ifla.formatVxlan({ id: kind.id });
      break;
  }
  const info: ifla.Info = { kind: kind.kind };
  if (data !== undefined) info.data = materialize(data);
  return materialize(ifla.formatInfo(info));
}

function modeName(kind: string | undefined, data: Buffer | undefined): string | undefined {
  if (!data) return undefined;
  if (kind === 'macvlan' || kind === 'macvtap') {
    const mode = ifla.parseMacvlan(data).mode;
    return (Object.keys(MACVLAN_MODES) as MacvlanMode[]).find((k) => MACVLAN_MODES[k] === mode);
  }
  if (kind === 'ipvlan') {
    const mode = ifla.parseIpvlan(data).mode;
    return (Object.keys(IPVLAN_MODES) as IpvlanMode[]).find((k) => IPVLAN_MODES[k] === mode);
  }
  return undefined;
}

function toLinkInfo(msg: LinkMessage): LinkInfo {
  const a = msg.attrs;
  let kind: string | undefined;
  let mode: string | undefined;
  if (a.linkinfo) {
    const info = ifla.parseInfo(a.linkinfo);
    kind = info.kind;
    mode = modeName(kind, info.data);
  }
  return {
    index: msg.data.index ?? 0,
    name: a.ifname ?? '',
    kind,
    mtu: a.mtu ?? 0,
    mac: a.address && a.address.length === 6 ? bufferToMac(a.address) : undefined,
    up: Boolean(msg.data.flags?.up),
    masterIndex: a.master || undefined,
    parentIndex: a.link && a.link.length >= 4 ? a.link.readUInt32LE(0) || undefined : undefined,
    linkNetnsId: a.linkNetnsid,
    txQueueLen: a.txqlen,
    promisc: Boolean(msg.data.flags?.promisc),
    mode,
  };
}

/** The package decodes enum fields to their names; we keep the kernel's numbers. */
function enumNumber(value: unknown, names: Record<string, string | number>): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') return Number(names[value] ?? 0);
  return 0;
}

function familyBits(family: number): number {
  return family === AF_INET ? 32 : 128;
}

/** One change waiting in a batch: its encoded payload and who to tell how it went. */
interface PendingChange {
  type: number;
  flags: number;
  payload: Buffer;
  operation: string;
  object: string;
  resolve: () => void;
  reject: (err: NetlinkError) => void;
}

/** The NetlinkSocket calls we use beyond its typed surface (they are protected there). */
interface RequestTable {
  generateSeq(): number;
  makeRef(seq: number, cb: (err: Error | null, msg?: NetlinkMessage[]) => void): number;
  dropRef(seq: number): void;
  address(): { port: number };
  socket: { send(msg: Buffer, options: { port: number }, cb: (err?: Error) => void): void; setRecvBufferSize(n: number): void };
  once(event: 'error', cb: (err: Error) => void): unknown;
  off(event: 'error', cb: (err: Error) => void): unknown;
}

/**
 * Bytes of requests per sendmsg: well under the default socket send buffer (212992), which
 * caps one netlink message buffer. About 1,000 route changes.
 */
const BATCH_BYTES = 96 * 1024;
/** Room for the kernel's error replies when many changes of one buffer fail. */
const BATCH_RCVBUF = 4 * 1024 * 1024;
const BATCH_TIMEOUT_MS = 30_000;

function encode(fill: (out: AttrStream) => void): Buffer {
  const out = new AttrStream();
  fill(out);
  return Buffer.concat(out.bufs);
}

function errnoOf(msg: NetlinkMessage): number {
  return msg.data.length >= 4 ? msg.data.readInt32LE(0) : 0;
}

function rejection(errno: number): Error {
  let code = `${-errno}`;
  try {
    code = getSystemErrorName(errno);
  } catch {
    // an errno Node does not name: keep the number
  }
  return new Error(`Request rejected: ${code}`);
}

const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_METRICS = 8;
const RTA_TABLE = 15;
const RTAX_MTU = 2;
const RTAX_ADVMSS = 8;
const RT_SCOPE_NOWHERE = 255;

/** An address into `buf` at `off`; IPv4 without the general parser (routes come by the thousand). */
function writeIp(buf: Buffer, off: number, ip: string, family: number): void {
  if (family === AF_INET) {
    let part = 0;
    let n = 0;
    for (let i = 0; i < ip.length; i++) {
      const c = ip.charCodeAt(i);
      if (c === 46) {
        buf[off + part++] = n;
        n = 0;
      } else n = n * 10 + (c - 48);
    }
    buf[off + part] = n;
    return;
  }
  ipToBuffer(ip).copy(buf, off);
}

/**
 * rtmsg and attributes of a route, written straight into one buffer: the generic attribute
 * streams of the netlink package cost more than the kernel's work once there are thousands.
 * A delete leaves the protocol unset and matches any scope, so it finds a route by its key.
 */
function encodeRoute(r: RouteSpec, forDelete: boolean): Buffer {
  const dst = parseCidr(r.dst);
  const alen = dst.family === AF_INET ? 4 : 16;
  const table = r.table ?? RT_TABLE_MAIN;
  const hasMetrics = Boolean(r.mtu || r.advmss);
  let size = 12;
  if (dst.prefix > 0) size += 4 + alen;
  if (table >= 256) size += 8;
  if (r.gw) size += 4 + alen;
  if (r.oif !== undefined) size += 8;
  if (r.metric !== undefined) size += 8;
  if (r.src) size += 4 + alen;
  if (hasMetrics) size += 4 + (r.mtu ? 8 : 0) + (r.advmss ? 8 : 0);
  const buf = Buffer.alloc(size);
  buf[0] = dst.family;
  buf[1] = dst.prefix;
  buf[4] = table < 256 ? table : 0;
  buf[5] = forDelete ? 0 : (r.protocol ?? RTPROT_BOOT);
  buf[6] = forDelete ? RT_SCOPE_NOWHERE : (r.scope ?? (r.gw ? 0 : 253));
  buf[7] = r.type ?? RTM_NEWLINK_TYPE_ROUTE_UNICAST;
  let off = 12;
  const attr = (type: number, len: number): number => {
    buf.writeUInt16LE(4 + len, off);
    buf.writeUInt16LE(type, off + 2);
    const at = off + 4;
    off += 4 + len;
    return at;
  };
  if (dst.prefix > 0) writeIp(buf, attr(RTA_DST, alen), dst.ip, dst.family);
  if (table >= 256) buf.writeUInt32LE(table, attr(RTA_TABLE, 4));
  if (r.gw) writeIp(buf, attr(RTA_GATEWAY, alen), r.gw, dst.family);
  if (r.oif !== undefined) buf.writeUInt32LE(r.oif, attr(RTA_OIF, 4));
  if (r.metric !== undefined) buf.writeUInt32LE(r.metric >>> 0, attr(RTA_PRIORITY, 4));
  if (r.src) writeIp(buf, attr(RTA_PREFSRC, alen), r.src, dst.family);
  if (hasMetrics) {
    attr(RTA_METRICS, (r.mtu ? 8 : 0) + (r.advmss ? 8 : 0));
    off -= (r.mtu ? 8 : 0) + (r.advmss ? 8 : 0);
    if (r.mtu) buf.writeUInt32LE(r.mtu, attr(RTAX_MTU, 4));
    if (r.advmss) buf.writeUInt32LE(r.advmss, attr(RTAX_ADVMSS, 4));
  }
  return buf;
}

export class NetlinkHandle {
  /** changes collected while a `batch` is being built */
  private collecting: PendingChange[] | undefined;
  private rcvbufRaised = false;

  private constructor(
    private readonly sock: RtNetlinkSocket,
    /** a label for error messages: "host" or the netns path */
    readonly where: string,
  ) {}

  /** A handle in the process's own namespace (the node's). */
  static host(): NetlinkHandle {
    return new NetlinkHandle(createRtNetlink(), 'host');
  }

  /** A handle whose socket lives in the namespace `fd`. */
  static inNetnsFd(fd: number, label: string): NetlinkHandle {
    const sock = inNetns(fd, label, () => createRtNetlink());
    return new NetlinkHandle(sock, label);
  }

  /** A handle in the namespace at `path` (e.g. CNI_NETNS). */
  static inNetnsPath(path: string): NetlinkHandle {
    const fd = openNetns(path);
    try {
      return NetlinkHandle.inNetnsFd(fd, path);
    } finally {
      closeSync(fd);
    }
  }

  close(): void {
    this.sock.socket.socket.close();
  }

  private async run<T>(operation: string, object: string, req: () => Promise<T>): Promise<T> {
    try {
      return await req();
    } catch (err) {
      throw toNetlinkError(err, operation, `${object}${this.where === 'host' ? '' : ` in ${this.where}`}`);
    }
  }

  /**
   * Runs `requests` as one batch and throws the first failure (in issue order) once every
   * request has been answered, so the caller knows the state. Address, route and rule changes
   * that a request issues synchronously go to the kernel together in one sendmsg (see
   * `batchSettled`); anything else (links, lookups) is pipelined on the socket as before.
   */
  async batch(requests: Array<() => Promise<unknown>>): Promise<void> {
    const settled = await this.batchSettled(requests);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Like `batch`, but returns how each request went, in order, so a caller can undo the ones that took. */
  async batchSettled<T>(requests: Array<() => Promise<T>>): Promise<Array<PromiseSettledResult<T>>> {
    if (this.collecting) return Promise.allSettled(requests.map((r) => r()));
    const pending: PendingChange[] = [];
    this.collecting = pending;
    let promises: Array<Promise<T>>;
    try {
      promises = requests.map((r) => {
        try {
          return r();
        } catch (err) {
          return Promise.reject(err);
        }
      });
    } finally {
      this.collecting = undefined;
    }
    // Observed now: a change rejected while later buffers are sent is not an unhandled rejection.
    const outcome = Promise.allSettled(promises);
    for (let start = 0; start < pending.length; ) {
      let end = start;
      let bytes = 0;
      while (end < pending.length && (end === start || bytes + pending[end]!.payload.length + 16 <= BATCH_BYTES)) {
        bytes += pending[end]!.payload.length + 16;
        end++;
      }
      await this.sendChanges(pending.slice(start, end));
      start = end;
    }
    return outcome;
  }

  /** A change to the kernel: alone, or queued into the batch being built. */
  private change(operation: string, object: string, type: number, flags: number, payload: Buffer): Promise<void> {
    const where = `${object}${this.where === 'host' ? '' : ` in ${this.where}`}`;
    return new Promise<void>((resolve, reject) => {
      const change: PendingChange = { type, flags, payload, operation, object: where, resolve, reject };
      if (this.collecting) this.collecting.push(change);
      else this.sendChanges([change]).catch(reject);
    });
  }

  /**
   * Sends `changes` in one buffer with one sendmsg. Only the last asks for an ACK: the kernel
   * runs the messages of a buffer in order and always answers a failure, so when the last
   * one's answer arrives every earlier failure has been reported, and silence means success.
   */
  private async sendChanges(changes: PendingChange[]): Promise<void> {
    if (changes.length === 0) return;
    const nl = this.sock.socket as unknown as RequestTable;
    if (changes.length > 64 && !this.rcvbufRaised) {
      this.rcvbufRaised = true;
      try {
        nl.socket.setRecvBufferSize(BATCH_RCVBUF);
      } catch {
        // the default buffer still holds the replies of a batch that mostly succeeds
      }
    }
    const port = nl.address().port;
    const seqs: number[] = [];
    let size = 0;
    for (const c of changes) size += 16 + ((c.payload.length + 3) & ~3);
    // nlmsghdr + payload for each change, aligned to 4 bytes, written into one buffer.
    const buffer = Buffer.alloc(size);
    let off = 0;
    changes.forEach((c, i) => {
      const seq = nl.generateSeq();
      seqs.push(seq);
      const flags = c.flags | Flags.REQUEST | (i === changes.length - 1 ? Flags.ACK : 0);
      buffer.writeUInt32LE(16 + c.payload.length, off);
      buffer.writeUInt16LE(c.type, off + 4);
      buffer.writeUInt16LE(flags, off + 6);
      buffer.writeUInt32LE(seq, off + 8);
      buffer.writeUInt32LE(port >>> 0, off + 12);
      c.payload.copy(buffer, off + 16);
      off += 16 + ((c.payload.length + 3) & ~3);
    });
    const settled = new Set<number>();
    await new Promise<void>((done) => {
      let finished = false;
      const finish = (err?: Error): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        nl.off('error', finish);
        for (const seq of seqs) nl.dropRef(seq);
        changes.forEach((c, i) => {
          if (settled.has(i)) return;
          if (err) c.reject(toNetlinkError(err, c.operation, c.object));
          else c.resolve();
        });
        done();
      };
      const timer = setTimeout(() => finish(new Error('Request rejected: ETIMEDOUT')), BATCH_TIMEOUT_MS);
      nl.once('error', finish);
      seqs.forEach((seq, i) => {
        nl.makeRef(seq, (err, msgs) => {
          const msg = msgs?.[0];
          const errno = err ? 0 : msg && msg.type === NlMessageType.ERROR ? errnoOf(msg) : 0;
          const c = changes[i]!;
          if (!settled.has(i)) {
            settled.add(i);
            if (err) c.reject(toNetlinkError(err, c.operation, c.object));
            else if (errno < 0) c.reject(toNetlinkError(rejection(errno), c.operation, c.object));
            else c.resolve();
          }
          if (i === seqs.length - 1) finish();
        });
      });
      nl.socket.send(buffer, { port: 0 }, (err) => {
        if (err) finish(err);
      });
    });
  }

  // ---- links ----

  async listLinks(): Promise<LinkInfo[]> {
    const msgs = await this.run('list links', '', () => this.sock.getLinks());
    return msgs.map(toLinkInfo);
  }

  /** The link named `name`, or undefined when there is none. */
  async getLink(name: string): Promise<LinkInfo | undefined> {
    try {
      const [msg] = await this.sock.getLink({}, { ifname: name });
      return msg ? toLinkInfo(msg) : undefined;
    } catch (err) {
      const e = toNetlinkError(err, 'get link', JSON.stringify(name));
      if (e.isNotFound) return undefined;
      throw e;
    }
  }

  async getLinkByIndex(index: number): Promise<LinkInfo | undefined> {
    try {
      const [msg] = await this.sock.getLink({ index });
      return msg ? toLinkInfo(msg) : undefined;
    } catch (err) {
      const e = toNetlinkError(err, 'get link', `#${index}`);
      if (e.isNotFound) return undefined;
      throw e;
    }
  }

  async requireLink(name: string): Promise<LinkInfo> {
    const link = await this.getLink(name);
    if (!link) throw new NetlinkError('find link', JSON.stringify(name) + (this.where === 'host' ? '' : ` in ${this.where}`), 'ENODEV', 19);
    return link;
  }

  async createLink(spec: LinkSpec): Promise<void> {
    const attrs: ifla.LinkAttrs = { ifname: spec.name, linkinfo: encodeKind(spec.kind) };
    if (spec.parentIndex !== undefined) attrs.link = u32(spec.parentIndex);
    if (spec.mtu) attrs.mtu = spec.mtu;
    if (spec.mac) attrs.address = macToBuffer(spec.mac);
    if (spec.txQueueLen !== undefined) attrs.txqlen = spec.txQueueLen;
    if (spec.netnsFd !== undefined) attrs.netNsFd = spec.netnsFd;
    const data: rt.Link = spec.up ? { flags: { up: true }, change: { up: true } } : {};
    await this.run('create link', `${JSON.stringify(spec.name)} (${spec.kind.kind})`, () =>
      this.sock.newLink(data, attrs, { flags: CREATE_EXCL }),
    );
  }

  async setLinkUp(index: number, up = true): Promise<void> {
    await this.run(up ? 'set link up' : 'set link down', `#${index}`, () =>
      this.sock.setLink({ index, flags: up ? { up: true } : {}, change: { up: true } }),
    );
  }

  async setLinkPromisc(index: number, on: boolean): Promise<void> {
    await this.run('set promiscuous mode', `#${index}`, () =>
      this.sock.setLink({ index, flags: on ? { promisc: true } : {}, change: { promisc: true } }),
    );
  }

  async renameLink(index: number, name: string): Promise<void> {
    await this.run('rename link', `#${index} to ${JSON.stringify(name)}`, () => this.sock.setLink({ index }, { ifname: name }));
  }

  async setLinkMtu(index: number, mtu: number): Promise<void> {
    await this.run('set mtu', `${mtu} on #${index}`, () => this.sock.setLink({ index }, { mtu }));
  }

  async setLinkMac(index: number, mac: string): Promise<void> {
    await this.run('set mac', `${mac} on #${index}`, () => this.sock.setLink({ index }, { address: macToBuffer(mac) }));
  }

  async setLinkTxQueueLen(index: number, txqlen: number): Promise<void> {
    await this.run('set txqueuelen', `${txqlen} on #${index}`, () => this.sock.setLink({ index }, { txqlen }));
  }

  /** Enslaves a link to a bridge (masterIndex) or frees it (0). */
  async setLinkMaster(index: number, masterIndex: number): Promise<void> {
    await this.run('set master', `#${masterIndex} of #${index}`, () => this.sock.setLink({ index }, { master: masterIndex }));
  }

  async moveLinkToNetns(index: number, netnsFd: number): Promise<void> {
    await this.run('move link to namespace', `#${index}`, () => this.sock.setLink({ index }, { netNsFd: netnsFd }));
  }

  async deleteLink(index: number): Promise<void> {
    await this.run('delete link', `#${index}`, () => this.sock.delLink({ index }));
  }

  /** Deletes the link named `name`; returns false when it was already gone. */
  async deleteLinkByName(name: string): Promise<boolean> {
    const link = await this.getLink(name);
    if (!link) return false;
    try {
      await this.deleteLink(link.index);
      return true;
    } catch (err) {
      if (err instanceof NetlinkError && err.isNotFound) return false;
      throw err;
    }
  }

  // ---- addresses ----

  async listAddresses(index?: number, family?: number): Promise<AddressInfo[]> {
    const msgs = await this.run('list addresses', index ? `on #${index}` : '', () =>
      this.sock.getAddresses(family ? { family } : undefined),
    );
    const out: AddressInfo[] = [];
    for (const m of msgs) {
      if (index !== undefined && m.data.index !== index) continue;
      const raw = m.attrs.local ?? m.attrs.address;
      if (!raw) continue;
      out.push({
        index: m.data.index ?? 0,
        address: `${bufferToIp(raw)}/${m.data.prefixlen ?? familyBits(m.data.family ?? AF_INET)}`,
        family: m.data.family ?? AF_INET,
        scope: m.data.scope ?? 0,
        flags: m.attrs.flags ?? m.data.flags ?? {},
      });
    }
    return out;
  }

  /** Adds `cidr` to link `index`. IPv6 addresses may skip DAD (`noDad`). */
  async addAddress(index: number, cidr: string, opts: { noDad?: boolean; noPrefixRoute?: boolean } = {}): Promise<void> {
    const c = parseCidr(cidr);
    const ip = ipToBuffer(c.ip);
    const attrs: rt.AddressAttrs = { local: ip, address: ip };
    if (c.family === AF_INET && c.prefix < 31) {
      const bcast = Buffer.from(ip);
      for (let bit = c.prefix; bit < 32; bit++) bcast[bit >> 3]! |= 0x80 >> (bit & 7);
      attrs.broadcast = bcast;
    }
    const flags: rt.AddressFlags = {};
    if (opts.noDad) flags.nodad = true;
    if (opts.noPrefixRoute) flags.noprefixroute = true;
    if (Object.keys(flags).length) attrs.flags = flags;
    const payload = encode((out) => formatAddressMessage({ kind: 'address', data: { family: c.family, prefixlen: c.prefix, index }, attrs }, out));
    await this.change('add address', `${cidr} on #${index}`, MessageType.NEWADDR, CREATE_EXCL, payload);
  }

  async delAddress(index: number, cidr: string): Promise<void> {
    const c = parseCidr(cidr);
    const ip = ipToBuffer(c.ip);
    const payload = encode((out) =>
      formatAddressMessage({ kind: 'address', data: { family: c.family, prefixlen: c.prefix, index }, attrs: { local: ip, address: ip } }, out),
    );
    await this.change('delete address', `${cidr} on #${index}`, MessageType.DELADDR, 0, payload);
  }

  // ---- routes ----

  private describeRoute(r: RouteSpec): string {
    const parts = [r.dst];
    if (r.gw) parts.push(`via ${r.gw}`);
    if (r.oif !== undefined) parts.push(`dev #${r.oif}`);
    if (r.table !== undefined && r.table !== RT_TABLE_MAIN) parts.push(`table ${r.table}`);
    if (r.metric !== undefined) parts.push(`metric ${r.metric}`);
    return parts.join(' ');
  }

  async addRoute(r: RouteSpec): Promise<void> {
    await this.change('add route', this.describeRoute(r), MessageType.NEWROUTE, CREATE_EXCL, encodeRoute(r, false));
  }

  /** Adds or replaces a route (ip route replace). */
  async replaceRoute(r: RouteSpec): Promise<void> {
    const flags = FlagsNew.CREATE | FlagsNew.REPLACE;
    await this.change('replace route', this.describeRoute(r), MessageType.NEWROUTE, flags, encodeRoute(r, false));
  }

  async delRoute(r: RouteSpec): Promise<void> {
    await this.change('delete route', this.describeRoute(r), MessageType.DELROUTE, 0, encodeRoute(r, true));
  }

  /** Routes in `table` (all tables when undefined) of one family, or both. */
  async listRoutes(opts: { family?: number; table?: number } = {}): Promise<RouteInfo[]> {
    const families = opts.family ? [opts.family] : [AF_INET, AF_INET6];
    const out: RouteInfo[] = [];
    for (const family of families) {
      const msgs = await this.run('list routes', '', () => this.sock.getRoutes({ family }));
      for (const m of msgs) {
        const table = m.attrs.table ?? m.data.table ?? 0;
        if (opts.table !== undefined && table !== opts.table) continue;
        const dstLen = m.data.dstLen ?? 0;
        const dst = m.attrs.dst ? `${bufferToIp(m.attrs.dst)}/${dstLen}` : family === AF_INET ? '0.0.0.0/0' : '::/0';
        const info: RouteInfo = {
          family,
          dst,
          table,
          scope: enumNumber(m.data.scope, RouteScope),
          type: enumNumber(m.data.type, RouteType),
          protocol: enumNumber(m.data.protocol, RouteProtocol),
        };
        if (m.attrs.gateway) info.gw = bufferToIp(m.attrs.gateway);
        if (m.attrs.oif !== undefined) info.oif = m.attrs.oif;
        if (m.attrs.priority !== undefined) info.metric = m.attrs.priority;
        if (m.attrs.prefsrc) info.src = bufferToIp(m.attrs.prefsrc);
        if (m.attrs.metrics?.mtu) info.mtu = m.attrs.metrics.mtu.readUInt32LE(0);
        if (m.attrs.metrics?.advmss) info.advmss = m.attrs.metrics.advmss.readUInt32LE(0);
        out.push(info);
      }
    }
    return out;
  }

  // ---- policy rules ----

  private ruleMessage(r: RuleSpec): [rt.Rule, rt.RuleAttrs] {
    const data: rt.Rule = { family: r.family, action: FR_ACT_TO_TBL, table: r.table < 256 ? r.table : 0 };
    const attrs: rt.RuleAttrs = { table: r.table };
    if (r.src) {
      const c = parseCidr(r.src);
      data.srcLen = c.prefix;
      attrs.src = ipToBuffer(c.ip);
    }
    if (r.dst) {
      const c = parseCidr(r.dst);
      data.dstLen = c.prefix;
      attrs.dst = ipToBuffer(c.ip);
    }
    if (r.priority !== undefined) attrs.priority = r.priority;
    if (r.iifname) attrs.iifname = r.iifname;
    if (r.oifname) attrs.oifname = r.oifname;
    return [data, attrs];
  }

  private describeRule(r: RuleSpec): string {
    return `${r.src ? `from ${r.src} ` : ''}${r.dst ? `to ${r.dst} ` : ''}lookup ${r.table}${r.priority !== undefined ? ` priority ${r.priority}` : ''}`;
  }

  async addRule(r: RuleSpec): Promise<void> {
    const [data, attrs] = this.ruleMessage(r);
    const payload = encode((out) => formatRuleMessage({ kind: 'rule', data, attrs }, out));
    await this.change('add rule', this.describeRule(r), MessageType.NEWRULE, CREATE_EXCL, payload);
  }

  async delRule(r: RuleSpec): Promise<void> {
    const [data, attrs] = this.ruleMessage(r);
    const payload = encode((out) => formatRuleMessage({ kind: 'rule', data, attrs }, out));
    await this.change('delete rule', this.describeRule(r), MessageType.DELRULE, 0, payload);
  }

  async listRules(family: number): Promise<RuleInfo[]> {
    const msgs = await this.run('list rules', '', () => this.sock.getRules({ family }));
    return msgs.map((m) => {
      const info: RuleInfo = {
        family,
        table: m.attrs.table ?? m.data.table ?? 0,
        action: enumNumber(m.data.action, RuleAction),
      };
      if (m.attrs.src) info.src = `${bufferToIp(m.attrs.src)}/${m.data.srcLen ?? 0}`;
      if (m.attrs.dst) info.dst = `${bufferToIp(m.attrs.dst)}/${m.data.dstLen ?? 0}`;
      if (m.attrs.priority !== undefined) info.priority = m.attrs.priority;
      if (m.attrs.iifname) info.iifname = m.attrs.iifname;
      if (m.attrs.oifname) info.oifname = m.attrs.oifname;
      return info;
    });
  }
}

export { AF_INET, AF_INET6, RT_TABLE_MAIN, RTPROT_STATIC };
