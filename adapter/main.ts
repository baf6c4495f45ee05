// Entry point: read config, load state, serve the socket, stop cleanly on SIGTERM.
import { mkdir } from 'node:fs/promises';
import { describe } from '../handlers/errors.js';
import { reconcile } from '../handlers/reconcile.js';
import { stopSharedConnections } from '../handlers/shared-ssh.js';
import { LowdbStore } from '../state/lowdb-store.js';
import { createApp } from './app.js';
import { readConfig } from './config.js';
import { createDeps } from './deps.js';
import { createLogger } from './logger.js';
import { listenOnSocket } from './server.js';
import { lockStateDir, removeLeftovers } from './state-dir.js';

async function main(): Promise<void> {
  // Everything the plugin writes (state, keys, known_hosts) is for root only.
  process.umask(0o077);
  const config = readConfig();
  const log = createLogger(config.debug);
  // State first: Docker asks Get for every volume it knows as soon as we answer, and forgets those we deny.
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  const lock = await lockStateDir(config.stateDir);
  if (lock === undefined) log.error(`STATE_DIR ${config.stateDir} is too long for a lock socket: a second instance would not be stopped`);
  const store = await LowdbStore.open(config.stateDir);
  if (store.startupWriteError !== undefined) {
    log.error(`the state in ${config.stateDir} cannot be written (${store.startupWriteError}); serving what was read, every change fails until it can`);
  }
  const volumes = new Set((await store.list()).map((r) => r.name));
  for (const path of await removeLeftovers(config.stateDir, volumes).catch(() => [])) log.info(`removed leftover ${path}`);
  const deps = createDeps(config, store, log);
  const server = await listenOnSocket(createApp(deps), config.socketPath);
  log.info(
    `sshfs volume plugin listening on ${config.socketPath} (state ${config.stateDir}, mounts under ${config.mountRoot}` +
      `${config.dryRun ? ', DRY RUN: no command is run' : ''}${config.debug ? ', debug' : ''})`,
  );
  if ((await store.list()).length > 0) deps.runner.prepare?.();
  // After serving, so Docker never waits on a slow server to activate us.
  void reconcile(deps).then((r) =>
    log.info(
      `state reconciled: ${r.adopted.length} mount(s) adopted, ${r.remounted.length} remounted, ` +
        `${r.unmounted.length} orphan mount(s) removed, ${r.failed.length} failed${r.failed.length > 0 ? ` (${r.failed.join(', ')})` : ''}`,
    ),
  );
  const stop = (signal: string) => {
    log.info(`${signal}: closing the socket; mounts stay for running containers`);
    // Shared ssh connections go with the plugin: unused ones at once, those of mounted volumes with their last session.
    void Promise.all([server.close(), stopSharedConnections(deps).catch(() => undefined)]).then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`sshfs volume plugin failed to start: ${describe(error)}\n`);
  process.exit(1);
});
