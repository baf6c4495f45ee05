// Entry point of the CSI plugin (Swarm cluster volumes): configuration from the environment, start, graceful stop.
import { readCsiConfig } from './csi/config.js';
import { startCsiPlugin } from './csi/plugin.js';
import { createLogger } from './logger.js';
import { runUntilSignalled } from './plugin.js';

runUntilSignalled('sshfs CSI plugin', async () => {
  const config = readCsiConfig();
  const log = createLogger(config.debug);
  return { plugin: await startCsiPlugin(config, log), log };
});
