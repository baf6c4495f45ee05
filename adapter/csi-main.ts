// Entry point of the CSI plugin (Swarm cluster volumes): configuration from the environment, start, graceful stop.
import { describe } from '../handlers/errors.js';
import { readCsiConfig } from './csi/config.js';
import { startCsiPlugin } from './csi/plugin.js';
import { createLogger } from './logger.js';

async function main(): Promise<void> {
  // Everything the plugin writes (state, keys, known_hosts, the socket) is for root only.
  process.umask(0o077);
  const config = readCsiConfig();
  const log = createLogger(config.debug);
  const plugin = await startCsiPlugin(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return log.info(`${signal}: already stopping`);
    stopping = true;
    void plugin.stop(signal).then(() => process.exit(0));
  };
  // on, not once: execa's exit hook re-raises a signal nobody else listens to, which would end the process at once.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`sshfs CSI plugin failed to start: ${describe(error)}\n`);
  process.exit(1);
});
