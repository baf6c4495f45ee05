import { detachSettled } from '../lifecycle.js';
import type { VolumeInfo, VolumeRequest } from '../requests.js';
import { readLiveView, statusOf } from '../status.js';
import type { Deps } from '../types.js';
import { getVolume } from '../volume.js';

/** The volume and its Status (`docker volume inspect`): what an operator acts on, read live, never a secret. */
export async function get({ name }: VolumeRequest, deps: Deps): Promise<VolumeInfo> {
  await detachSettled(name, deps); // an Unmount answered before its detach: show the volume once it is done
  const record = await getVolume(deps, name);
  return {
    name: record.name,
    mountpoint: record.mountpoint,
    createdAt: record.createdAt,
    status: statusOf(record, await readLiveView(record, deps), deps),
  };
}
