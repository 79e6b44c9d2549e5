/**
 * The plugin types built into this binary. Each loads lazily, so an ADD evaluates only the
 * modules of the plugins its chain names.
 */
import type { Plugin } from '../cni/plugin.js';

type Loader = () => Promise<{ default: Plugin<any> }>;

const BUILTINS: Record<string, Loader> = {
  multinic: () => import('./multinic.js'),
  macvlan: () => import('../../plugins/main/macvlan/macvlan.js'),
  ipvlan: () => import('../../plugins/main/ipvlan/ipvlan.js'),
  bridge: () => import('../../plugins/main/bridge/bridge.js'),
  static: () => import('../../plugins/ipam/static/static.js'),
  whereabouts: () => import('../../plugins/ipam/whereabouts/whereabouts.js'),
  sbr: () => import('../../plugins/meta/sbr/sbr.js'),
};

export function isBuiltin(type: string): boolean {
  return Object.hasOwn(BUILTINS, type);
}

export function builtinTypes(): string[] {
  return Object.keys(BUILTINS);
}

export async function loadBuiltin(type: string): Promise<Plugin<any>> {
  const loader = BUILTINS[type];
  if (!loader) throw new Error(`no built-in plugin ${JSON.stringify(type)}`);
  return (await loader()).default;
}
