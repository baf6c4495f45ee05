import { describe, expect, it } from 'vitest';
import { create, mount } from '../../handlers/index.js';
import { markStep, startMountSteps, timeStep } from '../../handlers/mount-steps.js';
import type { Logger, VolumeRecord } from '../../handlers/types.js';
import { makeDeps } from './fixtures.js';

/** A clock that moves only when told: each read returns the next of TIMES. */
function steppedClock(...times: number[]): () => number {
  let i = 0;
  return () => times[Math.min(i++, times.length - 1)] ?? NaN;
}

function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, debug: (m) => lines.push(`debug ${m}`), info: (m) => lines.push(`info ${m}`), error: (m) => lines.push(`error ${m}`) };
}

const record = (name: string): VolumeRecord => ({ name, createdAt: '', options: {}, mountpoint: `/mnt/${name}`, mounts: {} });

describe('the Mount step timer', () => {
  it('logs each step with its own duration, then the total, at debug level', () => {
    const log = capture();
    const steps = startMountSteps('v', log, steppedClock(10, 10.1, 10.4, 95.4, 96.4));
    const rec = record('v');
    steps.mark('lock');
    steps.mark('store', rec);
    markStep(rec, 'sshfs'); // through the record, as lifecycle.ts marks
    markStep(record('v'), 'elsewhere'); // another request's record: not this Mount's
    steps.mark('journal');
    expect(steps.done()).toBe('volume v mount steps: lock 0.1 ms, store 0.3, sshfs 85.0, journal 1.0, total 86.4');
    expect(log.lines).toEqual(['debug volume v mount steps: lock 0.1 ms, store 0.3, sshfs 85.0, journal 1.0, total 86.4']);
  });

  it('times work the Mount does not wait for on a line of its own, also when it fails', async () => {
    const log = capture();
    const rec = record('w');
    startMountSteps('w', log, steppedClock(0)).mark('store', rec);
    await expect(timeStep(rec, 'read-ahead', async () => 7, log, steppedClock(5, 7.5))).resolves.toBe(7);
    await expect(timeStep(rec, 'read-ahead', async () => { throw new Error('no /sys'); }, log, steppedClock(1, 2))).rejects.toThrow('no /sys');
    await timeStep(record('w'), 'read-ahead', async () => 1, log); // not tied to a Mount (start-up recovery): no line
    expect(log.lines).toEqual([
      'debug volume w mount step read-ahead (not awaited by the Mount): 2.5 ms',
      'debug volume w mount step read-ahead (not awaited by the Mount): 1.0 ms',
    ]);
  });

  it('names every step of a cold Mount in order, and the few of a Mount that finds the volume mounted', async () => {
    const deps = makeDeps();
    expect(await create({ Name: 'vol1', Opts: { sshcmd: 'alice@files.example.com:/srv/data' } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await mount({ Name: 'vol1', ID: 'b' }, deps);
    await new Promise((resolve) => setTimeout(resolve, 0)); // the read-ahead settles after the answer
    const lines = deps.logs.filter((l) => l.includes('mount steps:'));
    const names = (line: string) => [...line.replace(/^.*mount steps: /, '').matchAll(/([a-z-]+) [0-9.]+/g)].map((m) => m[1]);
    expect(lines).toHaveLength(2);
    expect(names(lines[0] ?? '')).toEqual(['lock', 'store', 'state', 'prepare', 'shared-login', 'sshfs', 'check', 'journal', 'total']);
    expect(names(lines[1] ?? '')).toEqual(['lock', 'store', 'state', 'journal', 'total']);
    // The read-ahead (fake: done at once) settles while the Mount still writes its journal: its own line, once.
    const readAhead = deps.logs.filter((l) => l.includes('mount step read-ahead'));
    expect(readAhead).toHaveLength(1);
    expect(readAhead[0]).toMatch(/^debug volume vol1 mount step read-ahead \(not awaited by the Mount\): [0-9.]+ ms$/);
  });
});
