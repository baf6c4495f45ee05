// The stall watch (handlers/stall-watch.ts) with the simulated mount table: both sides of "stalled". Only an answer to
// the watch's own probe counts as the server answering; new requests, and bytes read by sshfs, never do.
import { describe, expect, it } from 'vitest';
import { create, get, mount } from '../../adapter/docker/routes.js';
import { createStallWatch, STALL_PROBE_PREFIX } from '../../handlers/stall-watch.js';
import { makeDeps, type TestDeps } from './fixtures.js';

const MP = '/mnt/volumes/v';

async function mounted(opts: Record<string, string> = {}): Promise<{ deps: TestDeps; clock: { ms: number }; pid: number }> {
  const deps = makeDeps();
  const clock = { ms: Date.parse('2026-01-02T03:04:05.000Z') };
  deps.now = () => new Date(clock.ms);
  expect(await create({ Name: 'v', Opts: { sshcmd: 'u@h:/p', ...opts } }, deps)).toEqual({ Err: '' });
  expect((await mount({ Name: 'v', ID: 'a' }, deps)).Err).toBe('');
  const pid = (await deps.store.get('v'))?.sshfs?.pid ?? -1;
  deps.mounts.probed.length = 0; // the Mount's own check of the fresh mount
  return { deps, clock, pid };
}

/** Lets the probes' answers (promise callbacks) land before the next look, as 2 s between real looks do. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** The watch's looks every 2 s for `seconds`, with `between` run before each look. */
async function looks(watch: { check(): Promise<void> }, clock: { ms: number }, seconds: number, between: (s: number) => void = () => {}) {
  for (let s = 0; s < seconds; s += 2) {
    between(s);
    await watch.check();
    await settle();
    clock.ms += 2_000;
  }
}

const stallProbes = (deps: TestDeps) => deps.mounts.probed.filter((p) => p.startsWith(`${MP}/${STALL_PROBE_PREFIX}`));

describe('stall watch', () => {
  it('aborts a mount whose probe stays unanswered for stall_timeout while requests wait, and says so in Status', async () => {
    const { deps, clock, pid } = await mounted({ stall_timeout: '10' });
    const watch = createStallWatch(deps);
    deps.mounts.waiting.set(MP, 3);
    deps.mounts.heldProbes.add(MP); // the server answers nothing
    await looks(watch, clock, 10);
    // 8 s since the probe went out: still waiting, and still one probe (never a second while one waits).
    expect(deps.mounts.aborted).toEqual([]);
    expect(stallProbes(deps)).toHaveLength(1);
    expect(deps.mounts.heldProbeCount(MP)).toBe(1);
    await watch.check();
    expect(deps.mounts.aborted).toEqual([MP]);
    expect(deps.mounts.running.has(pid)).toBe(false); // its sshfs ended too
    expect(deps.mounts.heldProbeCount(MP)).toBe(0); // the abort answered the probe (in the real mount: freed its thread)
    expect(deps.logs.some((l) => /volume v: 3 request\(s\) waited, with no answer from the server .* for 10 s/.test(l))).toBe(true);
    const status = (await get({ Name: 'v' }, deps)).Volume?.Status;
    expect(status).toMatchObject({ connection: expect.stringMatching(/^stalled: requests waited 10 s/), stalledAt: '2026-01-02T03:04:15.000Z' });
    // The next Mount mounts afresh (on a server that answers again), and the stall is history.
    deps.mounts.heldProbes.delete(MP);
    expect((await mount({ Name: 'v', ID: 'b' }, deps)).Err).toBe('');
    expect(deps.runner.calls.filter((c) => c.program === 'sshfs')).toHaveLength(2);
    expect((await get({ Name: 'v' }, deps)).Volume?.Status).not.toHaveProperty('stalledAt');
  });

  it('is not put off by new requests arriving or bytes read while the probe waits (something touching the mount)', async () => {
    const { deps, clock } = await mounted({ stall_timeout: '6' });
    const watch = createStallWatch(deps);
    deps.mounts.heldProbes.add(MP);
    // A health check or a stat loop: a new request every look (each one bytes that sshfs reads from /dev/fuse).
    await looks(watch, clock, 6, (s) => deps.mounts.waiting.set(MP, 1 + s));
    expect(deps.mounts.aborted).toEqual([]);
    deps.mounts.waiting.set(MP, 9);
    await watch.check();
    expect(deps.mounts.aborted).toEqual([MP]); // 6 s after the one probe, however much else moved
    expect(stallProbes(deps)).toHaveLength(1);
  });

  it('never aborts while the probes are answered: a slow transfer that still moves, however long it takes', async () => {
    const { deps, clock } = await mounted({ stall_timeout: '4' });
    const watch = createStallWatch(deps);
    deps.mounts.waiting.set(MP, 5);
    deps.mounts.heldProbes.add(MP);
    // Each probe waits behind the reads asked before it and is answered 2 s later, within stall_timeout.
    await looks(watch, clock, 120, (s) => {
      if (s % 4 === 2) deps.mounts.answerProbes(MP);
    });
    expect(deps.mounts.aborted).toEqual([]);
    expect(stallProbes(deps).length).toBeGreaterThan(20); // a new probe after each answer, while requests wait
    // Probes answered at once (a fast server): never aborted either.
    deps.mounts.heldProbes.delete(MP);
    deps.mounts.answerProbes(MP);
    await looks(watch, clock, 60);
    expect(deps.mounts.aborted).toEqual([]);
  });

  it("counts the server's answers to earlier requests while the probe waits behind them, and aborts once they stop", async () => {
    const { deps, clock, pid } = await mounted({ stall_timeout: '4' });
    const watch = createStallWatch(deps);
    deps.mounts.waiting.set(MP, 12);
    deps.mounts.heldProbes.add(MP); // the probe waits behind 60 s of big reads
    deps.mounts.answerBytes.set(pid, 0);
    await looks(watch, clock, 60, (s) => deps.mounts.answerBytes.set(pid, 64 * 1024 * s)); // a slow read, answered
    expect(deps.mounts.aborted).toEqual([]);
    expect(stallProbes(deps)).toHaveLength(1);
    // The last answer was seen at the last look, 2 s ago; the server stops there. New requests keep coming (they never
    // show in the answers' bytes).
    await looks(watch, clock, 2, () => deps.mounts.waiting.set(MP, 13));
    expect(deps.mounts.aborted).toEqual([]);
    await watch.check();
    expect(deps.mounts.aborted).toEqual([MP]); // 4 s after the last answer
  });

  it('never probes an idle mount (nothing waiting), and does nothing with stall_timeout=0', async () => {
    const idle = await mounted({ stall_timeout: '4' });
    const idleWatch = createStallWatch(idle.deps);
    idle.deps.mounts.waiting.set(MP, 0); // nothing asked of the server: no answer is due
    idle.deps.mounts.heldProbes.add(MP);
    await looks(idleWatch, idle.clock, 60);
    expect(idle.deps.mounts.probed).toEqual([]);
    expect(idle.deps.mounts.aborted).toEqual([]);

    const hard = await mounted({ stall_timeout: '0' });
    const hardWatch = createStallWatch(hard.deps);
    hard.deps.mounts.waiting.set(MP, 5);
    hard.deps.mounts.heldProbes.add(MP);
    await looks(hardWatch, hard.clock, 600);
    expect(hard.deps.mounts.probed).toEqual([]);
    expect(hard.deps.mounts.aborted).toEqual([]);
  });

  it('counts an error from the mount as an answer, and a probe whose own time ran out as none', async () => {
    const { deps, clock } = await mounted({ stall_timeout: '4' });
    const watch = createStallWatch(deps);
    deps.mounts.waiting.set(MP, 2);
    deps.mounts.heldProbes.add(MP);
    await looks(watch, clock, 2);
    deps.mounts.answerProbes(MP, { ok: false, timedOut: false, error: 'EIO' }); // an answer, if not a happy one
    await settle();
    await looks(watch, clock, 4);
    expect(deps.mounts.aborted).toEqual([]);
    expect(stallProbes(deps)).toHaveLength(2);
    // A probe whose own time ran out is no answer.
    deps.mounts.heldProbes.delete(MP);
    deps.mounts.unanswered.add(MP);
    deps.mounts.answerProbes(MP, { ok: false, timedOut: true });
    await settle();
    await looks(watch, clock, 4);
    await watch.check();
    expect(deps.mounts.aborted).toEqual([MP]);
  });

  it('uses the default of 60 s, and sees nothing (and says so once) where fusectl is not mounted', async () => {
    const { deps, clock } = await mounted();
    const watch = createStallWatch(deps);
    deps.mounts.heldProbes.add(MP);
    await watch.check();
    await watch.check();
    expect(deps.logs.filter((l) => l.includes('fusectl is not mounted'))).toHaveLength(1);
    expect(deps.mounts.probed).toEqual([]);
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
