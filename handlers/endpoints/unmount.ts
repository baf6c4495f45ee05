import { detachReleased, releaseMount, startMountSteps, unmountLater, unmountUnused } from '../lifecycle.js';
import { OPTION_SPECS } from '../options.js';
import type { ReferenceRequest } from '../requests.js';
import type { Deps } from '../types.js';
import { getVolume, mountCount, optionsOrProblem, referenceCount, setMountCount } from '../volume.js';

export interface UnmountWay {
  /**
   * Answer once the released reference is saved, and detach right after, still under the volume's lock (a Mount,
   * Remove or Get of it waits for the detach). Docker's front end asks for this: dockerd only logs an Unmount's error
   * and `docker run --rm` waits for the answer; the detach's outcome is in Status (lastError) all the same. CSI's
   * NodeUnpublishVolume must not answer before the mount is gone (the CO may publish the volume elsewhere next).
   */
  answerBeforeDetach?: boolean;
}

/** Releases `ref`'s reference; the last one unmounts the volume, at once or after its unmount_delay. */
export async function unmount({ name, ref: id }: ReferenceRequest, deps: Deps, way: UnmountWay = {}): Promise<void> {
  const steps = startMountSteps(name, deps.log, undefined, 'unmount');
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  const work = deps.locks.withLock(name, async () => {
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
    else if (way.answerBeforeDetach === true) {
      const server = await releaseMount(record, deps, steps);
      deps.log.debug(`volume ${name} unmount ${id}: 0 reference(s) left; answered, detaching`);
      const detaching = detachReleased(record, server, deps, steps);
      answer();
      await detaching;
      steps.done();
      return;
    } else await unmountUnused(record, deps, steps);
    deps.log.debug(`volume ${name} unmount ${id}: ${referenceCount(record)} reference(s) left`);
    steps.done();
  });
  if (way.answerBeforeDetach !== true) return work;
  // Whichever comes first: the answer, or the end of the work (an error before the answer, or nothing to detach).
  return Promise.race([answered, work]);
}
