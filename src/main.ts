/**
 * Entry point of the one binary. With CNI_COMMAND set it is a CNI plugin (src/cni); without,
 * a command-line tool (src/cli), whose modules the CNI path never loads.
 */
import { runCniMain } from './delegate/entry.js';

if (process.env.CNI_COMMAND !== undefined) {
  void runCniMain();
} else {
  void import('./cli/index.js').then((cli) => cli.runCli(process.argv.slice(2)));
}
