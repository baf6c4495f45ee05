// A lowdb adapter that never leaves a half-written or world-readable state file behind.
import { copyFile, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Adapter } from 'lowdb';

export class StateFileCorruptError extends Error {
  override name = 'StateFileCorruptError';
}

/**
 * Keeps a copy of an unreadable state file aside and refuses to start: answering "no such volume" would make Docker
 * forget every volume.
 */
export async function keepAsideAndFail(file: string, problem: string): Promise<never> {
  const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  await copyFile(file, aside);
  throw new StateFileCorruptError(
    `state file ${file} cannot be read: ${problem}. A copy was kept at ${aside}. ` +
      'Repair the file (or restore a backup) and start the plugin again; to start empty, move it away (Docker then forgets these volumes).',
  );
}

/** Makes a rename or a new file in DIR durable: until its directory is synced, a crash can undo it. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class AtomicJsonFile<T> implements Adapter<T> {
  private dirReady = false;
  /** Size of the last snapshot written. */
  lastWrittenBytes = 0;

  constructor(
    private readonly file: string,
    private readonly validate: (data: unknown) => data is T,
  ) {}

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    let data: unknown;
    let problem = '';
    try {
      data = JSON.parse(text);
      if (!this.validate(data)) problem = 'its content is not a state file of this plugin';
    } catch (error) {
      problem = `it is not valid JSON (${(error as Error).message})`;
    }
    if (problem === '') return data as T;
    return keepAsideAndFail(this.file, problem);
  }

  /**
   * Deletes temp files that a process killed in the middle of write() left behind (`<file>.tmp-<pid>`; each run writes
   * its own, so without this they pile up with every crash). They are never read: the rename is the commit point.
   */
  async removeStaleTempFiles(): Promise<string[]> {
    const prefix = `${basename(this.file)}.tmp-`;
    let names: string[];
    try {
      names = await readdir(dirname(this.file));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const stale = names.filter((n) => n.startsWith(prefix) && /^[0-9]+$/.test(n.slice(prefix.length)) && n !== `${prefix}${process.pid}`);
    await Promise.all(stale.map((n) => rm(join(dirname(this.file), n), { force: true })));
    return stale;
  }

  async write(data: T): Promise<void> {
    const text = JSON.stringify(data); // serialized now, before any await, so the snapshot is consistent
    await this.ensureDir();
    const tmp = `${this.file}.tmp-${process.pid}`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } catch (error) {
      await handle.close();
      await rm(tmp, { force: true }); // a half-written copy only takes space (a full disk is the likely cause)
      throw error;
    }
    await handle.close();
    await rename(tmp, this.file);
    await syncDir(dirname(this.file));
    this.lastWrittenBytes = Buffer.byteLength(text);
  }

  /** Creates the state directory (0700) if needed. */
  async ensureDir(): Promise<void> {
    if (this.dirReady) return;
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    this.dirReady = true;
  }
}
