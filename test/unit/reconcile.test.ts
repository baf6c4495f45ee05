import { describe, expect, it } from 'vitest';
import { create, get, mount, unmount } from '../../handlers/index.js';
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
  it('adopts live mounts, remounts lost ones, removes orphans, and keeps the references', async () => {
    const deps = await world();
    const report = await reconcile(deps);
    for (const list of Object.values(report)) list.sort();
    expect(report).toEqual({
      adopted: ['live'],
      remounted: ['gone', 'stale'],
      unmounted: ['/mnt/volumes/orphan', '/mnt/volumes/removed-volume'],
      failed: [],
    });
    expect([...deps.runner.mounted].sort()).toEqual(['/mnt/volumes/gone', '/mnt/volumes/live', '/mnt/volumes/stale']);
    expect(deps.runner.stale.size).toBe(0);
    for (const name of ['live', 'stale', 'gone']) expect((await deps.store.get(name))?.mounts).toEqual({ [`${name}-id`]: 1 });
    // never two mounts on one mountpoint: live was not mounted again
    expect(deps.runner.calls.filter((c) => c.program === 'sshfs').map((c) => c.args[1]).sort()).toEqual(['/mnt/volumes/gone', '/mnt/volumes/stale']);
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

  it('keeps the references and records the error when a remount fails', async () => {
    const deps = await world();
    deps.runner.script = (c) => (c.program === 'sshfs' ? { exitCode: 1, stderr: 'ssh: connect to host h port 22: Connection refused' } : undefined);
    const report = await reconcile(deps);
    expect(report.failed.sort()).toEqual(['gone', 'stale']);
    expect((await deps.store.get('gone'))?.mounts).toEqual({ 'gone-id': 1 });
    expect((await get({ Name: 'gone' }, deps)).Volume?.Status).toMatchObject({ mounted: false, lastError: expect.stringMatching(/Connection refused/) });
    // The next Mount tries again.
    deps.runner.script = () => undefined;
    expect((await mount({ Name: 'gone', ID: 'new' }, deps)).Err).toBe('');
  });
});
