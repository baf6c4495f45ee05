// The VolumeDriver plugin: its dependencies opened (deps.ts, as for the CSI front end), then the Docker socket served.
// main.ts calls startPlugin with the environment's configuration; tests call it directly.
import { detachesSettled } from '../../handlers/lifecycle.js';
import { stopSharedConnections } from '../../handlers/ssh-login.js';
import { createStallWatch } from '../../handlers/stall-watch.js';
import type { Deps, Logger } from '../../handlers/types.js';
import type { PluginConfig } from '../config.js';
import { openDeps } from '../deps.js';
import { recover, STOP_GRACE_MS, type RunningPlugin } from '../plugin.js';
import { createApp } from './app.js';
import { listenOnSocket } from './server.js';

/** How long a stop waits for Unmounts' detaches still running (normally a few ms each). */
const DETACH_GRACE_MS = 1_000;

/** Opens the dependencies (a dry run: in memory, printing what it would run) and serves the Docker socket over them. */
export async function startPlugin(config: PluginConfig, log: Logger): Promise<RunningPlugin> {
  return serveDocker(await openDeps(config, log), config, log);
}

/** Serves the Docker socket over opened dependencies: the endpoint table on it, then start-up recovery. */
async function serveDocker(deps: Deps, config: PluginConfig, log: Logger): Promise<RunningPlugin> {
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
      // Unmounts answered before their detach: let those finish (a crash in between is repaired at the next start).
      const detaching = await detachesSettled(deps, DETACH_GRACE_MS);
      if (detaching > 0) log.error(`${reason}: ${detaching} unmount(s) still detaching; the next start unmounts what is left`);
      if (cut > 0) log.error(`${reason}: ${cut} request(s) still running after ${graceMs / 1000} s were cut; dockerd will retry them`);
      else log.info(`${reason}: every request answered; exiting`);
    },
  };
}
