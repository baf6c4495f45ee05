import type { VolumeRequest } from '../requests.js';
import type { Deps } from '../types.js';
import { getVolume } from '../volume.js';

/** Where the volume is (or would be) mounted. */
export async function path({ name }: VolumeRequest, deps: Deps): Promise<string> {
  return (await getVolume(deps, name)).mountpoint;
}
