// An append-only log of state changes next to the snapshot: one small fsync'd append per batch of changes instead of
// rewriting the whole state file for every Create, Mount or Remove. The store folds it into the snapshot now and then.
import { open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { keepAsideAndFail, syncDir } from './atomic-json-file.js';

interface JournalContent<C> {
  changes: C[];
}

export class JournalFile<C> {
  private bytes = 0;

  constructor(
    readonly file: string,
    private readonly validate: (change: unknown) => change is C,
  ) {}

  /** Bytes appended since the file was last reset: the store compacts when this grows past the snapshot. */
  get size(): number {
    return this.bytes;
  }

  /**
   * Reads every complete line. Only the end of the file can be torn (each append waits for the previous one's fsync),
   * so an unreadable complete line is corruption: a copy is kept aside and the plugin refuses to start. Bytes after the
   * last newline are an append that a crash cut short: never acknowledged, so dropped.
   */
  async read(): Promise<JournalContent<C>> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { changes: [] };
      throw error;
    }
    const end = text.lastIndexOf('\n') + 1;
    const changes: C[] = [];
    const lines = text.slice(0, end).split('\n').slice(0, -1);
    for (const [i, line] of lines.entries()) {
      let change: unknown;
      try {
        change = JSON.parse(line);
      } catch (error) {
        return keepAsideAndFail(this.file, `line ${i + 1} is not valid JSON (${(error as Error).message})`);
      }
      if (!this.validate(change)) return keepAsideAndFail(this.file, `line ${i + 1} is not a change this plugin writes`);
      changes.push(change);
    }
    this.bytes = end;
    return { changes };
  }

  /**
   * Appends the changes as one write and returns once they are on disk. If the write or its sync fails (a full disk),
   * whatever part of it reached the file is cut off again: a change reported as failed must not come back at the next
   * start. Throws the original error either way.
   */
  async append(changes: readonly C[]): Promise<void> {
    const text = changes.map((c) => `${JSON.stringify(c)}\n`).join('');
    const handle = await open(this.file, 'a', 0o600);
    try {
      await handle.writeFile(text);
      await handle.datasync();
    } catch (error) {
      await handle.truncate(this.bytes).then(() => handle.datasync()).catch(() => undefined);
      throw error;
    } finally {
      await handle.close();
    }
    this.bytes += Buffer.byteLength(text);
  }

  /** Empties (or creates) the journal after its changes reached the snapshot, durably: its directory entry too. */
  async reset(): Promise<void> {
    const handle = await open(this.file, 'w', 0o600);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await syncDir(dirname(this.file));
    this.bytes = 0;
  }
}
