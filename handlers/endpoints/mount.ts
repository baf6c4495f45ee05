import { cancelIdleUnmount, ensureMounted, startMountSteps } from '../lifecycle.js';
import type { ReferenceRequest } from '../requests.js';
import type { Deps } from '../types.js';
import { getVolume, mountCount, referenceCount, setMountCount } from '../volume.js';

/**
 * Takes a reference for `ref`, mounting the volume if it is not mounted (or its sshfs died); returns its mountpoint.
 */
export async function mount({ name, ref: id }: ReferenceRequest, deps: Deps): Promise<string> {
  const steps = startMountSteps(name, deps.log);
  return deps.locks.withLock(name, async () => {
    steps.mark('lock');
    const record = await getVolume(deps, name);
    steps.mark('store');
    if (cancelIdleUnmount(record, deps)) deps.log.info(`volume ${name}: in use again before its delayed unmount`);
    await ensureMounted(record, deps, steps);
    setMountCount(record, id, mountCount(record, id) + 1);
    await deps.store.put(record);
    steps.mark('journal');
    deps.log.debug(`volume ${name} mount ${id}: ${referenceCount(record)} reference(s)`);
    steps.done();
    return record.mountpoint;
  });
}
