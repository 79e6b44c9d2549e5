/**
 * globalSetup of the integration project: runs once, in vitest's main
 * process, before any integration file. Fails fast with a clear message when
 * the run cannot work, and removes what crashed earlier runs left behind.
 */
import { existsSync } from 'node:fs';
import { sweepLeftovers } from './netns.js';
import { CNITOOL } from './paths.js';

export default async function setup(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error('integration tests create network namespaces: run them as root');
  }
  if (!existsSync(CNITOOL)) {
    throw new Error(`${CNITOOL} missing: run \`make test-deps\` (or \`make test-integration\`)`);
  }
  const { netns, dirs } = await sweepLeftovers();
  if (netns.length + dirs.length > 0) {
    console.warn(`harness: swept ${netns.length} leftover netns and ${dirs.length} temp dirs of dead test processes`);
  }
}
