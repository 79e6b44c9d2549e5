/**
 * The bundle's replacement for ./koffi.ts (scripts/build-bundle.mjs swaps it in).
 *
 * A literal require() is what lets esbuild bundle koffi's JavaScript; placed inside the
 * function, esbuild's __commonJS wrapper keeps koffi (and its addon) unevaluated until the
 * first call. koffi's own `require('@koromix/koffi-linux-x64')` is redirected by the build to
 * ./embedded.ts, which dlopens the addon embedded in the binary.
 */
import type { Koffi } from './koffi.js';

export function loadKoffi(): Koffi {
  return require('koffi') as Koffi;
}
