// Chaos: seeded random steps against the real dockerd, sshd and FUSE — volumes created and removed, containers run,
// started, killed and copied into, bursts of concurrent runs, the plugin SIGKILLed and SIGTERMed (also in the middle
// of a burst), sshfs killed, sshd and dockerd restarted — with every invariant checked after every step.
//
//   CHAOS_SEED=<n>      another sequence (the seed is printed; default fixed, so `npm test` is deterministic in its steps)
//   CHAOS_SECONDS=<n>   how long to keep taking steps (default 150; the checks and cleanup come on top: the fault table's secs column has the whole)
import { writeFileSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import {
  docker,
  listProcesses,
  listVolumes,
  makeRemoteSubdir,
  randomId,
  readMounts,
  sleep,
  sshProcessesMentioning,
  startDockerd,
  startSshd,
  stopDockerd,
  stopSshd,
  waitFor,
  type CmdResult,
} from '../e2e/harness.js';
import { call, ensureDockerd, keyOpts, measured, pwOpts, round, stats, useFaultPlugin } from './lib.js';

const SEED = Number(process.env.CHAOS_SEED || 1515);
const SECONDS = Number(process.env.CHAOS_SECONDS || 150);
const MAX_VOLUMES = 4;
const MAX_SLEEPERS = 3;
/** An unused volume must be unmounted, its sshfs and ssh gone, within this (lost references are looked for every INHERITED_CHECK_MS, handlers/inherited.ts). */
const UNMOUNT_GRACE_MS = 60_000;
/** Generous: List is answered from memory, but this machine is shared and slow at times. */
const LIST_LIMIT_MS = 5_000;

// Plain node, so that SIGKILL ends the plugin itself (tini puts its child in a process group of its own, where a
// kill of tini's group would miss it and leave a second plugin serving old connections).
const { plugin, res, env, start } = useFaultPlugin({ beforeCleanup: ensureDockerd });
/** In volume and container names: a dockerd's data root outlives a run, and a name it still knows from an earlier
 * run (of a plugin long gone) makes it wait for that plugin. The seed alone decides the steps. */
const RUN = randomId(2);

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
function pick<T>(items: readonly T[]): T | undefined {
  return items.length === 0 ? undefined : items[Math.floor(random() * items.length)];
}

interface Vol {
  name: string;
  remote: string;
}
/** Volumes whose create was acknowledged and whose rm was not. */
const vols = new Map<string, Vol>();
/** Every file a container reported written (exit 0), by remote path: must stay on the server, rm or not. */
const written = new Map<string, string>();
/** Running sleeper containers -> their volume. */
const sleepers = new Map<string, string>();
let serial = 0;
const history: string[] = [];
const fig = {
  steps: 0,
  runsOk: 0,
  runsFailed: 0,
  bursts: { SIGKILL: { runs: 0, failed: 0 }, SIGTERM: { runs: 0, failed: 0 } },
  stops: { SIGKILL: 0, SIGTERM: 0 },
  sshfsKills: 0,
  sshdRestarts: 0,
  dockerdRestarts: 0,
  removes: 0,
  removesRefused: 0,
  listMs: [] as number[],
  unmountWaitS: [] as number[],
  maxMountsOnOne: 0,
  maxZombies: 0,
};

function note(line: string): void {
  history.push(`#${fig.steps} ${line}`);
}

/** A container writes one new file; when it says it did (exit 0), the file is recorded as written. */
async function runWriter(vol: Vol): Promise<CmdResult> {
  serial += 1;
  const file = `f-${serial}`;
  const content = `chaos ${SEED} file ${serial}`;
  const r = await docker(['run', '--rm', '--network', 'none', '-v', `${vol.name}:/data`, env.image, 'sh', '-c', `echo '${content}' > /data/${file} && sync`]);
  if (r.exitCode === 0) {
    written.set(path.join(vol.remote, file), content);
    fig.runsOk += 1;
  } else {
    fig.runsFailed += 1;
    note(`run on ${vol.name} failed: ${r.stderr.split('\n')[0]?.slice(0, 160)}`);
  }
  return r;
}

function burst(n: number): Promise<CmdResult[]> {
  const chosen = Array.from({ length: n }, () => pick([...vols.values()])).filter((v): v is Vol => v !== undefined);
  return Promise.all(chosen.map((v) => runWriter(v)));
}

async function createVol(): Promise<void> {
  serial += 1;
  const name = `chaos-${SEED}-${RUN}-${serial}`;
  const password = random() < 0.25;
  const remote = password ? await makeRemoteSubdir(env.pwRemoteDir, env.pwUser) : await makeRemoteSubdir(env.keyRemoteDir, env.keyUser);
  const opts = password ? pwOpts(remote) : keyOpts(remote);
  res.volume(name);
  const args = ['volume', 'create', '-d', plugin.name];
  for (const [k, v] of Object.entries(opts)) args.push('-o', `${k}=${v}`);
  const r = await docker([...args, name]);
  note(`create ${name}${password ? ' (password)' : ''}: exit ${r.exitCode}`);
  if (r.exitCode === 0) vols.set(name, { name, remote });
}

async function removeVol(): Promise<void> {
  const vol = pick([...vols.values()]);
  if (vol === undefined) return;
  const inUse = [...sleepers.values()].includes(vol.name);
  const force = random() < 0.3;
  const r = await docker(['volume', 'rm', ...(force ? ['-f'] : []), vol.name]);
  note(`volume rm${force ? ' -f' : ''} ${vol.name} (in use: ${inUse}): exit ${r.exitCode} ${r.stderr.slice(0, 160)}`);
  if (r.exitCode === 0) {
    expect(inUse, `docker volume rm removed ${vol.name} while a container used it`).toBe(false);
    vols.delete(vol.name);
    res.volumes.delete(vol.name); // a removed name costs dockerd a lookup in every driver it knows at cleanup
    fig.removes += 1;
  } else {
    fig.removesRefused += 1;
    // The first failure that matters: a volume nothing uses must be removable (no reference may pin it).
    expect(inUse, `docker volume rm ${vol.name} refused though no container uses it: ${r.stderr}`).toBe(true);
  }
}

async function startSleeper(): Promise<void> {
  const vol = pick([...vols.values()]);
  if (vol === undefined) return;
  serial += 1;
  const name = res.container(`chaos-${SEED}-${RUN}-sleeper-${serial}`);
  const r = await docker(['run', '-d', '--name', name, '--stop-timeout', '1', '--network', 'none', '-v', `${vol.name}:/data`, env.image, 'sleep', '3600']);
  note(`sleeper ${name} on ${vol.name}: exit ${r.exitCode}`);
  if (r.exitCode === 0) sleepers.set(name, vol.name);
  else await docker(['rm', '-f', name]);
}

async function stopSleeper(name?: string): Promise<void> {
  const target = name ?? pick([...sleepers.keys()]);
  if (target === undefined) return;
  const r = await docker(['rm', '-f', target], { timeoutMs: 60_000 });
  note(`rm -f ${target}: exit ${r.exitCode}`);
  sleepers.delete(target);
  res.containers.delete(target);
}

async function copyInto(): Promise<void> {
  const target = pick([...sleepers.keys()]);
  if (target === undefined) return;
  const vol = vols.get(sleepers.get(target) ?? '');
  serial += 1;
  const dir = await mkdtemp(path.join(tmpdir(), 'chaos-cp-'));
  const file = `cp-${serial}`;
  const content = `chaos ${SEED} copied ${serial}\n`;
  writeFileSync(path.join(dir, file), content);
  const r = await docker(['cp', path.join(dir, file), `${target}:/data/${file}`]);
  note(`docker cp into ${target}: exit ${r.exitCode} ${r.stderr.slice(0, 120)}`);
  // A sleeper whose sshfs was killed has a dead mount: cp fails there, and says so.
  if (r.exitCode === 0 && vol !== undefined) written.set(path.join(vol.remote, file), content.trimEnd());
}

/**
 * The plugin stopped and started again: SIGKILL (a crash) or SIGTERM (requests in flight finish first), while idle or
 * some random milliseconds into a burst of docker runs. No run may fail because of a SIGTERM.
 */
async function stopPlugin(signal: 'SIGKILL' | 'SIGTERM', during: boolean): Promise<void> {
  const kill = signal === 'SIGKILL';
  const stop = (): Promise<void> => (kill ? plugin.kill() : plugin.stop());
  fig.stops[signal] += 1;
  if (!during) {
    await stop();
    note(`plugin ${signal} (idle)`);
    await start();
    return;
  }
  const n = kill ? int(2, 6) : int(3, 8);
  const runs = burst(n);
  const delay = kill ? int(100, 900) : int(200, 400);
  await sleep(delay);
  await stop();
  await start();
  const results = await runs;
  const failed = results.filter((r) => r.exitCode !== 0);
  fig.bursts[signal].runs += results.length;
  fig.bursts[signal].failed += failed.length;
  note(`plugin ${signal} ${delay} ms into a burst of ${n}: ${failed.length} failed`);
  if (!kill) expect(failed.map((r) => r.stderr), 'no docker run may fail because the plugin was stopped with SIGTERM').toEqual([]);
}

async function killSshfs(): Promise<void> {
  const mounted = (await readMounts()).filter((m) => m.fstype === 'fuse.sshfs' && m.mountpoint.startsWith(`${plugin.mountRoot}/`));
  const target = pick(mounted);
  if (target === undefined) return;
  const procs = (await sshProcessesMentioning(target.mountpoint)).filter((p) => p.comm === 'sshfs' && p.cmdline.split(' ').includes(target.mountpoint));
  for (const p of procs) process.kill(p.pid, 'SIGKILL');
  fig.sshfsKills += 1;
  note(`sshfs of ${path.basename(target.mountpoint)} killed (${procs.length})`);
}

async function restartSshd(): Promise<void> {
  await stopSshd();
  await sleep(int(0, 1500));
  await startSshd();
  fig.sshdRestarts += 1;
  note('sshd restarted');
}

async function restartDockerd(): Promise<void> {
  await stopDockerd();
  await startDockerd();
  fig.dockerdRestarts += 1;
  // Its plain containers were stopped, not removed: they still hold their volumes in Docker's eyes.
  for (const name of [...sleepers.keys()]) await stopSleeper(name);
  note('dockerd restarted');
}

/** One random step; the weights follow the chaos run the issue describes. */
async function step(): Promise<string> {
  const choices: Array<[string, number, () => Promise<void>]> = [
    ['create', vols.size < MAX_VOLUMES ? 4 : 0, createVol],
    ['remove', vols.size > 1 ? 2 : 0, removeVol],
    ['run', vols.size > 0 ? 5 : 0, async () => void (await runWriter(pick([...vols.values()]) as Vol))],
    ['burst', vols.size > 0 ? 2 : 0, async () => void (await burst(int(3, 8)))],
    ['sleeper', vols.size > 0 && sleepers.size < MAX_SLEEPERS ? 3 : 0, startSleeper],
    ['stop sleeper', sleepers.size > 0 ? 3 : 0, () => stopSleeper()],
    ['cp', sleepers.size > 0 ? 2 : 0, copyInto],
    ['kill plugin', 1, () => stopPlugin('SIGKILL', false)],
    ['kill plugin in burst', vols.size > 0 ? 2 : 0, () => stopPlugin('SIGKILL', true)],
    ['term plugin', 1, () => stopPlugin('SIGTERM', false)],
    ['term plugin in burst', vols.size > 0 ? 2 : 0, () => stopPlugin('SIGTERM', true)],
    ['kill sshfs', 1, killSshfs],
    ['restart sshd', 1, restartSshd],
    ['restart dockerd', fig.dockerdRestarts < 2 ? 0.5 : 0, restartDockerd],
  ];
  const total = choices.reduce((a, [, w]) => a + w, 0);
  let r = random() * total;
  for (const [label, weight, run] of choices) {
    r -= weight;
    if (weight > 0 && r < 0) {
      await run();
      return label;
    }
  }
  return 'none';
}

/** Every invariant, after every step. */
async function check(): Promise<void> {
  // The plugin is up and List answers fast.
  expect(plugin.running(), 'the plugin runs').toBe(true);
  const list = await call(plugin, '/VolumeDriver.List', {}, LIST_LIMIT_MS * 2);
  fig.listMs.push(list.ms);
  expect(list.ms, 'List answered fast').toBeLessThan(LIST_LIMIT_MS);
  const pluginNames = (list.Volumes as Array<{ Name: string }>).map((v) => v.Name).sort();
  // No acknowledged create is lost.
  for (const name of vols.keys()) expect(pluginNames, `acknowledged volume ${name} is still there`).toContain(name);
  // Docker and the plugin list the same volumes (Docker may take a moment after a restart).
  await waitFor('docker volume ls to match the plugin', async () => {
    const now = ((await call(plugin, '/VolumeDriver.List', {})).Volumes as Array<{ Name: string }>).map((v) => v.Name).sort();
    return JSON.stringify((await listVolumes(plugin.name)).sort()) === JSON.stringify(now);
  }, 30_000, 500);
  // At most one mount per mountpoint.
  const mounts = (await readMounts()).filter((m) => m.mountpoint.startsWith(`${plugin.mountRoot}/`));
  const perPoint = new Map<string, number>();
  for (const m of mounts) perPoint.set(m.mountpoint, (perPoint.get(m.mountpoint) ?? 0) + 1);
  const most = Math.max(0, ...perPoint.values());
  fig.maxMountsOnOne = Math.max(fig.maxMountsOnOne, most);
  expect(most, `at most one mount per mountpoint: ${JSON.stringify([...perPoint])}`).toBeLessThanOrEqual(1);
  // An unused volume is unmounted within the grace period, with no sshfs or ssh left for it.
  const used = new Set(sleepers.values());
  const t0 = performance.now();
  for (const name of pluginNames.filter((n) => !used.has(n))) {
    const mountpoint = path.join(plugin.mountRoot, name);
    let left = '';
    await waitFor(`unused volume ${name} to be unmounted, its sshfs and ssh gone`, async () => {
      const mounts = (await readMounts()).filter((m) => m.mountpoint === mountpoint);
      // Whole arguments only: one volume's name may begin another's (chaos-7-1, chaos-7-17). sshfs names the
      // mountpoint, its ssh the volume's log file.
      const sshLog = path.join(plugin.stateDir, 'logs', `${name}.ssh.log`);
      const procs = (await sshProcessesMentioning(mountpoint)).concat(await sshProcessesMentioning(sshLog)).filter((p) => {
        const args = p.cmdline.split(' ');
        return args.includes(mountpoint) || args.includes(sshLog) || args.includes(`ssh_command=ssh -E ${sshLog}`);
      });
      left = `mounts ${JSON.stringify(mounts)}, processes ${JSON.stringify(procs.map((p) => `${p.pid}/${p.ppid} ${p.cmdline.slice(0, 100)}`))}`;
      return mounts.length === 0 && procs.length === 0;
    }, UNMOUNT_GRACE_MS, 500).catch((error: unknown) => {
      throw new Error(`${String(error)}; left: ${left}; plugin says ${JSON.stringify(list.Volumes)}`);
    });
  }
  fig.unmountWaitS.push(round((performance.now() - t0) / 1000, 1));
  // Every file a container reported written is on the server; docker volume rm deleted none.
  for (const [file, content] of written) {
    expect((await readFile(file, 'utf8').catch(() => '<missing>')).trimEnd(), `${file} on the server`).toBe(content);
  }
  // No zombie among the plugin's children: it reaps what it runs (give it a moment).
  let zombies = 0;
  await waitFor('no zombie under the plugin', async () => {
    zombies = (await listProcesses()).filter((p) => p.ppid === plugin.pid && p.state === 'Z').length;
    return zombies === 0;
  }, 10_000, 250).catch(() => undefined);
  fig.maxZombies = Math.max(fig.maxZombies, zombies);
  expect(zombies, 'zombies under the plugin').toBe(0);
}

it(`chaos: seeded random faults for ${SECONDS} s, every invariant checked after every step (seed ${SEED})`, async () => {
  process.stdout.write(`[chaos] seed ${SEED} (CHAOS_SEED to change), ${SECONDS} s of steps (CHAOS_SECONDS)\n`);
  await measured(`chaos: random faults, invariants after each step (seed ${SEED})`, import.meta.url, async (row) => {
    const started = performance.now();
    const counts = new Map<string, number>();
    try {
      while ((performance.now() - started) / 1000 < SECONDS) {
        fig.steps += 1;
        row.trials += 1;
        const label = await step();
        counts.set(label, (counts.get(label) ?? 0) + 1);
        await check();
        row.passed += 1;
      }
      // The end: every container gone, every volume removable, nothing left mounted, no server file deleted.
      for (const name of [...sleepers.keys()]) await stopSleeper(name);
      for (const name of [...vols.keys()]) {
        const r = await docker(['volume', 'rm', name]);
        expect(r.exitCode, `volume rm ${name} at the end: ${r.stderr}`).toBe(0);
        vols.delete(name);
        res.volumes.delete(name);
      }
      await check();
      expect((await readMounts()).filter((m) => m.mountpoint.startsWith(`${plugin.mountRoot}/`))).toEqual([]);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`chaos seed ${SEED}, step ${fig.steps}: ${message}\nlast steps:\n${history.slice(-15).join('\n')}`);
    } finally {
      row.figures.seed = `${SEED} (CHAOS_SEED=${SEED} CHAOS_SECONDS=${SECONDS} to replay)`;
      row.figures.steps = `${fig.steps}: ${[...counts].map(([k, v]) => `${k} ${v}`).join(', ')}`;
      row.figures['docker runs ok / failed'] = `${fig.runsOk} / ${fig.runsFailed}`;
      row.figures['runs failed in SIGTERM bursts'] = `${fig.bursts.SIGTERM.failed} of ${fig.bursts.SIGTERM.runs}`;
      row.figures['runs failed in SIGKILL bursts'] = `${fig.bursts.SIGKILL.failed} of ${fig.bursts.SIGKILL.runs}`;
      row.figures['volume rm done / refused (in use)'] = `${fig.removes} / ${fig.removesRefused}`;
      row.figures['files written and found on the server'] = written.size;
      row.figures['List ms'] = stats(fig.listMs);
      row.figures['wait for unused volumes to unmount (s)'] = stats(fig.unmountWaitS);
      row.figures['max mounts on one mountpoint'] = fig.maxMountsOnOne;
      row.figures['max zombies under the plugin'] = fig.maxZombies;
      process.stdout.write(`[chaos] seed ${SEED}: ${fig.steps} steps\n${history.join('\n')}\n`);
    }
  });
}, (SECONDS + 600) * 1000);
