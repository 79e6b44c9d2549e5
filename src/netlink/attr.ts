/** Raw netlink attribute encoding, for attributes newer than the `netlink` package's tables. */

/** One attribute: length, type, value, padding to 4 bytes. */
export function rawAttr(type: number, value: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16LE(4 + value.length, 0);
  header.writeUInt16LE(type, 2);
  return Buffer.concat([header, value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
}

/** A native-endian u32 attribute value. */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}
