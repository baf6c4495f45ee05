import { requireName } from './request.js';
import { respond } from './respond.js';
import type { Deps, MountResponse } from './types.js';
import { getVolume } from './volume.js';

export async function path(request: unknown, deps: Deps): Promise<MountResponse> {
  return respond<MountResponse>(deps, 'Path', { Mountpoint: '' }, async () => {
    const record = await getVolume(deps, requireName(request));
    return { Mountpoint: record.mountpoint, Err: '' };
  });
}
