import { describe, expect, it } from 'vitest';
import { create, get, mount, remove } from '../../adapter/docker/routes.js';
import { INHERITED_CHECK_MS, releaseUnusedInherited } from '../../handlers/inherited.js';
import { reconcile } from '../../handlers/reconcile.js';
import { makeDeps, unmount } from './fixtures.js';

const opts = { sshcmd: 'u@h:/p' };

async function world() {
  const deps = makeDeps();
  for (const name of ['live', 'stale', 'gone', 'orphan', 'idle']) {
    expect(await create({ Name: name, Opts: opts }, deps)).toEqual({ Err: '' });
  }
  for (const name of ['live', 'stale', 'gone']) await mount({ Name: name, ID: `${name}-id` }, deps);
  deps.mounts.stale.add('/mnt/volumes/stale'); // its sshfs was killed
  deps.mounts.mounted.delete('/mnt/volumes/gone'); // the plugin's namespace died with it
  deps.mounts.mounted.add('/mnt/volumes/orphan'); // mounted, but no reference survived
  deps.mounts.mounted.add('/mnt/volumes/removed-volume'); // no volume at all
  deps.runner.calls.length = 0;
  return deps;
}

describe('reconcile at start', () => {
  it('adopts live mounts with their references, removes orphans, and releases references whose mount is gone', async () => {
    const deps = await world();
    const report = await reconcile(deps);
    for (const list of Object.values(report)) list.sort();
    expect(report).toEqual({
      adopted: ['live'],
      released: ['gone', 'stale'],
      unmounted: ['/mnt/volumes/orphan', '/mnt/volumes/removed-volume'],
      failed: [],
    });
    // The dead mount is detached; nothing is mounted for a reference that may have been lost.
    expect([...deps.mounts.mounted].sort()).toEqual(['/mnt/volumes/live']);
    expect(deps.runner.calls.filter((c) => c.program === 'sshfs')).toEqual([]);
    expect((await deps.store.get('live'))?.mounts).toEqual({ 'live-id': 1 });
    for (const name of ['stale', 'gone']) expect((await deps.store.get(name))?.mounts).toEqual({});
    expect((await get({ Name: 'gone' }, deps)).Volume?.Status).toMatchObject({ mounted: false, references: 0 });
    // The next Mount mounts it, once; a late Unmount of the released ID is answered OK and changes nothing.
    expect((await mount({ Name: 'gone', ID: 'next' }, deps)).Err).toBe('');
    expect(deps.runner.calls.filter((c) => c.program === 'sshfs').map((c) => c.args[1])).toEqual(['/mnt/volumes/gone']);
    expect(await unmount({ Name: 'gone', ID: 'gone-id' }, deps)).toEqual({ Err: '' });
    expect((await deps.store.get('gone'))?.mounts).toEqual({ next: 1 });
  });

  it('a reference whose Unmount was lost pins nothing: not mounted at start, removable', async () => {
    const deps = makeDeps();
    await create({ Name: 'lost', Opts: opts }, deps);
    await mount({ Name: 'lost', ID: 'exited-container' }, deps);
    deps.mounts.stale.add('/mnt/volumes/lost'); // the plugin and its sshfs died before the Unmount was recorded
    await reconcile(deps);
    expect(await deps.mounts.state('/mnt/volumes/lost')).toBe('absent');
    expect(await remove({ Name: 'lost' }, deps)).toEqual({ Err: '' });
    expect(await deps.store.get('lost')).toBeUndefined();
  });

  describe('a live mount adopted with references from before the restart (host mode: sshfs outlived the plugin)', () => {
    async function adopted() {
      const deps = makeDeps();
      await create({ Name: 'v', Opts: opts }, deps);
      await mount({ Name: 'v', ID: 'running' }, deps);
      await mount({ Name: 'v', ID: 'lost' }, deps); // its Unmount reached the plugin as it was killed
      deps.mounts.users.set('/mnt/volumes/v', 1); // the running container's bind
      const report = await reconcile(deps);
      expect(report.adopted).toEqual(['v']);
      return deps;
    }

    it('keeps them while a container holds the mount, and looks again later', async () => {
      const deps = await adopted();
      expect(deps.timers.pending.get('inherited:v')?.ms).toBe(INHERITED_CHECK_MS);
      await releaseUnusedInherited('v', deps);
      expect((await deps.store.get('v'))?.mounts).toEqual({ running: 1, lost: 1 });
      expect(deps.timers.pending.has('inherited:v')).toBe(true);
    });

    it('drops them once no mount namespace holds the mount, and unmounts when none is left', async () => {
      const deps = await adopted();
      expect(await unmount({ Name: 'v', ID: 'running' }, deps)).toEqual({ Err: '' });
      expect(await deps.mounts.state('/mnt/volumes/v')).toBe('mounted'); // pinned by the lost one...
      deps.mounts.users.set('/mnt/volumes/v', 0); // ...the container is gone
      await releaseUnusedInherited('v', deps);
      expect((await deps.store.get('v'))?.mounts).toEqual({});
      expect(await deps.mounts.state('/mnt/volumes/v')).toBe('absent');
      expect(deps.timers.pending.has('inherited:v')).toBe(false);
      expect(deps.logs.join('\n')).toMatch(/dropped 1 reference\(s\) from before the plugin restarted whose Unmount never came; unmounting/);
    });

    it('never drops a reference taken after the restart', async () => {
      const deps = await adopted();
      await mount({ Name: 'v', ID: 'new' }, deps); // its container may not hold the mount yet
      deps.mounts.users.set('/mnt/volumes/v', 0);
      await releaseUnusedInherited('v', deps);
      expect((await deps.store.get('v'))?.mounts).toEqual({ new: 1 });
      expect(await deps.mounts.state('/mnt/volumes/v')).toBe('mounted');
    });

    it('leaves them to Remove when the mounts of other namespaces cannot be seen (managed plugin)', async () => {
      const deps = makeDeps();
      await create({ Name: 'v', Opts: opts }, deps);
      await mount({ Name: 'v', ID: 'lost' }, deps);
      await reconcile(deps); // users unknown
      await releaseUnusedInherited('v', deps);
      expect(deps.timers.pending.has('inherited:v')).toBe(false);
      expect((await deps.store.get('v'))?.mounts).toEqual({ lost: 1 });
      expect(await deps.mounts.state('/mnt/volumes/v')).toBe('mounted');
    });
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
    deps.mounts.mounted.delete('/mnt/volumes/lingering'); // the plugin's namespace died with it
    await reconcile(deps);
    expect((await deps.store.get('lingering'))?.idleUntil).toBeUndefined();
    expect(deps.timers.pending.size).toBe(0);
  });

  it('keeps the references and records the error when a dead mount cannot be detached', async () => {
    const deps = await world();
    deps.runner.script = (c) => (c.program === 'fusermount3' ? { exitCode: 1, stderr: 'fusermount3: Device or resource busy' } : undefined);
    const report = await reconcile(deps);
    expect(report.failed).toContain('stale');
    expect((await deps.store.get('stale'))?.mounts).toEqual({ 'stale-id': 1 });
    expect((await get({ Name: 'stale' }, deps)).Volume?.Status).toMatchObject({ lastError: expect.stringMatching(/busy/) });
  });
});
