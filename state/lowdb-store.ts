// The persistent store: one lowdb JSON file in the state directory, loaded before the socket serves.
import { Low } from 'lowdb';
import { join } from 'node:path';
import type { VolumeRecord, VolumeStore } from '../handlers/types.js';
import { AtomicJsonFile } from './atomic-json-file.js';

export interface StateData {
  version: 1;
  volumes: Record<string, VolumeRecord>;
}

function isRecord(v: unknown): v is VolumeRecord {
  const r = v as VolumeRecord;
  return (
    typeof r === 'object' && r !== null && typeof r.name === 'string' && typeof r.mountpoint === 'string' &&
    typeof r.createdAt === 'string' && typeof r.options === 'object' && r.options !== null &&
    typeof r.mounts === 'object' && r.mounts !== null
  );
}

export function isStateData(v: unknown): v is StateData {
  const d = v as StateData;
  return (
    typeof d === 'object' && d !== null && d.version === 1 && typeof d.volumes === 'object' && d.volumes !== null &&
    Object.values(d.volumes).every(isRecord)
  );
}

export const STATE_FILE_NAME = 'volumes.json';

export class LowdbStore implements VolumeStore {
  private readonly db: Low<StateData>;
  private readonly file: AtomicJsonFile<StateData>;
  /** A write that has not started yet: changes made until it starts ride along with it. */
  private queued: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();

  private constructor(file: string) {
    this.file = new AtomicJsonFile(file, isStateData);
    this.db = new Low<StateData>(this.file, { version: 1, volumes: {} });
  }

  /** Loads the state file; throws StateFileCorruptError (after keeping a copy) rather than starting empty. */
  static async open(stateDir: string): Promise<LowdbStore> {
    const store = new LowdbStore(join(stateDir, STATE_FILE_NAME));
    await store.db.read();
    // A SIGKILL during a write leaves its temp file (the state file itself is intact: writes commit by rename).
    await store.file.removeStaleTempFiles();
    return store;
  }

  async get(name: string): Promise<VolumeRecord | undefined> {
    // Own properties only: a volume named "toString" or "constructor" must not find Object.prototype's.
    const r = Object.hasOwn(this.db.data.volumes, name) ? this.db.data.volumes[name] : undefined;
    return r === undefined ? undefined : structuredClone(r);
  }

  async list(): Promise<readonly Readonly<VolumeRecord>[]> {
    return Object.values(this.db.data.volumes);
  }

  async put(record: VolumeRecord): Promise<void> {
    this.db.data.volumes[record.name] = structuredClone(record);
    await this.persist();
  }

  async delete(name: string): Promise<void> {
    delete this.db.data.volumes[name];
    await this.persist();
  }

  /** Coalesces concurrent changes into as few atomic writes as possible; each caller waits for one that includes it. */
  private persist(): Promise<void> {
    if (this.queued !== undefined) return this.queued;
    const write = this.chain.then(async () => {
      this.queued = undefined;
      await this.db.write();
    });
    this.queued = write;
    this.chain = write.catch(() => undefined);
    return write;
  }
}
