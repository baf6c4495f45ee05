import { startMountSteps, unmountLater, unmountUnused } from '../lifecycle.js';
import { OPTION_SPECS } from '../options.js';
import type { ReferenceRequest } from '../requests.js';
import type { Deps } from '../types.js';
import { getVolume, mountCount, optionsOrProblem, referenceCount, setMountCount } from '../volume.js';

/** Releases `ref`'s reference; the last one unmounts the volume, at once or after its unmount_delay. */
export async function unmount({ name, ref: id }: ReferenceRequest, deps: Deps): Promise<void> {
  const steps = startMountSteps(name, deps.log, undefined, 'unmount');
  return deps.locks.withLock(name, async () => {
    steps.mark('lock');
    const record = await getVolume(deps, name);
    steps.mark('store');
    const count = mountCount(record, id);
    if (count === 0) {
      // Docker only unmounts what it mounted; an unknown ID means our state already let go of it (e.g. after a restart).
      deps.log.info(`volume ${name}: unmount of unknown mount ID ${id} ignored`);
      return;
    }
    setMountCount(record, id, count - 1);
    const delay = optionsOrProblem(record, deps).opts?.unmountDelaySeconds ?? OPTION_SPECS.unmount_delay.default;
    if (referenceCount(record) > 0) {
      await deps.store.put(record);
      steps.mark('journal');
    } else if (delay > 0 && (await deps.mounts.state(record.mountpoint, record.sshfs)) === 'mounted') await unmountLater(record, delay, deps);
    else await unmountUnused(record, deps, steps);
    deps.log.debug(`volume ${name} unmount ${id}: ${referenceCount(record)} reference(s) left`);
    steps.done();
  });
}
