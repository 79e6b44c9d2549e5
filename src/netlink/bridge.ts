/**
 * Bridge ports: port flags (hairpin, isolation) and VLAN membership, which the link calls of
 * NetlinkHandle do not cover. Each call opens its own rtnetlink socket in the namespace given
 * (the node's when undefined), as `ip link set … type bridge_slave` and `bridge vlan` do.
 */
import { createRtNetlink, type RtNetlinkSocket } from 'netlink/dist/rt/rt.js';
import { MessageType } from 'netlink/dist/rt/gen_structs.js';
import { rawAttr } from './attr.js';
import { toNetlinkError } from './errors.js';
import { inNetns } from './netns.js';

const AF_UNSPEC = 0;
const AF_BRIDGE = 7;
const NLA_F_NESTED = 0x8000;
const IFLA_LINKINFO = 18;
const IFLA_INFO_SLAVE_KIND = 4;
const IFLA_INFO_SLAVE_DATA = 5;
const IFLA_AF_SPEC = 26;
const IFLA_BRPORT_MODE = 4; // hairpin
const IFLA_BRPORT_ISOLATED = 33;
const IFLA_BRIDGE_VLAN_INFO = 2;
const BRIDGE_VLAN_INFO_PVID = 2;
const BRIDGE_VLAN_INFO_UNTAGGED = 4;
const BRIDGE_VLAN_INFO_RANGE_BEGIN = 8;
const BRIDGE_VLAN_INFO_RANGE_END = 16;


function ifinfomsg(family: number, index: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  return b;
}

async function withSocket<T>(netnsFd: number | undefined, fn: (s: RtNetlinkSocket) => Promise<T>): Promise<T> {
  const sock = netnsFd === undefined ? createRtNetlink() : inNetns(netnsFd, 'bridge port', () => createRtNetlink());
  try {
    return await fn(sock);
  } finally {
    sock.socket.socket.close();
  }
}

export interface BridgePortFlags {
  hairpin?: boolean;
  isolated?: boolean;
}

/** Sets port flags of `index`, a port of a bridge (ip link set … type bridge_slave hairpin on isolated on). */
export async function setBridgePortFlags(netnsFd: number | undefined, index: number, flags: BridgePortFlags): Promise<void> {
  const data: Buffer[] = [];
  if (flags.hairpin !== undefined) data.push(rawAttr(IFLA_BRPORT_MODE, Buffer.from([flags.hairpin ? 1 : 0])));
  if (flags.isolated !== undefined) data.push(rawAttr(IFLA_BRPORT_ISOLATED, Buffer.from([flags.isolated ? 1 : 0])));
  if (data.length === 0) return;
  const info = rawAttr(
    IFLA_LINKINFO | NLA_F_NESTED,
    Buffer.concat([rawAttr(IFLA_INFO_SLAVE_KIND, Buffer.from('bridge\0')), rawAttr(IFLA_INFO_SLAVE_DATA | NLA_F_NESTED, Buffer.concat(data))]),
  );
  await withSocket(netnsFd, async (s) => {
    try {
      // RTM_NEWLINK without NLM_F_CREATE changes an existing link; slave data is only read there.
      await s.request(MessageType.NEWLINK, [ifinfomsg(AF_UNSPEC, index), info]);
    } catch (err) {
      throw toNetlinkError(err, 'set bridge port flags', `${JSON.stringify(flags)} on #${index}`);
    }
  });
}

export interface BridgeVlan {
  vid: number;
  /** the last VLAN of a range vid..vidEnd */
  vidEnd?: number;
  pvid?: boolean;
  untagged?: boolean;
}

function vlanInfo(flags: number, vid: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16LE(flags, 0);
  b.writeUInt16LE(vid, 2);
  return rawAttr(IFLA_BRIDGE_VLAN_INFO, b);
}

function vlanSpec(v: BridgeVlan): Buffer {
  const flags = (v.pvid ? BRIDGE_VLAN_INFO_PVID : 0) | (v.untagged ? BRIDGE_VLAN_INFO_UNTAGGED : 0);
  if (v.vidEnd === undefined || v.vidEnd === v.vid) return vlanInfo(flags, v.vid);
  return Buffer.concat([vlanInfo(flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, v.vid), vlanInfo(flags | BRIDGE_VLAN_INFO_RANGE_END, v.vidEnd)]);
}

/** Adds VLANs to bridge port `index` (bridge vlan add dev … vid …). The bridge must filter VLANs. */
export async function addBridgeVlans(netnsFd: number | undefined, index: number, vlans: BridgeVlan[]): Promise<void> {
  await changeVlans(netnsFd, index, vlans, MessageType.SETLINK, 'add bridge vlans');
}

/** Removes VLANs from bridge port `index` (bridge vlan del dev … vid …). */
export async function delBridgeVlans(netnsFd: number | undefined, index: number, vlans: BridgeVlan[]): Promise<void> {
  await changeVlans(netnsFd, index, vlans, MessageType.DELLINK, 'delete bridge vlans');
}

async function changeVlans(netnsFd: number | undefined, index: number, vlans: BridgeVlan[], type: MessageType, what: string): Promise<void> {
  if (vlans.length === 0) return;
  const spec = rawAttr(IFLA_AF_SPEC | NLA_F_NESTED, Buffer.concat(vlans.map(vlanSpec)));
  await withSocket(netnsFd, async (s) => {
    try {
      await s.request(type, [ifinfomsg(AF_BRIDGE, index), spec]);
    } catch (err) {
      throw toNetlinkError(err, what, `${vlans.map((v) => (v.vidEnd ? `${v.vid}-${v.vidEnd}` : v.vid)).join(',')} on #${index}`);
    }
  });
}
