// A lowdb adapter that never leaves a half-written or world-readable state file behind.
import { copyFile, mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Adapter } from 'lowdb';

export class StateFileCorruptError extends Error {
  override name = 'StateFileCorruptError';
}

export class AtomicJsonFile<T> implements Adapter<T> {
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
    // Keep a copy aside and refuse to start: answering "no such volume" would make Docker forget every volume.
    const aside = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await copyFile(this.file, aside);
    throw new StateFileCorruptError(
      `state file ${this.file} cannot be read: ${problem}. A copy was kept at ${aside}. ` +
        'Repair the file (or restore a backup) and start the plugin again; to start empty, move it away (Docker then forgets these volumes).',
    );
  }

  async write(data: T): Promise<void> {
    const text = JSON.stringify(data, null, 1); // serialized now, before any await, so the snapshot is consistent
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp-${process.pid}`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.file);
  }
}
