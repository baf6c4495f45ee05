// Starts the CSI front end: the same start-up as the VolumeDriver plugin (state, dependencies, recovery), then the
// publications Swarm made before a restart are mounted again, since Swarm remembers them only in memory.
import type { Deps, Logger } from '../../handlers/types.js';
import { createStallWatch } from '../../handlers/stall-watch.js';
import { stopSharedConnections } from '../../handlers/ssh-login.js';
import { openDeps } from '../deps.js';
import { recover, STOP_GRACE_MS, type RunningPlugin } from '../plugin.js';
import type { CsiConfig } from './config.js';
import { controllerService } from './controller.js';
import { identityService } from './identity.js';
import { nodeService, publications } from './node.js';
import { volumePort, type VolumePort } from './port.js';
import { serveCsi } from './server.js';
import { isLinked, unlinkTarget } from './targets.js';

export async function startCsiPlugin(config: CsiConfig, log: Logger, given?: Deps): Promise<RunningPlugin> {
  const deps = given ?? (await openDeps(config, log));
  const port = volumePort(deps);
  // Read before recovery, which drops references whose mount died with the plugin.
  const published = await publications(port, config.publishRoot);
  const server = await serveCsi(
    {
      Identity: identityService(),
      Controller: controllerService(port, log),
      Node: nodeService(port, { nodeId: config.nodeId, publishRoot: config.publishRoot }, log),
    },
    config.socketPath,
    log,
  );
  log.info(`sshfs CSI plugin listening on ${config.socketPath} (node ${config.nodeId}, publishing under ${config.publishRoot}, state ${config.stateDir})`);
  const stallWatch = createStallWatch(deps);
  const recovered = recover(deps, log)
    .then(() => republish(port, published, log))
    .finally(() => stallWatch.start());
  return {
    deps,
    recovered,
    async stop(reason, graceMs = STOP_GRACE_MS) {
      stallWatch.stop();
      log.info(`${reason}: no new calls; finishing those in flight; mounts stay for running tasks`);
      const [{ cut }] = await Promise.all([server.close(graceMs), stopSharedConnections(deps).catch(() => undefined)]);
      log.info(cut ? `${reason}: calls still running after ${graceMs / 1000} s were cut; Swarm retries them` : `${reason}: every call answered; exiting`);
    },
  };
}

/**
 * Mounts again every target that was published when the plugin stopped and is still linked. One that cannot be
 * mounted loses its link, so a task started on it fails instead of writing to the empty local mountpoint.
 */
async function republish(port: VolumePort, published: { name: string; ref: string; target: string }[], log: Logger): Promise<void> {
  await Promise.all(
    published.map(async ({ name, ref, target }) => {
      if (!(await isLinked(target))) return port.release(name, ref).catch(() => undefined);
      if ((await port.held(name, ref)) > 0) return; // still mounted: adopted by the recovery
      try {
        await port.acquire(name, ref);
        log.info(`volume ${name}: published at ${target} before the restart; mounted again`);
      } catch (error) {
        await unlinkTarget(target).catch(() => undefined);
        log.error(`volume ${name}: published at ${target} before the restart, cannot be mounted again (${(error as Error).message}); link removed`);
      }
    }),
  );
}
