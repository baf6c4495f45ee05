// The stall watch (handlers/stall-watch.ts) with the simulated mount table: both sides of "stalled". Only an answer to
// the watch's own probe counts as the server answering; new requests, and bytes read by sshfs, never do.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createHostView } from '../../adapter/deps.js';
import { create, get, mount } from '../../adapter/docker/routes.js';
import { FakeRunner } from '../../adapter/fakes/fake-runner.js';
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

describe("the answers' bytes in /proc (adapter/host/processes.ts)", () => {
  /** /proc/<pid>/stat with field 22 (start time in ticks). */
  const stat = (ticks: number, comm = 'sshfs') => `10 (${comm}) S 1 10 10 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 5 0 ${ticks} 12345678 100 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0`;

  it("counts the server's answers sshfs reads from ssh, never the new requests its FUSE threads read from /dev/fuse", async () => {
    const proc = await mkdtemp(join(tmpdir(), 'proc-'));
    const readNr = process.arch === 'arm64' ? 63 : 0; // read(2)
    await mkdir(join(proc, '10', 'fd'), { recursive: true });
    await writeFile(join(proc, '10', 'stat'), stat(1_000, 'sshfs'));
    await symlink('/dev/fuse', join(proc, '10', 'fd', '3'));
    await symlink('socket:[4242]', join(proc, '10', 'fd', '4'));
    const thread = async (tid: number, syscall: string, rchar: number, ticks = 1_000) => {
      await mkdir(join(proc, '10', 'task', String(tid)), { recursive: true });
      await writeFile(join(proc, '10', 'task', String(tid), 'stat'), stat(ticks, 'sshfs'));
      await writeFile(join(proc, '10', 'task', String(tid), 'syscall'), `${syscall}\n`);
      await writeFile(join(proc, '10', 'task', String(tid), 'io'), `rchar: ${rchar}\nwchar: 0\n`);
    };
    await thread(10, '202 0x7ffcc37f0838 0x189 0x0 0x0 0x0 0xf 0x7ffc 0x7f90', 7_000); // main: futex
    await thread(11, `${readNr} 0x3 0x7f90ab345010 0x101000 0x0 0x0 0x0 0x7ffc 0x7f90`, 300); // a FUSE worker
    await thread(12, `${readNr} 0x4 0x7f90a0000cf0 0x5 0x0 0x0 0x0 0x7ffc 0x7f90`, 5_000); // the answers' reader
    const table = createHostView(new FakeRunner(), proc).processes;
    const sshfs = { pid: 10, startTicks: 1_000 };
    expect(await table.answersRead(sshfs)).toBe(5_000);
    // Something touches the mount: the workers read new requests; the answers' reader is busy now (running).
    await thread(11, `${readNr} 0x3 0x7f90ab345010 0x101000 0x0 0x0 0x0 0x7ffc 0x7f90`, 90_000);
    await thread(13, `${readNr} 0x3 0x7f90ab345010 0x101000 0x0 0x0 0x0 0x7ffc 0x7f90`, 4_000, 1_100);
    await thread(12, 'running', 5_000);
    expect(await table.answersRead(sshfs)).toBe(5_000); // known from before, its own bytes only
    await thread(12, 'running', 6_500);
    expect(await table.answersRead(sshfs)).toBe(6_500);
    // Its tid now names another thread (started later): not counted; none left, so nothing can be told.
    await thread(12, `${readNr} 0x3 0x7f90ab345010 0x101000 0x0 0x0 0x0 0x7ffc 0x7f90`, 99_000, 2_000);
    expect(await table.answersRead(sshfs)).toBeUndefined();
    // A thread whose syscall cannot be read (a policy hides it) is never taken for the reader.
    await rm(join(proc, '10', 'task', '12', 'syscall'));
    expect(await table.answersRead(sshfs)).toBeUndefined();
    expect(await table.answersRead({ pid: 10, startTicks: 999 })).toBeUndefined(); // not that sshfs
  });
});
