// SIGKILL in the middle of a storm of concurrent Creates and Removes over the socket: the state file and every complete
// journal line must parse at every moment, and every Create answered without Err (and not removed since) must be
// there after the restart.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { pluginRequest, sleep } from '../e2e/harness.js';
import { measured, stats, useFaultPlugin } from './lib.js';

const { plugin, start } = useFaultPlugin({
  // Remove what the storms left (nothing is mounted: Create never mounts).
  afterCleanup: async () => {
    const list = JSON.parse((await pluginRequest(plugin.socketPath, '/VolumeDriver.List', {})).body) as { Volumes: { Name: string }[] };
    for (const v of list.Volumes) await pluginRequest(plugin.socketPath, '/VolumeDriver.Remove', { Name: v.Name });
  },
});
const TRIALS = 5;
const WORKERS = 16;

type Outcome = 'created' | 'removed' | 'unknown';

it('keeps a parseable state file and every acknowledged Create through SIGKILL during a Create/Remove storm', async () => {
  await measured(`SIGKILL during a Create/Remove storm (${TRIALS} kills, ${WORKERS} clients)`, import.meta.url, async (row) => {
    const stateFile = path.join(plugin.stateDir, 'volumes.json');
    const journalFile = path.join(plugin.stateDir, 'volumes.journal');
    // Only the end of the journal may be torn (state/journal-file.ts): every line before the last newline must parse.
    const completeLinesParse = (text: string) => text.slice(0, text.lastIndexOf('\n') + 1).split('\n').slice(0, -1).every((l) => {
      try {
        JSON.parse(l);
        return true;
      } catch {
        return false;
      }
    });
    let reads = 0;
    let unparsable = 0;
    let acked = 0;
    let lost = 0;
    let resurrected = 0;
    const answeredBeforeKill: number[] = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      row.trials += 1;
      // What the clients were told, per name: the last answered operation wins; an unanswered one makes it unknown.
      const outcome = new Map<string, Outcome>();
      let stop = false;
      let answered = 0;
      // A reader that parses the state file as fast as it can while the storm runs and when the plugin dies.
      const watcher = (async () => {
        while (!stop) {
          try {
            const text = readFileSync(stateFile, 'utf8');
            reads += 1;
            try {
              JSON.parse(text);
            } catch {
              unparsable += 1;
            }
            if (!completeLinesParse(readFileSync(journalFile, 'utf8'))) unparsable += 1;
          } catch {
            // not written yet
          }
          await sleep(1);
        }
      })();
      const worker = async (w: number) => {
        for (let i = 0; !stop; i++) {
          const vol = `storm-${trial}-${w}-${i}`;
          try {
            outcome.set(vol, 'unknown');
            const c = JSON.parse(
              (await pluginRequest(plugin.socketPath, '/VolumeDriver.Create', { Name: vol, Opts: { sshcmd: 'u@127.0.0.1:/srv' } }, 10_000)).body,
            ) as { Err: string };
            answered += 1;
            if (c.Err !== '') throw new Error(`Create ${vol}: ${c.Err}`);
            outcome.set(vol, 'created');
            if (i % 2 === 1) {
              outcome.set(vol, 'unknown');
              const r = JSON.parse((await pluginRequest(plugin.socketPath, '/VolumeDriver.Remove', { Name: vol }, 10_000)).body) as { Err: string };
              answered += 1;
              if (r.Err !== '') throw new Error(`Remove ${vol}: ${r.Err}`);
              outcome.set(vol, 'removed');
            }
          } catch (error) {
            if (/^(Create|Remove) /.test(String((error as Error).message))) throw error;
            return; // the connection died with the plugin
          }
        }
      };
      const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
      await sleep(300 + Math.floor(Math.random() * 500));
      await plugin.kill();
      answeredBeforeKill.push(answered);
      await sleep(50); // let the watcher read the file as the kill left it
      stop = true;
      await Promise.all([...workers, watcher]);
      JSON.parse(readFileSync(stateFile, 'utf8'));
      expect(completeLinesParse(readFileSync(journalFile, 'utf8'))).toBe(true);

      await start();
      const listed = new Set(
        (JSON.parse((await pluginRequest(plugin.socketPath, '/VolumeDriver.List', {})).body) as { Volumes: { Name: string }[] }).Volumes.map(
          (v) => v.Name,
        ),
      );
      let ok = true;
      for (const [vol, o] of outcome) {
        if (o === 'created') {
          acked += 1;
          if (!listed.has(vol)) {
            lost += 1;
            ok = false;
          }
        }
        if (o === 'removed' && listed.has(vol)) {
          resurrected += 1;
          ok = false;
        }
      }
      if (ok) row.passed += 1;
    }
    const leftovers = readdirSync(plugin.stateDir).filter((f) => f.includes('.tmp-'));
    row.figures['state file reads during storms'] = reads;
    row.figures['unparsable reads (state file or journal line)'] = unparsable;
    row.figures['answers before each kill'] = stats(answeredBeforeKill);
    row.figures['acknowledged Creates checked'] = acked;
    row.figures['acknowledged Creates lost'] = lost;
    row.figures['acknowledged Removes undone'] = resurrected;
    // A kill mid-write leaves its temp file; the next start deletes it (state/atomic-json-file.ts).
    row.figures['temp files left after restart'] = leftovers.length;
    expect(unparsable).toBe(0);
    expect(lost).toBe(0);
    expect(resurrected).toBe(0);
    expect(reads).toBeGreaterThan(0);
    expect(leftovers).toEqual([]);
  });
});
