// Run once at start, after the socket serves: make the persisted state and the real mounts agree again
// after a crash, a kill or a restart of the plugin.
import { describe } from './errors.js';
import { watchInherited } from './inherited.js';
import type { Deps } from './types.js';
import { detach, scheduleIdleUnmount, unmountVolume } from './lifecycle.js';
import { referenceCount } from './volume.js';

export interface ReconcileReport {
  adopted: string[];
  /** Volumes with references whose mount is gone: the references are dropped, the volume stays unmounted. */
  released: string[];
  unmounted: string[];
  failed: string[];
}

export async function reconcile(deps: Deps): Promise<ReconcileReport> {
  const report: ReconcileReport = { adopted: [], released: [], unmounted: [], failed: [] };
  const records = await deps.store.list();
  const known = new Set(records.map((r) => r.mountpoint));
  // sshfs mounts under our root that belong to no volume (e.g. removed while the plugin was down).
  for (const orphan of await deps.mounts.sshfsMountsUnder(deps.config.mountRoot)) {
    if (known.has(orphan)) continue;
    await detach(orphan, deps);
    await deps.fs.removeEmptyDir(orphan);
    report.unmounted.push(orphan);
  }
  // Each volume under its own lock and in parallel: one unreachable server delays only its own volume.
  await Promise.all(
    records.map((r) =>
      deps.locks.withLock(r.name, async () => {
        const record = await deps.store.get(r.name);
        if (record === undefined) return;
        const state = await deps.mounts.state(record.mountpoint, record.sshfs);
        const refs = referenceCount(record);
        if (state !== 'mounted' && record.idleUntil !== undefined) {
          delete record.idleUntil; // its mount is gone: nothing left to unmount later
          await deps.store.put(record);
        }
        try {
          if (refs > 0 && state === 'mounted') {
            // Running containers keep using it; an Unmount lost in the crash is found by watching who holds the mount.
            watchInherited(record.name, Object.keys(record.mounts), deps);
            report.adopted.push(record.name);
          } else if (state === 'mounted' && record.idleUntil !== undefined) {
            // Kept mounted by unmount_delay when the plugin stopped: the delay goes on from where it was.
            scheduleIdleUnmount(record.name, record.idleUntil, Math.max(0, Date.parse(record.idleUntil) - deps.now().getTime()), deps);
            report.adopted.push(record.name);
          } else if (refs > 0) {
            // The mount these references were for is gone (sshfs died with the plugin). A container from before keeps
            // its bind of the dead mount, which no new mount on the mountpoint can revive (it must be restarted), so
            // they hold nothing: dropped, or a lost Unmount would keep a fresh mount up for good. Their Unmounts, if
            // they still come, are for unknown IDs and answered OK; the next Mount mounts the volume.
            if (state === 'stale') await unmountVolume(record, deps);
            record.mounts = {};
            delete record.mountedAt;
            await deps.store.put(record);
            report.released.push(record.name);
          } else if (state !== 'absent') {
            await unmountVolume(record, deps);
            report.unmounted.push(record.mountpoint);
          } else {
            await deps.fs.removeEmptyDir(record.mountpoint);
          }
        } catch (error) {
          // The references stay: Get shows lastError, and the next Mount tries again.
          deps.log.error(`reconcile: volume ${record.name}: ${describe(error)}`);
          report.failed.push(record.name);
        }
      }),
    ),
  );
  return report;
}
