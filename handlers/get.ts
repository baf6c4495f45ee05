import { UserError } from './errors.js';
import { requireName } from './request.js';
import { respond } from './respond.js';
import type { Deps, GetResponse } from './types.js';
import { statusOf } from './volume.js';

export async function get(request: unknown, deps: Deps): Promise<GetResponse> {
  return respond<GetResponse>(deps, 'Get', { Volume: null }, async () => {
    const name = requireName(request);
    const record = await deps.store.get(name);
    if (record === undefined) throw new UserError(`no such volume: ${name}`);
    const mounted = await deps.mounts.isMounted(record.mountpoint);
    return {
      Volume: { Name: record.name, Mountpoint: record.mountpoint, CreatedAt: record.createdAt, Status: statusOf(record, mounted) },
      Err: '',
    };
  });
}
