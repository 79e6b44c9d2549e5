/**
 * Where koffi comes from when running from node_modules (vitest, tsx, `node` on sources).
 *
 * koffi is loaded on first use rather than imported at the top of ./index.ts: importing it
 * dlopens a 1 MB addon, which every CNI invocation would pay for even when it never calls
 * setns (VERSION, most of DEL), and an eagerly loaded addon could not live in a V8 startup
 * snapshot. The single-binary build swaps this file for ./koffi.bundled.ts
 * (see scripts/build-bundle.mjs).
 */
import { createRequire } from 'node:module';

export type Koffi = typeof import('koffi');

export function loadKoffi(): Koffi {
  return createRequire(import.meta.url)('koffi') as Koffi;
}
