import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VolumeRecord } from '../../handlers/types.js';
import { StateFileCorruptError } from '../../state/atomic-json-file.js';
import { JournalFile } from '../../state/journal-file.js';
import { JOURNAL_FILE_NAME, LowdbStore, STATE_FILE_NAME } from '../../state/lowdb-store.js';
import { MemoryStore } from '../../state/memory-store.js';

const rec = (name: string): VolumeRecord => ({
  name,
  createdAt: '2026-01-01T00:00:00.000Z',
  options: { sshcmd: 'u@h:/p', password: 'pw' },
  mountpoint: `/mnt/volumes/${name}`,
  mounts: { a: 2 },
});

describe.each([
  ['MemoryStore', async () => new MemoryStore()],
  ['LowdbStore', async () => LowdbStore.open(await mkdtemp(join(tmpdir(), 'sshfs-state-')))],
])('%s', (_name, open) => {
  it('stores, lists, replaces and deletes copies', async () => {
    const store = await open();
    const r = rec('a');
    await store.put(r);
    r.mounts.b = 1; // mutating the caller's object must not change the store
    expect(await store.get('a')).toEqual(rec('a'));
    await store.put({ ...rec('a'), mounts: {} });
    await store.put(rec('b'));
    expect((await store.list()).map((x) => [x.name, x.mounts])).toEqual([['a', {}], ['b', { a: 2 }]]);
    await store.delete('a');
    expect(await store.get('a')).toBeUndefined();
  });

  it('knows no volume by the name of an Object.prototype member (found by the hostile-input fault test)', async () => {
    const store = await open();
    for (const name of ['toString', 'constructor', 'hasOwnProperty', 'valueOf']) expect(await store.get(name)).toBeUndefined();
    await store.put(rec('constructor'));
    expect((await store.get('constructor'))?.name).toBe('constructor');
    expect((await store.list()).map((r) => r.name)).toEqual(['constructor']);
  });
});

describe('LowdbStore persistence', () => {
  it('survives a reopen, writes its files 0600 and leaves no temp file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    const store = await LowdbStore.open(dir);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(rec(`v${i}`))));
    const again = await LowdbStore.open(dir);
    expect((await again.list()).map((r) => r.name).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `v${i}`).sort());
    for (const f of [STATE_FILE_NAME, JOURNAL_FILE_NAME]) expect((await stat(join(dir, f))).mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).sort()).toEqual([JOURNAL_FILE_NAME, STATE_FILE_NAME]);
  });

  it('acknowledges a change once it is in the journal, and a reopen (as after a crash) replays it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    const store = await LowdbStore.open(dir);
    await store.put(rec('a'));
    await store.put(rec('b'));
    await store.put({ ...rec('a'), mounts: {} });
    await store.delete('b');
    // Nothing reached the snapshot yet: the journal alone holds the four changes, in order.
    expect(JSON.parse(await readFile(join(dir, STATE_FILE_NAME), 'utf8'))).toEqual({ version: 1, volumes: {} });
    expect((await readFile(join(dir, JOURNAL_FILE_NAME), 'utf8')).trimEnd().split('\n').map((l) => Object.keys(JSON.parse(l))[0])).toEqual([
      'put', 'put', 'put', 'delete',
    ]);
    const again = await LowdbStore.open(dir);
    expect(await again.list()).toEqual([{ ...rec('a'), mounts: {} }]);
    // Opening folds the journal into the snapshot and empties it.
    expect(Object.keys(JSON.parse(await readFile(join(dir, STATE_FILE_NAME), 'utf8')).volumes)).toEqual(['a']);
    expect(await readFile(join(dir, JOURNAL_FILE_NAME), 'utf8')).toBe('');
  });

  it('drops an append that a crash cut short, keeping every complete change', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    const store = await LowdbStore.open(dir);
    await store.put(rec('kept'));
    await appendFile(join(dir, JOURNAL_FILE_NAME), '{"put":{"name":"half');
    const again = await LowdbStore.open(dir);
    expect((await again.list()).map((r) => r.name)).toEqual(['kept']);
    await again.put(rec('next')); // appends to a clean journal, not to the torn bytes
    expect((await (await LowdbStore.open(dir)).list()).map((r) => r.name)).toEqual(['kept', 'next']);
  });

  it.each([
    ['not JSON', '{"put":{"name":"x"\n'],
    ['not a change', '{"rename":"a"}\n'],
    ['a bad record', '{"put":{"name":1}}\n'],
  ])('refuses a journal whose complete line is %s, keeping a copy aside', async (_label, bad) => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    const store = await LowdbStore.open(dir);
    await store.put(rec('a'));
    const journal = join(dir, JOURNAL_FILE_NAME);
    await appendFile(journal, bad);
    await store.put(rec('b')); // a good line after the bad one: only a torn end may be skipped
    const content = await readFile(journal, 'utf8');
    await expect(LowdbStore.open(dir)).rejects.toThrow(/volumes\.journal cannot be read: line 2 .*A copy was kept at/);
    const aside = (await readdir(dir)).find((f) => f.startsWith(`${JOURNAL_FILE_NAME}.corrupt-`));
    expect(await readFile(join(dir, aside ?? ''), 'utf8')).toBe(content);
    expect(await readFile(journal, 'utf8')).toBe(content);
  });

  it('folds the journal into the snapshot once it outgrows 1 MiB and the snapshot', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    const store = await LowdbStore.open(dir);
    const big = (i: number): VolumeRecord => ({ ...rec(`v${i % 10}`), options: { sshcmd: 'u@h:/p', password: 'x'.repeat(4096) } });
    for (let i = 0; i < 600; i++) await store.put(big(i)); // about 2.5 MiB of changes to 10 volumes
    const journalBytes = (await stat(join(dir, JOURNAL_FILE_NAME))).size;
    expect(journalBytes).toBeGreaterThan(0);
    expect(journalBytes).toBeLessThanOrEqual((1 << 20) + 5000);
    expect(Object.keys(JSON.parse(await readFile(join(dir, STATE_FILE_NAME), 'utf8')).volumes)).toHaveLength(10);
    expect((await (await LowdbStore.open(dir)).list()).map((r) => r.name).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`));
  });

  it('undoes a change it could not save, and saves the whole state with the next one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    const store = await LowdbStore.open(dir);
    await store.put(rec('a'));
    const journal = join(dir, JOURNAL_FILE_NAME);
    await rm(journal);
    await mkdir(journal); // appending now fails (EISDIR)
    await expect(store.put({ ...rec('a'), mounts: {} })).rejects.toThrow();
    await expect(store.put(rec('b'))).rejects.toThrow(); // no journal, and no snapshot can empty it
    await expect(store.delete('a')).rejects.toThrow();
    expect(await store.list()).toEqual([rec('a')]); // what it answers matches what it saved
    await rm(journal, { recursive: true });
    await store.put(rec('c'));
    expect((await readdir(dir)).sort()).toEqual([JOURNAL_FILE_NAME, STATE_FILE_NAME]);
    expect((await (await LowdbStore.open(dir)).list()).map((r) => r.name)).toEqual(['a', 'c']);
  });

  it('removes temp files that a killed run left mid-write, keeping the committed state', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    const store = await LowdbStore.open(dir);
    await store.put(rec('kept'));
    // What a SIGKILL between open() and rename() of another process leaves behind.
    await writeFile(join(dir, `${STATE_FILE_NAME}.tmp-999999`), '{"version":1,"volu');
    await writeFile(join(dir, 'unrelated.tmp-1'), 'not ours');
    const again = await LowdbStore.open(dir);
    expect((await again.list()).map((r) => r.name)).toEqual(['kept']);
    expect((await readdir(dir)).sort()).toEqual(['unrelated.tmp-1', JOURNAL_FILE_NAME, STATE_FILE_NAME]);
  });

  it.each([
    ['not JSON', '{"version":1,"volu'],
    ['the wrong shape', '{"version":2,"volumes":[]}'],
    ['a bad record', '{"version":1,"volumes":{"a":{"name":1}}}'],
  ])('refuses a state file that is %s, keeping a copy aside', async (_label, content) => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    await writeFile(join(dir, STATE_FILE_NAME), content);
    await expect(LowdbStore.open(dir)).rejects.toThrow(StateFileCorruptError);
    await expect(LowdbStore.open(dir)).rejects.toThrow(/cannot be read: .*A copy was kept at/);
    const files = await readdir(dir);
    const aside = files.find((f) => f.startsWith(`${STATE_FILE_NAME}.corrupt-`));
    expect(aside).toBeDefined();
    expect(await readFile(join(dir, aside ?? ''), 'utf8')).toBe(content);
    expect(await readFile(join(dir, STATE_FILE_NAME), 'utf8')).toBe(content); // never replaced by an empty state
  });
});

describe('JournalFile on a full filesystem', () => {
  it('cuts a failed append off again: complete lines of a batch reported as failed never come back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    try {
      const journal = new JournalFile(join(dir, 'j'), (c: unknown): c is { n: string } => typeof c === 'object');
      await journal.append([{ n: 'first' }]);
      // Fill every other block: the journal's own last block still has room for a short line, not for a long one.
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=4k'], { stdio: 'ignore' });
      } catch {
        // "No space left on device"
      }
      await expect(journal.append([{ n: 'short' }, { n: 'x'.repeat(16_384) }])).rejects.toThrow(/ENOSPC/);
      const reread = new JournalFile(join(dir, 'j'), (c: unknown): c is { n: string } => typeof c === 'object');
      expect((await reread.read()).changes).toEqual([{ n: 'first' }]);
    } finally {
      execFileSync('umount', [dir]);
    }
  });
});
