import { describe, expect, it } from 'vitest';
import { create, get, mount, remove, unmount } from '../../handlers/index.js';
import { reconcile } from '../../handlers/reconcile.js';
import { makeDeps } from './fixtures.js';

const opts = { sshcmd: 'u@h:/p' };

async function world() {
  const deps = makeDeps();
  for (const name of ['live', 'stale', 'gone', 'orphan', 'idle']) {
    expect(await create({ Name: name, Opts: opts }, deps)).toEqual({ Err: '' });
  }
  for (const name of ['live', 'stale', 'gone']) await mount({ Name: name, ID: `${name}-id` }, deps);
  deps.runner.stale.add('/mnt/volumes/stale'); // its sshfs was killed
  deps.runner.mounted.delete('/mnt/volumes/gone'); // the plugin's namespace died with it
  deps.runner.mounted.add('/mnt/volumes/orphan'); // mounted, but no reference survived
  deps.runner.mounted.add('/mnt/volumes/removed-volume'); // no volume at all
  deps.runner.calls.length = 0;
  return deps;
}

describe('reconcile at start', () => {
  it('adopts live mounts, removes orphans, keeps the references, and does not mount again what is gone', async () => {
    const deps = await world();
    const report = await reconcile(deps);
    for (const list of Object.values(report)) list.sort();
    expect(report).toEqual({
      adopted: ['live'],
      waiting: ['gone', 'stale'],
      unmounted: ['/mnt/volumes/orphan', '/mnt/volumes/removed-volume'],
      failed: [],
    });
    // The dead mount is detached; nothing is mounted for a reference that may have been lost.
    expect([...deps.runner.mounted].sort()).toEqual(['/mnt/volumes/live']);
    expect(deps.runner.calls.filter((c) => c.program === 'sshfs')).toEqual([]);
    for (const name of ['live', 'stale', 'gone']) expect((await deps.store.get(name))?.mounts).toEqual({ [`${name}-id`]: 1 });
    expect((await get({ Name: 'gone' }, deps)).Volume?.Status).toMatchObject({ mounted: false, references: 1 });
    // The next Mount mounts it, once.
    expect((await mount({ Name: 'gone', ID: 'next' }, deps)).Err).toBe('');
    expect(deps.runner.calls.filter((c) => c.program === 'sshfs').map((c) => c.args[1])).toEqual(['/mnt/volumes/gone']);
  });

  it('a reference whose Unmount was lost pins nothing: not mounted at start, dropped at Remove', async () => {
    const deps = makeDeps();
    await create({ Name: 'lost', Opts: opts }, deps);
    await mount({ Name: 'lost', ID: 'exited-container' }, deps);
    deps.runner.mounted.delete('/mnt/volumes/lost'); // the plugin died before it could answer the Unmount
    await reconcile(deps);
    expect(await deps.mounts.state('/mnt/volumes/lost')).toBe('absent');
    expect(await remove({ Name: 'lost' }, deps)).toEqual({ Err: '' });
    expect(await deps.store.get('lost')).toBeUndefined();
  });

  it('arms a delayed unmount again with the time it had left', async () => {
    const deps = makeDeps();
    await create({ Name: 'lingering', Opts: { ...opts, unmount_delay: '60' } }, deps);
    await mount({ Name: 'lingering', ID: 'x' }, deps);
    await unmount({ Name: 'lingering', ID: 'x' }, deps);
    deps.timers.pending.clear(); // the plugin stopped
    deps.now = () => new Date('2026-01-02T03:04:25.000Z'); // 20 s later
    const report = await reconcile(deps);
    expect(report.adopted).toEqual(['lingering']);
    expect(deps.timers.pending.get('lingering')?.ms).toBe(40_000);
    expect(await deps.mounts.state('/mnt/volumes/lingering')).toBe('mounted');
  });

  it('forgets a delayed unmount whose mount is gone', async () => {
    const deps = makeDeps();
    await create({ Name: 'lingering', Opts: { ...opts, unmount_delay: '60' } }, deps);
    await mount({ Name: 'lingering', ID: 'x' }, deps);
    await unmount({ Name: 'lingering', ID: 'x' }, deps);
    deps.timers.pending.clear();
    deps.runner.mounted.delete('/mnt/volumes/lingering'); // the plugin's namespace died with it
    await reconcile(deps);
    expect((await deps.store.get('lingering'))?.idleUntil).toBeUndefined();
    expect(deps.timers.pending.size).toBe(0);
  });

  it('keeps the references and records the error when the dead mount cannot be detached', async () => {
    const deps = await world();
    deps.runner.script = (c) => (c.program === 'fusermount3' ? { exitCode: 1, stderr: 'fusermount3: Device or resource busy' } : undefined);
    const report = await reconcile(deps);
    expect(report.failed).toContain('stale');
    expect((await deps.store.get('stale'))?.mounts).toEqual({ 'stale-id': 1 });
    expect((await get({ Name: 'stale' }, deps)).Volume?.Status).toMatchObject({ lastError: expect.stringMatching(/busy/) });
  });
});
