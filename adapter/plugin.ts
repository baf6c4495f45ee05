// Starts the plugin from its configuration: state, dependencies, socket, start-up recovery; and stops it gracefully.
// main.ts calls it with the environment's configuration; tests call it directly.
import { chmod, mkdir } from 'node:fs/promises';
import { describe } from '../handlers/errors.js';
import { reconcile } from '../handlers/reconcile.js';
import { stopSharedConnections } from '../handlers/shared-ssh.js';
import { createStallWatch } from '../handlers/stall-watch.js';
import type { Deps, Logger } from '../handlers/types.js';
import { LowdbStore } from '../state/lowdb-store.js';
import { createApp } from './docker/app.js';
import type { PluginConfig } from './config.js';
import { createDeps, createDryRunDeps } from './deps.js';
import { hostDirsFor } from './host/host-paths.js';
import { listenOnSocket } from './docker/server.js';
import { lockStateDir, removeLeftovers } from './host/state-dir.js';

/** Requests in flight may finish for this long: well inside the 10 s dockerd gives a managed plugin before SIGKILL. */
export const STOP_GRACE_MS = 8_000;

export interface RunningPlugin {
  deps: Deps;
  /** Start-up recovery (reconcile), which runs after the socket serves. */
  recovered: Promise<void>;
  /** Stops accepting, lets requests in flight finish (at most graceMs), closes idle shared logins. */
  stop(reason: string, graceMs?: number): Promise<void>;
}

/** The real state directory: one instance at a time, its journal loaded, leftovers of a crash removed. */
export async function openState(config: PluginConfig, log: Logger): Promise<Deps> {
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
  return createDeps(config, store, log);
}

/** The dependencies for a configuration: in memory for a dry run, else over the real state directory. */
export async function openDeps(config: PluginConfig, log: Logger): Promise<Deps> {
  return config.dryRun ? createDryRunDeps(config, log) : openState(config, log);
}

/** Start-up recovery, shared by both front ends: the persisted state and the real mounts made to agree again. */
export async function recover(deps: Deps, log: Logger): Promise<void> {
  if ((await deps.store.list()).length > 0) deps.runner.prepare?.();
  const r = await reconcile(deps);
  log.info(
    `state reconciled: ${r.adopted.length} mount(s) adopted, ${r.released.length} whose mount was gone released, ` +
      `${r.unmounted.length} orphan mount(s) removed, ${r.failed.length} failed${r.failed.length > 0 ? ` (${r.failed.join(', ')})` : ''}`,
  );
}

export async function startPlugin(config: PluginConfig, log: Logger): Promise<RunningPlugin> {
  // A dry run touches neither the state directory nor the host's mounts: it only prints what it would run.
  const deps = await openDeps(config, log);
  const server = await listenOnSocket(createApp(deps, { debug: config.debug }), config.socketPath, config.listenFd);
  log.info(
    `sshfs volume plugin listening on ${config.socketPath}${config.listenFd === undefined ? '' : ' (the socket systemd passed)'} (state ${config.stateDir}, mounts under ${config.mountRoot}` +
      `${config.dryRun ? ', DRY RUN: nothing is run or written, volumes live in memory' : ''}${config.debug ? ', debug' : ''})`,
  );
  // After serving, so Docker never waits on a slow server to activate us.
  // Stalled mounts are watched once recovery has adopted the mounts from before.
  const stallWatch = createStallWatch(deps);
  const recovered = recover(deps, log).finally(() => stallWatch.start());
  return {
    deps,
    recovered,
    async stop(reason, graceMs = STOP_GRACE_MS) {
      stallWatch.stop();
      log.info(`${reason}: no new connections; finishing ${server.inFlight()} request(s) in flight; mounts stay for running containers`);
      // Shared ssh connections go with the plugin: unused ones at once, those of mounted volumes with their last session.
      const [{ cut }] = await Promise.all([server.close(graceMs), stopSharedConnections(deps).catch(() => undefined)]);
      if (cut > 0) log.error(`${reason}: ${cut} request(s) still running after ${graceMs / 1000} s were cut; dockerd will retry them`);
      else log.info(`${reason}: every request answered; exiting`);
    },
  };
}

/**
 * An entry point's whole life, shared by both front ends: root-only files, start, a graceful stop on SIGTERM/SIGINT
 * (requests in flight finish); a start that fails exits 1 with the reason.
 */
export function runUntilSignalled(what: string, start: () => Promise<{ plugin: RunningPlugin; log: Logger }>): void {
  // Everything the plugin writes (state, keys, known_hosts, its socket) is for root only.
  process.umask(0o077);
  start()
    .then(({ plugin, log }) => {
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return log.info(`${signal}: already stopping`);
        stopping = true;
        void plugin.stop(signal).then(() => process.exit(0));
      };
      // on, not once: execa's exit hook re-raises a signal nobody else listens to, which would end the process at once.
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    })
    .catch((error: unknown) => {
      process.stderr.write(`${what} failed to start: ${describe(error)}\n`);
      process.exit(1);
    });
}
