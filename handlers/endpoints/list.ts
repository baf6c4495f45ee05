import type { Answer, EmptyRequest, ListResponse } from '../protocol.js';
import type { Deps } from '../types.js';

export async function list(_request: EmptyRequest, deps: Deps): Promise<Answer<ListResponse>> {
  const records = await deps.store.list();
  return { Volumes: records.map((r) => ({ Name: r.name, Mountpoint: r.mountpoint })) };
}
