import { unmountLater, unmountUnused } from '../lifecycle.js';
import type { Answer, ErrResponse, MountRequest } from '../protocol.js';
import type { Deps } from '../types.js';
import { startMountSteps } from '../mount-steps.js';
import { getVolume, mountCount, optionsOrProblem, referenceCount, setMountCount } from '../volume.js';

/** Releases the container ID's reference; the last one unmounts the volume, at once or after its unmount_delay. */
export async function unmount({ Name: name, ID: id }: MountRequest, deps: Deps): Promise<Answer<ErrResponse>> {
  const steps = startMountSteps(name, deps.log, undefined, 'unmount');
  return deps.locks.withLock(name, async () => {
    steps.mark('lock');
    const record = await getVolume(deps, name);
    steps.mark('store', record);
    const count = mountCount(record, id);
    if (count === 0) {
      // Docker only unmounts what it mounted; an unknown ID means our state already let go of it (e.g. after a restart).
      deps.log.info(`volume ${name}: unmount of unknown mount ID ${id} ignored`);
      return {};
    }
    setMountCount(record, id, count - 1);
    const delay = optionsOrProblem(record, deps.config).opts?.unmountDelaySeconds ?? 0;
    if (referenceCount(record) > 0) {
      await deps.store.put(record);
      steps.mark('journal');
    } else if (delay > 0 && (await deps.mounts.state(record.mountpoint, record.sshfs)) === 'mounted') await unmountLater(record, delay, deps);
    else await unmountUnused(record, deps);
    deps.log.debug(`volume ${name} unmount ${id}: ${referenceCount(record)} reference(s) left`);
    steps.done();
    return {};
  });
}
