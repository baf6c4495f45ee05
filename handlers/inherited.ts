// References a previous run of the plugin left behind. Some may never be released: an Unmount that reached a plugin
// killed before it could record it is lost for good (dockerd re-sends it without a body, and then gives up). Such a
// reference must not keep the volume mounted forever, so the mounts of the volume are watched: once no container
// (no mount namespace) holds the filesystem any more, the inherited references are dropped and, if none is left,
// the volume is unmounted.
import { describe } from './errors.js';
import type { Deps } from './types.js';
import { unmountUnused } from './lifecycle.js';
import { mountCount, referenceCount } from './volume.js';

/** How often a volume holding inherited references is looked at (and the least time a reference is given). */
export const INHERITED_CHECK_MS = 15_000;

const timerKey = (name: string): string => `inherited:${name}`;

/** Called at start for a live mount whose references were adopted. */
export function watchInherited(name: string, ids: string[], deps: Deps): void {
  if (ids.length === 0 || deps.mounts.usersOf === undefined) return; // nobody can tell: Remove drops them
  deps.memory.inherited.set(name, new Set(ids));
  deps.timers.set(timerKey(name), INHERITED_CHECK_MS, () => void releaseUnusedInherited(name, deps));
}

/** Never rejects: it runs from a timer. */
export async function releaseUnusedInherited(name: string, deps: Deps): Promise<void> {
  const ids = deps.memory.inherited.get(name);
  let again = false;
  try {
    await deps.locks.withLock(name, async () => {
      const record = await deps.store.get(name);
      const held = record === undefined || ids === undefined ? [] : [...ids].filter((id) => mountCount(record, id) > 0);
      if (record === undefined || held.length === 0 || deps.mounts.usersOf === undefined) return;
      const state = await deps.mounts.state(record.mountpoint, record.sshfs);
      const users = state === 'mounted' ? await deps.mounts.usersOf(record.mountpoint) : 0;
      if (users === undefined) return;
      if (users > 0) {
        again = true;
        return;
      }
      for (const id of held) delete record.mounts[id];
      deps.log.info(
        `volume ${name}: no container holds its mount any more; dropped ${held.length} reference(s) from before the ` +
          `plugin restarted whose Unmount never came${referenceCount(record) === 0 ? '; unmounting' : ''}`,
      );
      if (referenceCount(record) === 0) await unmountUnused(record, deps);
      else await deps.store.put(record);
    });
  } catch (error) {
    deps.log.error(`volume ${name}: releasing references from before the restart failed: ${describe(error)}`);
    again = true;
  }
  if (again) deps.timers.set(timerKey(name), INHERITED_CHECK_MS, () => void releaseUnusedInherited(name, deps));
  else {
    deps.timers.clear(timerKey(name));
    deps.memory.inherited.delete(name);
  }
}
