// What both front ends (the Docker socket: docker/serve.ts; the CSI server: csi/plugin.ts) share once their
// dependencies are open (deps.ts): start-up recovery, the running plugin's shape, a graceful stop, an entry point's life.
import { describe } from '../handlers/errors.js';
import { reconcile } from '../handlers/reconcile.js';
import type { Deps, Logger } from '../handlers/types.js';

/** Requests in flight may finish for this long: well inside the 10 s dockerd gives a managed plugin before SIGKILL. */
export const STOP_GRACE_MS = 8_000;

export interface RunningPlugin {
  deps: Deps;
  /** Start-up recovery (reconcile), which runs after the socket serves. */
  recovered: Promise<void>;
  /** Stops accepting, lets requests in flight finish (at most graceMs), closes idle shared logins. */
  stop(reason: string, graceMs?: number): Promise<void>;
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
