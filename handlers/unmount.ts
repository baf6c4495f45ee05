import { describe, UserError } from './errors.js';
import { requireMount } from './request.js';
import { respond } from './respond.js';
import type { Deps, ErrResponse, VolumeRecord } from './types.js';
import { getVolume, mountCount, optionsOrProblem, referenceCount, setMountCount, sshLogFileFor } from './volume.js';

export async function unmount(request: unknown, deps: Deps): Promise<ErrResponse> {
  return respond<ErrResponse>(deps, 'Unmount', {}, async () => {
    const { name, id } = requireMount(request);
    return deps.locks.withLock(name, async () => {
      const record = await getVolume(deps, name);
      const count = mountCount(record, id);
      if (count === 0) {
        // Docker only unmounts what it mounted; an unknown ID means our state already let go of it (e.g. after a restart).
        deps.log.info(`volume ${name}: unmount of unknown mount ID ${id} ignored`);
        return { Err: '' };
      }
      setMountCount(record, id, count - 1);
      const delay = optionsOrProblem(record, deps.config).opts?.unmountDelaySeconds ?? 0;
      if (referenceCount(record) === 0 && delay > 0 && (await deps.mounts.state(record.mountpoint)) === 'mounted') {
        // Kept mounted for a while: a container started again soon finds it ready (no ssh handshake, warm caches).
        record.idleUntil = new Date(deps.now().getTime() + delay * 1000).toISOString();
        await deps.store.put(record);
        scheduleIdleUnmount(record.name, record.idleUntil, delay * 1000, deps);
        deps.log.info(`volume ${name}: no container uses it; unmounting at ${record.idleUntil} (unmount_delay=${delay})`);
      } else if (referenceCount(record) === 0) {
        delete record.mountedAt;
        delete record.idleUntil;
        await deps.store.put(record);
        await unmountSshfs(record, deps);
      } else {
        await deps.store.put(record);
      }
      deps.log.debug(`volume ${name} unmount ${id}: ${referenceCount(record)} reference(s) left`);
      return { Err: '' };
    });
  });
}

/** Arms the delayed unmount of an idle volume; `idleUntil` names this arming, so only it can unmount. */
export function scheduleIdleUnmount(name: string, idleUntil: string, ms: number, deps: Deps): void {
  deps.timers.set(name, ms, () => void unmountIdle(name, idleUntil, deps));
}

/**
 * The delayed unmount: only if the volume is still idle from the same arming (a Mount in between took it back and
 * cleared idleUntil; a later Unmount armed a new one, which a timer already waiting for the lock must not pre-empt).
 * Never rejects: it runs from a timer, where a rejection would end the process.
 */
export async function unmountIdle(name: string, idleUntil: string, deps: Deps): Promise<void> {
  try {
    await deps.locks.withLock(name, async () => {
      const record = await deps.store.get(name);
      if (record === undefined || record.idleUntil !== idleUntil || referenceCount(record) > 0) return;
      delete record.idleUntil;
      delete record.mountedAt;
      await deps.store.put(record);
      await unmountSshfs(record, deps);
    });
  } catch (error) {
    deps.log.error(`volume ${name}: delayed unmount failed: ${describe(error)}`);
  }
}

/** A volume kept mounted by unmount_delay that is needed again (Mount) or removed: its timer must not fire. */
export function cancelIdleUnmount(record: VolumeRecord, deps: Deps): boolean {
  if (record.idleUntil === undefined) return false;
  deps.timers.clear(record.name);
  delete record.idleUntil;
  return true;
}

/** Unmounts (lazily if busy) and removes the then-empty mountpoint directory; never deletes files. */
export async function unmountSshfs(record: VolumeRecord, deps: Deps): Promise<void> {
  if (await deps.mounts.isMounted(record.mountpoint)) {
    const plain = await deps.runner.run('fusermount3', ['-u', record.mountpoint], { timeoutMs: 10_000 });
    const lazy = plain.exitCode !== 0;
    if (lazy) {
      deps.log.info(`unmount of ${record.mountpoint} failed (${plain.stderr.trim()}); detaching it lazily`);
      await deps.runner.run('fusermount3', ['-u', '-z', record.mountpoint], { timeoutMs: 10_000 });
    }
    if (await deps.mounts.isMounted(record.mountpoint)) {
      const message = `could not unmount ${record.mountpoint}: ${plain.stderr.trim() || 'fusermount3 failed'}`;
      record.lastError = message;
      record.lastErrorAt = deps.now().toISOString();
      await deps.store.put(record);
      throw new UserError(message);
    }
    // sshfs and its ssh normally exit once unmounted; against a server that stopped answering they can wait forever
    // (on a hung request that held the mount, or on sshfs's own last requests): make sure they end.
    await deps.mounts.retire?.(record.mountpoint, sshLogFileFor(deps.config, record.name));
    deps.log.info(`unmounted volume ${record.name}${lazy ? ' (detached lazily: it was busy)' : ''}`);
  }
  await deps.fs.removeEmptyDir(record.mountpoint);
}
