// Entry point: read the configuration from the environment, start the plugin, stop gracefully on SIGTERM/SIGINT
// (requests in flight finish).
import { readConfig } from './config.js';
import { createLogger } from './logger.js';
import { startPlugin } from './docker/serve.js';
import { runUntilSignalled } from './plugin.js';

runUntilSignalled('sshfs volume plugin', async () => {
  const config = readConfig();
  const log = createLogger(config.debug);
  return { plugin: await startPlugin(config, log), log };
});
