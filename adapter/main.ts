// Entry point: read config, load state, serve the socket, stop gracefully on SIGTERM (requests in flight finish).
import { chmod, mkdir } from 'node:fs/promises';
import { describe } from '../handlers/errors.js';
import { reconcile } from '../handlers/reconcile.js';
import { stopSharedConnections } from '../handlers/shared-ssh.js';
import { LowdbStore } from '../state/lowdb-store.js';
import { createApp } from './app.js';
import { readConfig } from './config.js';
import { createDeps } from './deps.js';
import { hostDirsFor } from './host-paths.js';
import { createLogger } from './logger.js';
import { listenOnSocket } from './server.js';
import { lockStateDir, removeLeftovers } from './state-dir.js';

/** Requests in flight may finish for this long: well inside the 10 s dockerd gives a managed plugin before SIGKILL. */
const STOP_GRACE_MS = 8_000;

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
  // A STATE_DIR that existed before keeps its mode otherwise (0755 from mkdir -p, or a managed plugin's state.source).
  await chmod(config.stateDir, 0o700).catch((error: unknown) => log.error(`STATE_DIR ${config.stateDir} stays as it was: ${describe(error)}`));
  config.hostDirs = await hostDirsFor([config.stateDir]);
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
      `state reconciled: ${r.adopted.length} mount(s) adopted, ${r.released.length} whose mount was gone released, ` +
        `${r.unmounted.length} orphan mount(s) removed, ${r.failed.length} failed${r.failed.length > 0 ? ` (${r.failed.join(', ')})` : ''}`,
    ),
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return log.info(`${signal}: already stopping`);
    stopping = true;
    log.info(`${signal}: no new connections; finishing ${server.inFlight()} request(s) in flight; mounts stay for running containers`);
    // Shared ssh connections go with the plugin: unused ones at once, those of mounted volumes with their last session.
    void Promise.all([server.close(STOP_GRACE_MS), stopSharedConnections(deps).catch(() => undefined)]).then(([{ cut }]) => {
      if (cut > 0) log.error(`${signal}: ${cut} request(s) still running after ${STOP_GRACE_MS / 1000} s were cut; dockerd will retry them`);
      else log.info(`${signal}: every request answered; exiting`);
      process.exit(0);
    });
  };
  // on, not once: execa's exit hook re-raises a signal nobody else listens to, which would end the process at once.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`sshfs volume plugin failed to start: ${describe(error)}\n`);
  process.exit(1);
});
