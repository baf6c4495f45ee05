// Entry point: read the configuration from the environment, start the plugin, stop gracefully on SIGTERM/SIGINT
// (requests in flight finish).
import { describe } from '../handlers/errors.js';
import { readConfig } from './config.js';
import { createLogger } from './logger.js';
import { startPlugin } from './plugin.js';

async function main(): Promise<void> {
  // Everything the plugin writes (state, keys, known_hosts) is for root only.
  process.umask(0o077);
  const config = readConfig();
  const log = createLogger(config.debug);
  const plugin = await startPlugin(config, log);
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
  process.stderr.write(`sshfs volume plugin failed to start: ${describe(error)}\n`);
  process.exit(1);
});
