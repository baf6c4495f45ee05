// The stall watch (handlers/stall-watch.ts) with the simulated mount table: both sides of "stalled".
import { describe, expect, it } from 'vitest';
import { create, get, mount } from '../../adapter/docker/routes.js';
import { createStallWatch } from '../../handlers/stall-watch.js';
import { makeDeps, type TestDeps } from './fixtures.js';

const MP = '/mnt/volumes/v';

async function mounted(opts: Record<string, string> = {}): Promise<{ deps: TestDeps; clock: { ms: number }; pid: number }> {
  const deps = makeDeps();
  const clock = { ms: Date.parse('2026-01-02T03:04:05.000Z') };
  deps.now = () => new Date(clock.ms);
  expect(await create({ Name: 'v', Opts: { sshcmd: 'u@h:/p', ...opts } }, deps)).toEqual({ Err: '' });
  expect((await mount({ Name: 'v', ID: 'a' }, deps)).Err).toBe('');
  const pid = (await deps.store.get('v'))?.sshfs?.pid ?? -1;
  return { deps, clock, pid };
}

describe('stall watch', () => {
  it('aborts a mount whose requests wait without a byte from the server for stall_timeout, and says so in Status', async () => {
    const { deps, clock, pid } = await mounted({ stall_timeout: '10' });
    const watch = createStallWatch(deps);
    deps.mounts.waiting.set(MP, 3);
    deps.mounts.bytesRead.set(pid, 5_000);
    for (let s = 0; s < 10; s += 2) {
      await watch.check();
      clock.ms += 2_000;
    }
    // 8 s of silence so far: still waiting.
    expect(deps.mounts.aborted).toEqual([]);
    clock.ms += 2_000;
    await watch.check();
    expect(deps.mounts.aborted).toEqual([MP]);
    expect(deps.mounts.running.has(pid)).toBe(false); // its sshfs ended too
    const status = (await get({ Name: 'v' }, deps)).Volume?.Status;
    expect(status).toMatchObject({ connection: expect.stringMatching(/^stalled: requests waited 10 s/), stalledAt: '2026-01-02T03:04:17.000Z' });
    // The next Mount mounts afresh, and the stall is history.
    expect((await mount({ Name: 'v', ID: 'b' }, deps)).Err).toBe('');
    expect(deps.runner.calls.filter((c) => c.program === 'sshfs')).toHaveLength(2);
    expect((await get({ Name: 'v' }, deps)).Volume?.Status).not.toHaveProperty('stalledAt');
  });

  it('never aborts a slow transfer that still reads bytes, nor an idle mount, nor with stall_timeout=0', async () => {
    const slow = await mounted({ stall_timeout: '4' });
    const watch = createStallWatch(slow.deps);
    slow.deps.mounts.waiting.set(MP, 5);
    for (let s = 0; s < 60; s += 2) {
      slow.deps.mounts.bytesRead.set(slow.pid, 1_000 + s); // a few bytes every look: slow, but moving
      await watch.check();
      slow.clock.ms += 2_000;
    }
    expect(slow.deps.mounts.aborted).toEqual([]);

    const idle = await mounted({ stall_timeout: '4' });
    const idleWatch = createStallWatch(idle.deps);
    idle.deps.mounts.waiting.set(MP, 0); // nothing asked of the server: no answer is due
    for (let s = 0; s < 60; s += 2) {
      await idleWatch.check();
      idle.clock.ms += 2_000;
    }
    expect(idle.deps.mounts.aborted).toEqual([]);

    const hard = await mounted({ stall_timeout: '0' });
    const hardWatch = createStallWatch(hard.deps);
    hard.deps.mounts.waiting.set(MP, 5);
    for (let s = 0; s < 600; s += 2) {
      await hardWatch.check();
      hard.clock.ms += 2_000;
    }
    expect(hard.deps.mounts.aborted).toEqual([]);
  });

  it('uses the default of 60 s, and sees nothing (and says so once) where fusectl is not mounted', async () => {
    const { deps, clock, pid } = await mounted();
    const watch = createStallWatch(deps);
    deps.mounts.bytesRead.set(pid, 7);
    await watch.check();
    await watch.check();
    expect(deps.logs.filter((l) => l.includes('fusectl is not mounted'))).toHaveLength(1);
    deps.mounts.waiting.set(MP, 1);
    await watch.check();
    clock.ms += 58_000;
    await watch.check();
    expect(deps.mounts.aborted).toEqual([]);
    clock.ms += 2_000;
    await watch.check();
    expect(deps.mounts.aborted).toEqual([MP]);
  });
});
