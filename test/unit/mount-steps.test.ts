import { describe, expect, it } from 'vitest';
import { create, mount } from '../../adapter/docker/routes.js';
import { startMountSteps } from '../../handlers/lifecycle.js';
import type { Logger } from '../../handlers/types.js';
import { makeDeps, unmount } from './fixtures.js';

/** A clock that moves only when told: each read returns the next of TIMES. */
function steppedClock(...times: number[]): () => number {
  let i = 0;
  return () => times[Math.min(i++, times.length - 1)] ?? NaN;
}

function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, debug: (m) => lines.push(`debug ${m}`), info: (m) => lines.push(`info ${m}`), error: (m) => lines.push(`error ${m}`) };
}

describe('the Mount step timer', () => {
  it('logs each step with its own duration, then the total, at debug level', () => {
    const log = capture();
    const steps = startMountSteps('v', log, steppedClock(10, 10.1, 10.4, 95.4, 96.4));
    steps.mark('lock');
    steps.mark('store');
    steps.mark('sshfs'); // as lifecycle.ts marks, handed the Mount's steps
    steps.mark('journal');
    expect(steps.done()).toBe('volume v mount steps: lock 0.1 ms, store 0.3, sshfs 85.0, journal 1.0, total 86.4');
    expect(log.lines).toEqual(['debug volume v mount steps: lock 0.1 ms, store 0.3, sshfs 85.0, journal 1.0, total 86.4']);
  });

  it('names every step of a cold Mount in order, and the few of a Mount that finds the volume mounted', async () => {
    const deps = makeDeps();
    expect(await create({ Name: 'vol1', Opts: { sshcmd: 'alice@files.example.com:/srv/data' } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await mount({ Name: 'vol1', ID: 'b' }, deps);
    const lines = deps.logs.filter((l) => l.includes('mount steps:'));
    const names = (line: string) => [...line.replace(/^.*mount steps: /, '').matchAll(/([a-z-]+) [0-9.]+/g)].map((m) => m[1]);
    expect(lines).toHaveLength(2);
    // The read-ahead is set once the fresh-mount check has seen the mount answer, inside the Mount.
    expect(names(lines[0] ?? '')).toEqual(['lock', 'store', 'state', 'prepare', 'shared-login', 'sshfs', 'check', 'read-ahead', 'journal', 'total']);
    expect(names(lines[1] ?? '')).toEqual(['lock', 'store', 'state', 'journal', 'total']);
  });

  it('times an Unmount the same way: the last reference detaches, an earlier one only writes the journal', async () => {
    const deps = makeDeps();
    expect(await create({ Name: 'vol1', Opts: { sshcmd: 'alice@files.example.com:/srv/data' } }, deps)).toEqual({ Err: '' });
    await mount({ Name: 'vol1', ID: 'a' }, deps);
    await mount({ Name: 'vol1', ID: 'b' }, deps);
    expect(await unmount({ Name: 'vol1', ID: 'a' }, deps)).toEqual({ Err: '' });
    expect(await unmount({ Name: 'vol1', ID: 'b' }, deps)).toEqual({ Err: '' });
    const lines = deps.logs.filter((l) => l.includes('unmount steps:'));
    const names = (line: string) => [...line.replace(/^.*unmount steps: /, '').matchAll(/([a-z-]+) [0-9.]+/g)].map((m) => m[1]);
    expect(lines).toHaveLength(2);
    expect(names(lines[0] ?? '')).toEqual(['lock', 'store', 'journal', 'total']);
    // The record is saved as unmounted first (journal), then the mount is detached: fusermount3 and its check.
    expect(names(lines[1] ?? '')).toEqual(['lock', 'store', 'journal', 'state', 'fusermount', 'unmounted', 'rmdir', 'total']);
    expect(deps.logs.filter((l) => l.includes(' mount steps:'))).toHaveLength(2); // the Mounts' lines keep their name
  });
});
