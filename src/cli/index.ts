/**
 * The command-line face of the binary (no CNI_COMMAND): operators' commands. Loaded only off
 * the CNI path: yargs costs tens of milliseconds at load.
 */
import yargs from 'yargs';
import { SUPPORTED_VERSIONS } from '../cni/version.js';
import { builtinTypes } from '../delegate/registry.js';
import { installCommand, uninstallCommand } from './install.js';
import { poolCommand } from './pool.js';
import { validateCommand } from './validate.js';

export const VERSION = '0.1.0';

export async function runCli(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('multinic')
    .usage('$0 <command>\n\nA CNI meta-plugin and IPAM for nodes with more than one NIC.\nRun by the container runtime with CNI_COMMAND set; without it, these commands:')
    .command(
      'version',
      'print the version, the CNI spec versions and the built-in plugin types',
      () => {},
      () => {
        process.stdout.write(
          `multinic ${VERSION}\nCNI spec versions: ${SUPPORTED_VERSIONS.join(', ')}\nbuilt-in plugins: ${builtinTypes().join(', ')}\n`,
        );
      },
    )
    .command(installCommand)
    .command(uninstallCommand)
    .command(validateCommand)
    .command(poolCommand)
    .demandCommand(1, 'name a command (see --help)')
    .strict()
    .help()
    .version(VERSION)
    .parseAsync();
}
