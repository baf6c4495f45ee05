import { respond } from './respond.js';
import type { Deps, ListResponse } from './types.js';

export async function list(_request: unknown, deps: Deps): Promise<ListResponse> {
  return respond<ListResponse>(deps, 'List', { Volumes: [] }, async () => {
    const records = await deps.store.list();
    return { Volumes: records.map((r) => ({ Name: r.name, Mountpoint: r.mountpoint })), Err: '' };
  });
}
