import type { VolumeSummary } from '../requests.js';
import type { Deps } from '../types.js';

export async function list(deps: Deps): Promise<VolumeSummary[]> {
  const records = await deps.store.list();
  return records.map((r) => ({ name: r.name, mountpoint: r.mountpoint }));
}
