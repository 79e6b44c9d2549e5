/**
 * Network sysctls. /proc/sys/net resolves to the namespace of the thread that opens the file,
 * so inside a container we open and write synchronously while the main thread is in it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { NetlinkError } from './errors.js';
import { inNetns } from './netns.js';

function sysctlPath(key: string): string {
  if (!/^net\.[A-Za-z0-9_.\-/]+$/.test(key) || key.includes('..')) {
    throw new NetlinkError('sysctl', JSON.stringify(key), 'EINVAL', 22);
  }
  return '/proc/sys/' + key.replace(/\./g, '/');
}

function write(key: string, value: string): void {
  try {
    writeFileSync(sysctlPath(key), value);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new NetlinkError('set sysctl', `${key}=${value}`, e.code ?? 'EIO', Math.abs(e.errno ?? 5));
  }
}

function read(key: string): string {
  try {
    return readFileSync(sysctlPath(key), 'utf8').trim();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new NetlinkError('read sysctl', key, e.code ?? 'EIO', Math.abs(e.errno ?? 5));
  }
}

/** Sets sysctls in the namespace `netnsFd` (or the current one when undefined). */
export function setSysctls(netnsFd: number | undefined, values: Record<string, string>): void {
  const apply = () => { for (const [k, v] of Object.entries(values)) write(k, v); };
  if (netnsFd === undefined) apply();
  else inNetns(netnsFd, 'sysctl', apply);
}

export function getSysctl(netnsFd: number | undefined, key: string): string {
  return netnsFd === undefined ? read(key) : inNetns(netnsFd, 'sysctl', () => read(key));
}
