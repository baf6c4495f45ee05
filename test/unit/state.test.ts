import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VolumeRecord } from '../../handlers/types.js';
import { StateFileCorruptError } from '../../state/atomic-json-file.js';
import { LowdbStore, STATE_FILE_NAME } from '../../state/lowdb-store.js';
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
  it('survives a reopen, writes the file 0600 and leaves no temp file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sshfs-state-'));
    const store = await LowdbStore.open(dir);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(rec(`v${i}`))));
    const again = await LowdbStore.open(dir);
    expect((await again.list()).map((r) => r.name).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `v${i}`).sort());
    expect((await stat(join(dir, STATE_FILE_NAME))).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual([STATE_FILE_NAME]);
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
    expect((await readdir(dir)).sort()).toEqual(['unrelated.tmp-1', STATE_FILE_NAME]);
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
