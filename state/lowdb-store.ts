// The persistent store: a lowdb JSON snapshot plus an append-only journal of changes, in the state directory.
import { Low } from 'lowdb';
import { join } from 'node:path';
import { UserError } from '../handlers/errors.js';
import type { VolumeRecord, VolumeStore } from '../handlers/types.js';
import { AtomicJsonFile } from './atomic-json-file.js';
import { JournalFile } from './journal-file.js';

interface StateData {
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

function isStateData(v: unknown): v is StateData {
  const d = v as StateData;
  return (
    typeof d === 'object' && d !== null && d.version === 1 && typeof d.volumes === 'object' && d.volumes !== null &&
    Object.values(d.volumes).every(isRecord)
  );
}

export const STATE_FILE_NAME = 'volumes.json';
export const JOURNAL_FILE_NAME = 'volumes.journal';

/** One line of the journal: a whole record put, or a volume deleted (replaying either twice is harmless). */
export type StateChange = { put: VolumeRecord } | { delete: string };

function isStateChange(v: unknown): v is StateChange {
  const c = v as Record<string, unknown>;
  if (typeof c !== 'object' || c === null || Object.keys(c).length !== 1) return false;
  return Object.hasOwn(c, 'put') ? isRecord(c.put) : typeof c.delete === 'string';
}

/** The journal is folded into the snapshot once it outgrows both this and the snapshot itself. */
const MIN_COMPACT_BYTES = 1 << 20;

/**
 * The persistent store: lowdb holds the state in memory and writes it as one JSON snapshot; each change is also
 * appended to a journal and fsync'd before it is acknowledged (one small write instead of the whole file), and the
 * journal is folded into the snapshot when it grows. Loaded before the socket serves.
 */
export class LowdbStore implements VolumeStore {
  private readonly db: Low<StateData>;
  private readonly file: AtomicJsonFile<StateData>;
  private readonly journal: JournalFile<StateChange>;
  private snapshotBytes = 0;
  /** Changes not yet handed to a write; the next write takes them all (concurrent changes share one fsync). */
  private pending: StateChange[] = [];
  /** The write that will take the pending changes, if one is queued and has not started. */
  private queued: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** Set when an append failed midway: its bytes may sit in the journal, so the next write is a whole snapshot. */
  private mustCompact = false;
  /**
   * Why the state could not be written at start (a full or read-only filesystem), if so: the plugin still serves what
   * it read, every change fails with this reason until the filesystem can take writes again.
   */
  startupWriteError: string | undefined;

  private constructor(private readonly stateDir: string) {
    this.file = new AtomicJsonFile(join(stateDir, STATE_FILE_NAME), isStateData);
    this.journal = new JournalFile(join(stateDir, JOURNAL_FILE_NAME), isStateChange);
    this.db = new Low<StateData>(this.file, { version: 1, volumes: {} });
  }

  /** Loads snapshot and journal; throws StateFileCorruptError (after keeping a copy) rather than starting empty. */
  static async open(stateDir: string): Promise<LowdbStore> {
    const store = new LowdbStore(stateDir);
    await store.file.ensureDir();
    await store.db.read();
    const { changes } = await store.journal.read();
    for (const change of changes) store.apply(change);
    // Fold the journal in now (it may end in a torn append, which must not be appended to) and start it empty.
    try {
      await store.compact();
    } catch (error) {
      // The state was read whole: serve it. mustCompact stays set, so the next change writes a snapshot, never
      // appends after a possibly torn line.
      store.startupWriteError = (error as Error).message;
    }
    // A SIGKILL during a snapshot write leaves its temp file (the snapshot itself is intact: it commits by rename).
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
    await this.change({ put: structuredClone(record) });
  }

  async delete(name: string): Promise<void> {
    await this.change({ delete: name });
  }

  private apply(change: StateChange): void {
    if ('put' in change) this.db.data.volumes[change.put.name] = change.put;
    else delete this.db.data.volumes[change.delete];
  }

  /**
   * Applies the change in memory and resolves once it is durable. If writing fails, the change is undone in memory
   * (unless a later change to the same volume replaced it) so that what the plugin answers matches what it saved.
   */
  private async change(change: StateChange): Promise<void> {
    const name = 'put' in change ? change.put.name : change.delete;
    const volumes = this.db.data.volumes;
    const before = Object.hasOwn(volumes, name) ? volumes[name] : undefined;
    this.apply(change);
    const after = Object.hasOwn(volumes, name) ? volumes[name] : undefined;
    try {
      await this.persist(change);
      this.startupWriteError = undefined;
    } catch (error) {
      const now = Object.hasOwn(volumes, name) ? volumes[name] : undefined;
      if (now === after) {
        if (before === undefined) delete volumes[name];
        else volumes[name] = before;
      }
      throw new UserError(
        `the plugin cannot save its state in ${this.stateDir} (${(error as Error).message}); nothing was changed: ` +
          'free space on that filesystem (or make it writable), then try again',
      );
    }
  }

  private persist(change: StateChange): Promise<void> {
    this.pending.push(change);
    if (this.queued !== undefined) return this.queued;
    const write = this.chain.then(async () => {
      this.queued = undefined;
      const changes = this.pending;
      this.pending = [];
      if (this.mustCompact || this.journal.size > Math.max(MIN_COMPACT_BYTES, this.snapshotBytes)) {
        await this.compact(); // the snapshot holds these changes too: they are in memory already
        return;
      }
      try {
        await this.journal.append(changes);
      } catch (error) {
        this.mustCompact = true;
        throw error;
      }
    });
    this.queued = write;
    this.chain = write.catch(() => undefined);
    return write;
  }

  /** Writes the whole state as the snapshot, then empties the journal (a crash in between replays it harmlessly). */
  private async compact(): Promise<void> {
    this.mustCompact = true; // until both steps are done
    await this.db.write();
    this.snapshotBytes = this.file.lastWrittenBytes;
    await this.journal.reset();
    this.mustCompact = false;
  }
}
