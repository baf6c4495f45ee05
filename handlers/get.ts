import { requireName } from './request.js';
import { respond } from './respond.js';
import type { Deps, GetResponse } from './types.js';
import { getVolume, statusOf } from './volume.js';

export async function get(request: unknown, deps: Deps): Promise<GetResponse> {
  return respond<GetResponse>(deps, 'Get', { Volume: null }, async () => {
    const record = await getVolume(deps, requireName(request));
    const mounted = await deps.mounts.isMounted(record.mountpoint);
    return {
      Volume: { Name: record.name, Mountpoint: record.mountpoint, CreatedAt: record.createdAt, Status: statusOf(record, mounted) },
      Err: '',
    };
  });
}
