import { cancelIdleUnmount, ensureMounted } from '../lifecycle.js';
import type { Answer, MountRequest, MountResponse } from '../protocol.js';
import type { Deps } from '../types.js';
import { startMountSteps } from '../mount-steps.js';
import { getVolume, mountCount, referenceCount, setMountCount } from '../volume.js';

/** Takes a reference for the container ID, mounting the volume if it is not mounted (or its sshfs died). */
export async function mount({ Name: name, ID: id }: MountRequest, deps: Deps): Promise<Answer<MountResponse>> {
  const steps = startMountSteps(name, deps.log);
  return deps.locks.withLock(name, async () => {
    steps.mark('lock');
    const record = await getVolume(deps, name);
    steps.mark('store', record);
    if (cancelIdleUnmount(record, deps)) deps.log.info(`volume ${name}: in use again before its delayed unmount`);
    await ensureMounted(record, deps);
    setMountCount(record, id, mountCount(record, id) + 1);
    await deps.store.put(record);
    steps.mark('journal');
    deps.log.debug(`volume ${name} mount ${id}: ${referenceCount(record)} reference(s)`);
    steps.done();
    return { Mountpoint: record.mountpoint };
  });
}
