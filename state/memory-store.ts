import type { VolumeRecord, VolumeStore } from '../handlers/types.js';

/** A store that keeps volumes in memory only: for unit tests and dry runs. */
export class MemoryStore implements VolumeStore {
  private readonly volumes = new Map<string, VolumeRecord>();

  constructor(initial: VolumeRecord[] = []) {
    for (const r of initial) this.volumes.set(r.name, structuredClone(r));
  }

  async get(name: string): Promise<VolumeRecord | undefined> {
    const r = this.volumes.get(name);
    return r === undefined ? undefined : structuredClone(r);
  }

  async list(): Promise<readonly Readonly<VolumeRecord>[]> {
    return [...this.volumes.values()];
  }

  async put(record: VolumeRecord): Promise<void> {
    this.volumes.set(record.name, structuredClone(record));
  }

  async delete(name: string): Promise<void> {
    this.volumes.delete(name);
  }
}
